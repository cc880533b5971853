"""The values that cross the public API: messages, tools, requests, responses, chunks, records.

Plain slotted dataclasses (cheap to build on the hot path); conversion from OpenAI-shaped dicts
lives in ``router.engine.request``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TypeVar, cast

from router.errors import ErrorClass, InvalidRequestError

Role = Literal["system", "user", "assistant", "tool"]
_ROLES = frozenset(("system", "user", "assistant", "tool"))
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
_T = TypeVar("_T")


def frozen_builder(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen slotted dataclass ``cls`` for the hot path: the arguments
    of its ``__init__``, without ``__post_init__`` (for values already checked), ~3x cheaper.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (~1.4k
    CPU instructions a field); the builder is a plain class with the same slots, so its
    ``__init__`` stores each field directly, then turns the instance into a ``cls`` (the
    layouts are the same, so ``__class__`` may be assigned)."""
    if cls.__bases__ != (object,) or not hasattr(cls, "__slots__"):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass of its own")
    params, body, defaults = [], [], {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has a default factory")
        if f.default is MISSING:
            params.append(f.name)
        else:
            defaults[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        body.append(f"    self.{f.name} = {f.name}")
    source = (f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body)
              + "\n    self.__class__ = _cls\n")
    namespace: dict[str, Any] = {"_cls": cls, **defaults}
    exec(source, namespace)  # our own field names, nothing from outside
    builder = type(f"_{cls.__name__}Builder", (),
                   {"__slots__": vars(cls)["__slots__"], "__init__": namespace["__init__"]})
    return cast(Callable[..., _T], builder)


#: A prompt-cache breakpoint, in Anthropic's shape: ``{"type": "ephemeral"}``, optionally with
#: ``"ttl": "5m" | "1h"``. Anthropic targets cache the prompt up to the part, message or tool
#: that carries it; other kinds cache on their own and are not sent it.
CacheControl = dict[str, Any]


@dataclass(slots=True, frozen=True)
class TextPart:
    """A piece of text inside a message."""

    text: str
    type: Literal["text"] = "text"
    cache_control: CacheControl | None = None


@dataclass(slots=True, frozen=True)
class ImagePart:
    """An image given by http(s) URL or ``data:`` URL."""

    url: str
    detail: str | None = None
    type: Literal["image"] = "image"
    cache_control: CacheControl | None = None

    @property
    def is_data_url(self) -> bool:
        return self.url.startswith("data:")


@dataclass(slots=True, frozen=True)
class FilePart:
    """A PDF document (the one kind of file every provider with documents reads): inline as a
    ``data:application/pdf;base64,...`` URL, or by http(s) URL for the providers that fetch
    one (Anthropic, Gemini); and the file's name if known."""

    url: str
    filename: str | None = None
    type: Literal["file"] = "file"
    cache_control: CacheControl | None = None

    @property
    def is_data_url(self) -> bool:
        return self.url.startswith("data:")

    @property
    def media_type(self) -> str:
        if not self.is_data_url:
            return "application/pdf"
        return self.url[5:].split(",", 1)[0].split(";", 1)[0]

    @property
    def data(self) -> str:
        """The base64 payload."""
        return self.url.split(",", 1)[1]


ContentPart = TextPart | ImagePart | FilePart


#: Opaque reasoning state a provider asks to get back unchanged in the next turn, tagged with
#: the provider kind that made it (``{"kind": "anthropic", ...}``); only that kind reads it.
ProviderState = dict[str, Any]


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the parsed JSON object.
    ``provider_state``: the call's reasoning state (Gemini's thought signature), sent back
    with the call to the kind that made it and dropped for any other."""

    id: str
    name: str
    arguments: dict[str, Any]
    provider_state: ProviderState | None = None


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: ``index`` identifies the call; ``arguments`` is a
    fragment of its JSON."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True, frozen=True)
class Message:
    """One conversation turn. ``content`` is a string or a list of parts."""

    role: Role
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    #: An assistant turn's reasoning state (Anthropic's signed thinking blocks, ...), as the
    #: response gave it: sent back only to the provider kind named in it.
    provider_state: ProviderState | None = None
    #: A prompt-cache breakpoint after this message (on its last block, for Anthropic).
    cache_control: CacheControl | None = None

    def __post_init__(self) -> None:
        # A bad role fails here, where it was written; the other fields are checked per call
        # by router.engine.request (type checks there cost nothing for the common dicts).
        role: object = self.role
        if not isinstance(role, str) or role not in _ROLES:
            got = repr(role) if isinstance(role, str) and len(role) <= 24 else type(role).__name__
            raise InvalidRequestError(f"Message.role must be one of system, user, assistant, "
                                      f"tool (got {got})")

    @property
    def text(self) -> str:
        """The text of the message, parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(
            isinstance(p, ImagePart) for p in self.content
        )

    @property
    def has_files(self) -> bool:
        return isinstance(self.content, list) and any(
            isinstance(p, FilePart) for p in self.content
        )


#: ``Message(role, content, ...)`` for a role already checked (no ``__post_init__``).
checked_message = frozen_builder(Message)


@dataclass(slots=True, frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    cache_control: CacheControl | None = None  # a breakpoint after the tool definitions so far


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """Structured output: ``json_object`` or ``json_schema`` (with ``schema``)."""

    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    """One provider-independent request, built once per call."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    n: int | None = None  # choices wanted, when more than one

    @property
    def has_images(self) -> bool:
        return any(m.has_images for m in self.messages)


@dataclass(slots=True)
class Usage:
    """Token counts of one call, one convention whatever the provider: ``input_tokens`` counts
    every prompt token, ``cached_tokens`` (read from the prompt cache) and
    ``cache_write_tokens`` (written to it) included; ``output_tokens`` includes
    ``reasoning_tokens``; ``cache_write_1h_tokens`` are the cache writes with a one-hour
    lifetime (Anthropic's ``ttl: "1h"``, billed at a higher rate), of ``cache_write_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: Searches the provider's own web search tool ran for the answer (billed per search).
    web_searches: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class AttemptRecord:
    """One attempt or skip of one target during one call (also logged as one event)."""

    request_id: str
    alias: str
    target: str
    attempt: int
    outcome: Literal["ok", "error", "skipped"]
    error_class: ErrorClass | None = None
    reason: str | None = None
    detail: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    retry_in_ms: float | None = None
    retry_after_used: bool = False
    timeout_kind: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    #: Stream events that were not JSON and were skipped (the stream still ended properly).
    malformed_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The record as the key-values of its log event (None, False and a zero
        ``malformed_events`` dropped), in the order of the fields. (Each field read directly,
        not a getattr loop over ``__slots__``: this runs once per attempt of every call.)"""
        out: dict[str, Any] = {"request_id": self.request_id, "alias": self.alias,
                               "target": self.target, "attempt": self.attempt,
                               "outcome": self.outcome}
        if (error_class := self.error_class) is not None:
            out["error_class"] = (error_class.value if isinstance(error_class, ErrorClass)
                                  else error_class)
        if self.reason is not None:
            out["reason"] = self.reason
        if self.detail is not None:
            out["detail"] = self.detail
        if self.status is not None:
            out["status"] = self.status
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        if self.ttft_ms is not None:
            out["ttft_ms"] = self.ttft_ms
        if self.retry_in_ms is not None:
            out["retry_in_ms"] = self.retry_in_ms
        if self.retry_after_used:
            out["retry_after_used"] = self.retry_after_used
        if self.timeout_kind is not None:
            out["timeout_kind"] = self.timeout_kind
        if self.input_tokens is not None:
            out["input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            out["output_tokens"] = self.output_tokens
        if self.cost_usd is not None:
            out["cost_usd"] = self.cost_usd
        if self.malformed_events:
            out["malformed_events"] = self.malformed_events
        return out


@dataclass(slots=True)
class Choice:
    """One of several answers to one call (``n`` > 1); ``index`` 0 is the response's own."""

    index: int
    text: str
    tool_calls: list[ToolCall]
    finish_reason: FinishReason
    refusal: str | None = None


@dataclass(slots=True)
class ChatResponse:
    """The answer of a call, in one shape whatever the provider."""

    text: str
    tool_calls: list[ToolCall]
    finish_reason: FinishReason
    usage: Usage
    model: str
    target: str = ""
    cost_usd: float | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    id: str | None = None
    request_id: str | None = None
    reasoning: str | None = None
    #: A refusal the provider sent instead of (or after) content; None otherwise.
    refusal: str | None = None
    #: All choices when n > 1 (choice 0 is ``text``, ``tool_calls``...); empty otherwise.
    choices: list[Choice] = field(default_factory=list)
    #: Reasoning state to send back with this turn (``message`` carries it).
    provider_state: ProviderState | None = None

    @property
    def message(self) -> Message:
        """The answer as an assistant Message, ready to append to a conversation."""
        return Message(role="assistant", content=self.text or None,
                       tool_calls=self.tool_calls or None, provider_state=self.provider_state)


@dataclass(slots=True)
class ChatChunk:
    """A piece of a streamed answer. The last chunk has ``finish_reason``, ``usage`` and
    ``final_tool_calls`` (the streamed calls, assembled and parsed)."""

    delta: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    target: str = ""
    cost_usd: float | None = None
    final_tool_calls: list[ToolCall] | None = None
    attempts: list[AttemptRecord] | None = None
    reasoning_delta: str = ""
    #: A piece of a refusal (the final chunk holds a provider's refusal notice, if any).
    refusal: str = ""
    #: The choice this chunk belongs to (n > 1).
    index: int = 0
    #: On the final chunk of an n > 1 stream: every choice, assembled.
    final_choices: list[Choice] | None = None
    #: On the final chunk: the turn's reasoning state (see ``ChatResponse.provider_state``).
    provider_state: ProviderState | None = None
    #: On the final chunk: stream events that were not JSON and were skipped.
    malformed_events: int = 0
    #: On a stream's first chunk: the attempts and skips made so far, the streaming attempt
    #: included (0 on the other chunks); ``attempts`` on the final chunk lists every one.
    attempts_made: int = 0
