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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from router.errors import ConfigError, ErrorClass, InvalidRequestError, LlmError, ServerError
from router.providers._openai_wire import parse_arguments
from router.providers.base import (
    ErrorBody,
    HttpCall,
    HttpPool,
    HttpProvider,
    ProviderConfig,
    classify_status,
    make_status_error,
    reply_text,
)
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

_THINK_LEVELS = frozenset({"low", "medium", "high"})  # gpt-oss; other thinking models take bools
# Ollama's wordings for an over-long prompt (server truncates by default; with truncate/shift
# off, or from the llama.cpp runner, it refuses with one of these).
_CONTEXT_PHRASES = ("context length", "context size", "context window", "exceed_context_size")


class OllamaProvider(HttpProvider):
    """A local (or proxied) Ollama server. No key by default; ``api_key`` is sent as a Bearer
    token for servers behind an authenticating proxy or ollama.com.

    Options: ``keep_alive`` (seconds; how long the model stays loaded after the call),
    ``capabilities`` (overrides of the permissive defaults: what a model can do is only known
    to the server, except that it never fetches image URLs).

    A stream is NDJSON, one object per line, complete at the line with ``done: true``.
    """

    kind: ClassVar[str] = "ollama"
    framing: ClassVar[Literal["sse", "ndjson"]] = "ndjson"
    terminator: ClassVar[str] = "done: true"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base_url = config.base_url or self.default_base_url or ""
        self._url = base_url.rstrip("/") + "/api/chat"
        auth = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        self._headers, self._stream_headers = self.headers(auth)
        self._keep_alive = _keep_alive(config)

    def request(self, model: str, request: ChatRequest, *, stream: bool) -> HttpCall:
        body = build_body(model, request, stream=stream, keep_alive=self._keep_alive)
        if stream:
            return HttpCall(self._url, body, self._stream_headers, model, _StreamState())
        return HttpCall(self._url, body, self._headers, model)

    def parse_reply(self, data: Any, call: HttpCall) -> ChatResponse:
        return parse_response(data, call.model)

    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        return map_ollama_error(status, headers, body, secrets=self._secrets)


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
    if request.n is not None:  # /api/chat answers once per call
        raise InvalidRequestError("ollama returns one choice per call (n > 1 asked)")
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
    if raw is not None and not isinstance(raw, list):
        raise ValueError(f"tool_calls is {type(raw).__name__}, not a list")
    calls: list[ToolCall] = []
    for entry in raw or ():
        fn = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments")
        arguments = parse_arguments(args)  # an object; a JSON string from some servers
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
        text=reply_text(message.get("content")),
        tool_calls=calls,
        finish_reason=_finish_reason(data.get("done_reason"), bool(calls)),
        usage=_usage(data),
        model=_str(data.get("model")) or model,
        reasoning=_str(message.get("thinking")) or None,
    )


class _StreamState:
    """Folds streamed lines into ChatChunks, then the final chunk."""

    __slots__ = ("_calls", "done", "done_reason", "usage")

    def __init__(self) -> None:
        self._calls: list[ToolCall] = []
        self.done = False
        self.done_reason: str | None = None
        self.usage: Usage | None = None

    @property
    def complete(self) -> bool:
        """The line with ``done: true`` arrived."""
        return self.done

    @property
    def finished(self) -> bool:
        return self.done

    def feed(self, data: Any) -> ChatChunk | None:
        if not isinstance(data, dict):
            raise ValueError(f"line is {type(data).__name__}, not an object")
        raw_message = data.get("message")
        if raw_message is not None and not isinstance(raw_message, dict):
            raise ValueError(f"message is {type(raw_message).__name__}, not an object")
        message: Mapping[str, Any] = raw_message or {}
        start = len(self._calls)
        calls = parse_tool_calls(message.get("tool_calls"), start)
        self._calls.extend(calls)
        if data.get("done") is True:
            self.done = True
            self.done_reason = _str(data.get("done_reason")) or None
            self.usage = _usage(data)
        text, thinking = reply_text(message.get("content")), _str(message.get("thinking"))
        if not (text or thinking or calls):
            return None
        deltas = [ToolCallDelta(index=start + i, id=c.id, name=c.name,
                                arguments=json.dumps(c.arguments, ensure_ascii=False))
                  for i, c in enumerate(calls)]
        return ChatChunk(delta=text, tool_calls=deltas, reasoning_delta=thinking)

    def final_chunks(self) -> list[ChatChunk]:
        return [ChatChunk(finish_reason=_finish_reason(self.done_reason, bool(self._calls)),
                          usage=self.usage, final_tool_calls=list(self._calls))]


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
