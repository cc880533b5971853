"""OpenTelemetry tracing of calls and attempts (optional: ``pip install routeyard[otel]``).

The engine calls this interface only when tracing is on:

    span = tracing.start_call(alias=..., request_id=..., operation="chat", request=req)
    with span.attempt(target, attempt_number) as a:   # the attempt's span is current inside
        ...
    a.finish(record, finish_reason=..., response_model=...)  # ends the attempt's span
    span.skip(record)                                   # a skipped target: an event
    span.end(response=..., error=..., records=...)      # ends the call's span (twice: no-op)

One CLIENT span per call (``chat {alias}``) and one child CLIENT span per attempt
(``chat {model}``), named and attributed after the GenAI semantic conventions v1.37
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/): ``gen_ai.provider.name``
replaces ``gen_ai.system``, which is still set (same value) for backends that read only it.

Token counts (``gen_ai.usage.*``) sit on the attempt spans only, where a model really answered;
the call span carries the totals as ``router.usage.*``, so that a backend summing ``gen_ai.usage``
over a trace does not count a call twice. ``router.attempts`` counts the call's records,
skips included (as the ``route_done`` event does). ``error.type`` is the ErrorClass value (auth,
rate_limit, ..., see router.errors), or the exception's qualified name when something other
than an LlmError ended the call (a cancellation).

A retry's wait is known only after its attempt ended (``record.retry_in_ms``): it becomes a
``retry_scheduled`` event on the call span, timestamped when the wait began.

Message content (prompts, answers, tool arguments) is recorded only with
``capture_content=True``, as ``gen_ai.input.messages`` / ``gen_ai.output.messages`` JSON strings
on the call span, each text clipped to 4096 characters and each attribute to ~32 KiB (oldest
messages dropped first). Inline image bytes, URL query strings, exception messages, headers
and API keys are never recorded. Streamed text is not buffered for tracing: a streamed call's
output records only its tool calls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from router.errors import ErrorClass, LlmError, RouterError
from router.obs._trace_content import input_message, messages_json, output_message
from router.types import (
    AttemptRecord,
    ChatChunk,
    ChatRequest,
    ChatResponse,
)

_MISSING: ImportError | None = None
try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as e:  # the optional extra is not installed
    _MISSING = e

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    Attrs = dict[str, AttributeValue]

class Target(Protocol):
    """What a span needs of a plan target (obs sits below plan: it never imports it)."""

    @property
    def kind(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def model(self) -> str: ...


#: The schema of the attribute names used here.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"

#: Provider kind -> ``gen_ai.provider.name`` (well-known values of semconv v1.37 where one
#: exists; a plugin's kind is used as is).
PROVIDER_NAMES = {
    "openai": "openai",
    "azure-openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",  # generativelanguage.googleapis.com (AI Studio), per the spec
    "ollama": "ollama",
    "openai-compatible": "openai-compatible",
    "fake": "router.fake",
}

_OUTPUT_TYPES = {"text": "text", "json_object": "json", "json_schema": "json"}
# A record's fields -> attribute names (AttemptSpan.finish); None values are left out.
_RECORD_ATTRS = (
    ("status", "http.response.status_code"),
    ("latency_ms", "router.latency_ms"),
    ("ttft_ms", "router.ttft_ms"),
    ("timeout_kind", "router.timeout_kind"),
    ("input_tokens", "gen_ai.usage.input_tokens"),
    ("output_tokens", "gen_ai.usage.output_tokens"),
    ("cost_usd", "router.cost_usd"),
    ("retry_in_ms", "router.retry_in_ms"),
)


class TracingUnavailable(RouterError, ImportError):
    """Tracing was asked for but opentelemetry-api is not installed."""


class Tracing:
    """Makes the spans of calls and attempts; pass one as ``Router(..., tracing=Tracing())``.

    ``tracer_provider`` defaults to the global one; ``capture_content`` records prompts and
    answers (off by default: they may hold personal data)."""

    __slots__ = ("capture_content", "tracer")

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False) -> None:
        if _MISSING is not None:
            raise TracingUnavailable(
                "tracing needs OpenTelemetry: pip install routeyard[otel] "
                "(or pip install opentelemetry-api)") from _MISSING
        from router.version import __version__

        self.tracer = trace.get_tracer("router", __version__, tracer_provider=tracer_provider,
                                        schema_url=SCHEMA_URL)
        self.capture_content = capture_content

    def start_call(self, *, alias: str, request_id: str, operation: str,
                   request: ChatRequest) -> CallSpan:
        """Open the span of one call (a child of whatever span is current)."""
        return CallSpan(self, alias, request_id, operation, request)


class CallSpan:
    """The span of one call; its attempts are child spans, its skips events."""

    __slots__ = ("_capture", "_ctx", "_ended", "_open", "_pending", "_providers", "_seen",
                 "_span", "_stream", "_tracer")

    def __init__(self, tracing: Tracing, alias: str, request_id: str, operation: str,
                 request: ChatRequest) -> None:
        op = "chat" if operation in ("chat", "stream") else operation
        attrs: Attrs = {"gen_ai.operation.name": op, "gen_ai.request.model": alias,
                        "router.alias": alias, "router.request_id": request_id}
        self._stream = operation == "stream"
        if self._stream:
            attrs["gen_ai.request.stream"] = True
        _add_request_attrs(attrs, request)
        self._capture = tracing.capture_content
        if self._capture:
            attrs["gen_ai.input.messages"] = messages_json(
                [input_message(m) for m in request.messages])
        self._tracer = tracing.tracer
        self._span = self._tracer.start_span(f"{op} {alias}", kind=SpanKind.CLIENT,
                                             attributes=attrs)
        # Attempt spans name this one as parent explicitly: it is never made current.
        self._ctx = trace.set_span_in_context(self._span)
        self._open: AttemptSpan | None = None
        self._pending: AttemptRecord | None = None  # the last failure, its retry wait unknown
        self._providers: dict[str, str] = {}  # target key -> gen_ai.provider.name
        self._seen: list[AttemptRecord] = []  # for an end the engine did not call
        self._ended = False

    def attempt(self, target: Target, attempt: int) -> AttemptSpan:
        """Start the span of one attempt of ``target``; use it as ``with``, then ``finish``."""
        self._flush_retry()
        provider = PROVIDER_NAMES.get(target.kind, target.kind)
        self._providers[target.key] = provider
        attrs: Attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                        "gen_ai.system": provider, "gen_ai.request.model": target.model,
                        "router.target": target.key, "router.attempt": attempt}
        if self._stream:
            attrs["gen_ai.request.stream"] = True
        span = self._tracer.start_span(f"chat {target.model}", context=self._ctx,
                                       kind=SpanKind.CLIENT, attributes=attrs)
        self._open = AttemptSpan(self, span)
        return self._open

    def skip(self, record: AttemptRecord) -> None:
        """A target skipped without I/O (breaker open, budget, capability...): an event."""
        self._flush_retry()
        self._seen.append(record)
        attrs: Attrs = {"router.target": record.target, "router.attempt": record.attempt}
        if record.reason is not None:
            attrs["router.reason"] = record.reason
        if record.detail is not None:
            attrs["router.detail"] = record.detail
        self._span.add_event("target_skipped", attrs)

    def end(self, *, response: ChatResponse | ChatChunk | None = None,
            error: BaseException | None = None,
            records: Sequence[AttemptRecord] = ()) -> None:
        """Set the outcome, totals and status, and end the span; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        self._flush_retry()
        if self._open is not None:  # the consumer stopped, or the call was cancelled
            self._open.abandon(error)
        records = records or self._seen
        attrs: Attrs = {"router.attempts": len(records)}
        _add_totals(attrs, records)
        if response is not None:
            self._add_response_attrs(attrs, response)
        elif error is not None:
            attrs["router.outcome"] = "error"
            attrs["error.type"] = _error_type(error)
            where = getattr(error, "target", None)
            if isinstance(where, str) and where:
                attrs["router.target"] = where
                if where in self._providers:
                    attrs["gen_ai.provider.name"] = self._providers[where]
        else:
            attrs["router.outcome"] = "abandoned"
        span = self._span
        span.set_attributes(attrs)
        if error is not None:
            _set_error(span, error)
        span.end()

    # -- internals --------------------------------------------------------------------------
    def _add_response_attrs(self, attrs: Attrs, response: ChatResponse | ChatChunk) -> None:
        attrs["router.outcome"] = "ok"
        if response.target:
            attrs["router.target"] = response.target
            provider = self._providers.get(response.target)
            if provider is not None:
                attrs["gen_ai.provider.name"] = provider
        if response.finish_reason is not None:
            attrs["gen_ai.response.finish_reasons"] = (response.finish_reason,)
        if isinstance(response, ChatResponse):
            attrs["gen_ai.response.model"] = response.model
            if response.id:
                attrs["gen_ai.response.id"] = response.id
        if self._capture:
            out = output_message(response)
            if out is not None:
                attrs["gen_ai.output.messages"] = messages_json([out])

    def attempt_ended(self, record: AttemptRecord | None) -> None:
        """Called by an attempt span as it ends (its record, or None when it had none)."""
        self._open = None
        if record is not None:
            self._seen.append(record)
        self._pending = record if record is not None and record.outcome == "error" else None

    def _flush_retry(self) -> None:
        """The wait the engine scheduled after the last failed attempt, as an event."""
        rec, self._pending = self._pending, None
        if rec is None or rec.retry_in_ms is None:
            return
        began = time.time_ns() - int(rec.retry_in_ms * 1_000_000)
        self._span.add_event("retry_scheduled", {
            "router.target": rec.target, "router.attempt": rec.attempt,
            "router.retry_in_ms": rec.retry_in_ms,
            "router.retry_after_used": rec.retry_after_used}, timestamp=began)


class AttemptSpan:
    """The span of one attempt. ``with`` makes it current (HTTP client spans nest under it)
    without ending it; ``finish`` ends it with the attempt's record."""

    __slots__ = ("_done", "_owner", "_span", "_token")

    def __init__(self, owner: CallSpan, span: trace.Span) -> None:
        self._owner = owner
        self._span = span
        self._token: Token[Context] | None = None
        self._done = False

    def __enter__(self) -> AttemptSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)
        if exc is not None and not isinstance(exc, LlmError | TimeoutError | StopAsyncIteration):
            # Not a failure the engine records (a cancellation, a bug): the call ends here
            # without an end_span, so both spans end now.
            self._owner.end(error=exc)

    def finish(self, record: AttemptRecord, *, finish_reason: str | None = None,
               response_model: str | None = None) -> None:
        """Set the record's fields as attributes and end the span; later calls do nothing."""
        if self._done:
            return
        attrs: Attrs = {"router.outcome": record.outcome}
        for field, name in _RECORD_ATTRS:
            value = getattr(record, field)
            if value is not None:
                attrs[name] = value
        if record.retry_after_used:
            attrs["router.retry_after_used"] = True
        if record.error_class is not None:
            attrs["error.type"] = record.error_class.value
        if finish_reason is not None:
            attrs["gen_ai.response.finish_reasons"] = (finish_reason,)
        if response_model is not None:
            attrs["gen_ai.response.model"] = response_model
        self._span.set_attributes(attrs)
        if record.outcome == "error":
            self._span.set_status(Status(StatusCode.ERROR, str(attrs.get("error.type", ""))))
        self._end(record)

    def abandon(self, error: BaseException | None) -> None:
        """End a span whose attempt got no record (the consumer stopped, a cancellation)."""
        if self._done:
            return
        if error is None:
            self._span.set_attribute("router.outcome", "abandoned")
        else:
            self._span.set_attributes({"router.outcome": "error",
                                       "error.type": _error_type(error)})
            _set_error(self._span, error)
        self._end(None)

    def _end(self, record: AttemptRecord | None) -> None:
        self._done = True
        self._span.end()
        self._owner.attempt_ended(record)


# -- attributes ------------------------------------------------------------------------------
def _add_request_attrs(attrs: Attrs, request: ChatRequest) -> None:
    for name, value in (("gen_ai.request.max_tokens", request.max_tokens),
                        ("gen_ai.request.temperature", request.temperature),
                        ("gen_ai.request.top_p", request.top_p),
                        ("gen_ai.request.seed", request.seed)):
        if value is not None:
            attrs[name] = value
    if request.stop:
        attrs["gen_ai.request.stop_sequences"] = tuple(request.stop)
    if request.response_format is not None:
        attrs["gen_ai.output.type"] = _OUTPUT_TYPES.get(request.response_format.type, "text")


def _add_totals(attrs: Attrs, records: Sequence[AttemptRecord]) -> None:
    """Tokens and cost summed over the call's attempts (left out when none reported any)."""
    for name, field in (("router.usage.input_tokens", "input_tokens"),
                        ("router.usage.output_tokens", "output_tokens"),
                        ("router.cost_usd", "cost_usd")):
        values = [v for v in (getattr(r, field) for r in records) if v is not None]
        if values:
            attrs[name] = sum(values)


def _error_type(error: BaseException) -> str:
    cls = getattr(error, "error_class", None)
    if isinstance(cls, ErrorClass):
        return cls.value
    t = type(error)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _set_error(span: trace.Span, error: BaseException) -> None:
    """ERROR status and an ``exception`` event naming the type only: an exception's message
    may quote the prompt or the provider's answer."""
    t = type(error)
    span.set_status(Status(StatusCode.ERROR, _error_type(error)))
    span.add_event("exception", {"exception.type": f"{t.__module__}.{t.__qualname__}"})


__all__ = ["PROVIDER_NAMES", "SCHEMA_URL", "AttemptSpan", "CallSpan", "Tracing",
           "TracingUnavailable"]
