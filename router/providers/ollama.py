"""Ollama's native chat API (``POST {base}/api/chat``): our types to its JSON, its NDJSON back.

API: https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
Field names follow ollama-python's ``_types.py`` (``Message.images``/``thinking``/``tool_name``,
``ChatRequest.think``/``format``/``keep_alive``, ``Options.num_predict``). Errors are
``{"error": "<text>"}`` with the status set by the server's ``handleScheduleError``
(404 model not found, 400 bad request or missing capability, 503 queue full, 500 otherwise);
an error after a streamed 200 arrives as one more NDJSON line of the same shape.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from router.errors import (
    ConfigError,
    ErrorClass,
    InvalidRequestError,
    LlmError,
    NetworkError,
    ServerError,
)
from router.providers._openai_wire import parse_arguments
from router.providers.base import (
    Capabilities,
    ErrorBody,
    HttpPool,
    HttpResponse,
    Provider,
    ProviderConfig,
    Timeouts,
    classify_status,
    make_status_error,
    redact_secrets,
)
from router.providers.sse import NDJSONDecoder
from router.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["OllamaProvider", "tool_call_id"]

_DRAIN_TIMEOUT = 1.0  # after done:true, wait this long for the body's end to reuse the connection
_THINK_LEVELS = frozenset({"low", "medium", "high"})  # gpt-oss; other thinking models take bools
# Ollama's wordings for an over-long prompt (server truncates by default; with truncate/shift
# off, or from the llama.cpp runner, it refuses with one of these).
_CONTEXT_PHRASES = ("context length", "context size", "context window", "exceed_context_size")


class OllamaProvider(Provider):
    """A local (or proxied) Ollama server. No key by default; ``api_key`` is sent as a Bearer
    token for servers behind an authenticating proxy or ollama.com.

    Options: ``keep_alive`` (seconds; how long the model stays loaded after the call),
    ``capabilities`` (overrides of the permissive defaults below).
    """

    kind: ClassVar[str] = "ollama"
    key_env: ClassVar[str | None] = None
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:11434"
    capabilities_default: ClassVar[Capabilities] = Capabilities(
        tools=True, vision=True, json_object=True, json_schema=True,
        streaming=True, streaming_usage=True, context_window=None,
    )

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base_url = config.base_url or self.default_base_url or ""
        self._url = base_url.rstrip("/") + "/api/chat"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        headers.update(config.headers)
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "application/x-ndjson"}
        self._keep_alive = _keep_alive(config)
        overrides = config.options.get("capabilities") or {}
        try:
            self._caps = replace(self.capabilities_default, **overrides)
        except TypeError as e:
            raise ConfigError(f"provider {config.name!r}: bad capabilities option: {e}") from e

    def capabilities(self, model: str) -> Capabilities:
        """Permissive: what a model can do is only known to the server."""
        return self._caps

    def _error(self, status: int | None, headers: Mapping[str, str],
               body: ErrorBody) -> LlmError:
        return map_ollama_error(status, headers, body, secrets=(self._secret,))

    async def _status_error(self, resp: HttpResponse) -> LlmError:
        return self._error(resp.status, resp.headers, await resp.read_error_body())

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One ``stream: false`` call."""
        body = build_body(model, request, stream=False, keep_alive=self._keep_alive)
        async with self.http.post(self._url, body, headers=self._headers,
                                  timeouts=timeouts) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp)
            data = await resp.json()
            if isinstance(data, dict) and data.get("error"):
                raise self._error(None, resp.headers, ErrorBody(text=str(data), json=data))
            return parse_response(data, model)

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """A streamed call: one chunk per NDJSON line with content; the final chunk carries
        ``done_reason``, usage and the tool calls. A body that ends before ``done: true``
        is a NetworkError."""
        body = build_body(model, request, stream=True, keep_alive=self._keep_alive)
        state = _StreamState(self._error)
        async with self.http.post(self._url, body, headers=self._stream_headers,
                                  timeouts=timeouts) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp)
            decoder = NDJSONDecoder()
            while not state.done and (raw := await resp.read_chunk()):
                for data in self._lines(decoder, raw):
                    resp.mark_first_token()
                    chunk = state.feed(data, resp.headers)
                    if chunk is not None:
                        yield chunk
                    if state.done:
                        break
            if state.done:
                await resp.drain(min(timeouts.idle, _DRAIN_TIMEOUT))
            else:
                for data in self._lines(decoder, None):
                    chunk = state.feed(data, resp.headers)
                    if chunk is not None:
                        yield chunk
                if not state.done:
                    raise NetworkError("stream ended before done: true")
        yield state.final_chunk()  # after the connection is back in the pool

    def _lines(self, decoder: NDJSONDecoder, raw: bytes | None) -> list[Any]:
        """The values of the lines ``raw`` completes (None: end of body, flush)."""
        try:
            return decoder.feed(raw) if raw is not None else decoder.flush()
        except ValueError as e:
            if raw is None:  # the body ended inside a line: the connection was cut
                raise NetworkError("stream ended inside an NDJSON line") from e
            raise ServerError(redact_secrets(str(e), (self._secret,))) from e


# --------------------------------------------------------------------------------------------
# Request


def _keep_alive(config: ProviderConfig) -> str | None:
    """``keep_alive`` seconds as a Go duration string (``300s``, ``500ms``): Ollama parses
    strings with ``time.ParseDuration``, which takes no exponent form."""
    value = config.options.get("keep_alive")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"provider {config.name!r}: keep_alive must be a duration, "
                          f"not {value!r}")
    ms = round(value * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def build_body(model: str, request: ChatRequest, *, stream: bool,
               keep_alive: str | None = None) -> dict[str, Any]:
    """The ``/api/chat`` request body; ``request.extra`` is merged last and wins."""
    body: dict[str, Any] = {"model": model, "messages": encode_messages(request.messages),
                            "stream": stream}
    # Ollama has no tool_choice: "none" is honoured by not offering the tools.
    if request.tools and request.tool_choice != "none":
        body["tools"] = [
            {"type": "function",
             "function": {"name": t.name, "description": t.description or "",
                          "parameters": t.parameters}}
            for t in request.tools
        ]
    fmt = _format(request.response_format)
    if fmt is not None:
        body["format"] = fmt
    options = {key: value for key, value in (
        ("num_predict", request.max_tokens), ("temperature", request.temperature),
        ("top_p", request.top_p), ("stop", request.stop or None), ("seed", request.seed),
    ) if value is not None}
    if options:
        body["options"] = options
    if request.reasoning_effort is not None:
        effort = request.reasoning_effort
        body["think"] = effort if effort in _THINK_LEVELS else effort not in ("none", "off")
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    body.update(request.extra)
    return body


def _format(fmt: ResponseFormat | None) -> str | dict[str, Any] | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.schema:
        return fmt.schema
    return "json"


def encode_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in Ollama's shape. Tool results carry ``tool_name`` (Ollama has no call ids),
    found from the assistant call they answer."""
    names = {c.id: c.name for m in messages for c in m.tool_calls or ()}
    return [_encode_message(m, names) for m in messages]


def _encode_message(message: Message, names: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    if isinstance(message.content, list):
        out["content"] = "\n".join(p.text for p in message.content if isinstance(p, TextPart))
        images = [_image_base64(p.url) for p in message.content if isinstance(p, ImagePart)]
        if images:
            out["images"] = images
    else:
        out["content"] = message.content or ""
    if message.tool_calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    if message.role == "tool":
        name = message.name or names.get(message.tool_call_id or "")
        if name:
            out["tool_name"] = name
    return out


def _image_base64(url: str) -> str:
    """The base64 payload Ollama wants from a ``data:`` URL; anything else is refused (the
    server does not fetch URLs)."""
    if not url.startswith("data:"):
        raise InvalidRequestError(
            "ollama takes images as data: URLs (base64) only; it cannot fetch "
            f"{urllib.parse.urlsplit(url).scheme or 'this'} image URLs",
            retryable=False,
        )
    header, comma, payload = url.partition(",")
    if not comma:
        raise InvalidRequestError("malformed data: URL (no comma)", retryable=False)
    if header.endswith(";base64"):
        return "".join(payload.split())  # drop line breaks some encoders insert
    return base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode("ascii")


# --------------------------------------------------------------------------------------------
# Response


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def tool_call_id(index: int, name: str, arguments: Mapping[str, Any]) -> str:
    """A stable id for a call Ollama sent without one: the same call in the same position
    always gets the same id, so a replayed conversation matches its tool results."""
    canonical = json.dumps([index, name, arguments], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return "call_" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def parse_tool_calls(raw: Any, start: int = 0) -> list[ToolCall]:
    """``message.tool_calls``; ``arguments`` arrive as an object (a string from some
    compatible servers is parsed as JSON)."""
    calls: list[ToolCall] = []
    for entry in raw if isinstance(raw, list) else ():
        fn = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments")
        arguments = dict(args) if isinstance(args, dict) else parse_arguments(_str(args))
        name = _str(fn.get("name"))
        index = start + len(calls)
        given = _str(entry.get("id"))  # newer servers may send one
        calls.append(ToolCall(given or tool_call_id(index, name, arguments), name, arguments))
    return calls


def _finish_reason(done_reason: Any, has_tool_calls: bool) -> FinishReason:
    # Ollama reports "stop" when the model called tools; "load"/"unload" are empty answers.
    if has_tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(data: Mapping[str, Any]) -> Usage:
    return Usage(input_tokens=_int(data.get("prompt_eval_count")),
                 output_tokens=_int(data.get("eval_count")))


def parse_response(data: Any, model: str) -> ChatResponse:
    """A non-streamed ``/api/chat`` answer to ChatResponse."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise ServerError("ollama response has no message")
    calls = parse_tool_calls(message.get("tool_calls"))
    return ChatResponse(
        text=_str(message.get("content")),
        tool_calls=calls,
        finish_reason=_finish_reason(data.get("done_reason"), bool(calls)),
        usage=_usage(data),
        model=_str(data.get("model")) or model,
        reasoning=_str(message.get("thinking")) or None,
    )


class _StreamState:
    """Folds streamed lines into ChatChunks, then the final chunk."""

    __slots__ = ("_calls", "_error", "done", "done_reason", "usage")

    def __init__(self, error: Callable[[int | None, Mapping[str, str], ErrorBody], LlmError],
                 ) -> None:
        self._error = error
        self._calls: list[ToolCall] = []
        self.done = False
        self.done_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, data: Any, headers: Mapping[str, str]) -> ChatChunk | None:
        if not isinstance(data, dict):
            return None
        if data.get("error"):
            raise self._error(None, headers, ErrorBody(text=json.dumps(data), json=data))
        raw_message = data.get("message")
        message: Mapping[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        start = len(self._calls)
        calls = parse_tool_calls(message.get("tool_calls"), start)
        self._calls.extend(calls)
        if data.get("done") is True:
            self.done = True
            self.done_reason = _str(data.get("done_reason")) or None
            self.usage = _usage(data)
        text, thinking = _str(message.get("content")), _str(message.get("thinking"))
        if not (text or thinking or calls):
            return None
        deltas = [ToolCallDelta(index=start + i, id=c.id, name=c.name,
                                arguments=json.dumps(c.arguments, ensure_ascii=False))
                  for i, c in enumerate(calls)]
        return ChatChunk(delta=text, tool_calls=deltas, reasoning_delta=thinking)

    def final_chunk(self) -> ChatChunk:
        return ChatChunk(finish_reason=_finish_reason(self.done_reason, bool(self._calls)),
                         usage=self.usage, final_tool_calls=list(self._calls))


# --------------------------------------------------------------------------------------------
# Errors


def _error_class(status: int | None, message: str) -> ErrorClass:
    low = message.lower()
    if status in (None, 400, 413, 500) and any(p in low for p in _CONTEXT_PHRASES) and (
            "exceed" in low or "longer" in low):
        return ErrorClass.CONTEXT_WINDOW
    return ErrorClass.SERVER if status is None else classify_status(status)


def map_ollama_error(status: int | None, headers: Mapping[str, str], body: ErrorBody, *,
                     secrets: tuple[str, ...] = ()) -> LlmError:
    """The LlmError for an Ollama error body ``{"error": "..."}`` (status None for an error
    line inside a 200 stream or body)."""
    err = body.json.get("error") if isinstance(body.json, dict) else None
    message = err if isinstance(err, str) else body.text
    return make_status_error(_error_class(status, message), status, headers,
                             provider_message=message, secrets=secrets)
