"""The Anthropic Messages API's ``message`` object (and its ``usage``) as our types: text
blocks joined, tool_use blocks as calls, thinking as ``reasoning`` with its signatures in
``provider_state``, the answer tool's input as text. Pure functions; no I/O.
"""

from __future__ import annotations

from typing import Any

from router.errors import ServerError
from router.providers._anthropic_thinking import (
    provider_state,
    refusal_text,
    thinking_state,
)
from router.providers._anthropic_wire import AnswerTool
from router.providers._openai_wire import parse_arguments
from router.providers.base import reply_text
from router.types import (
    ChatResponse,
    FinishReason,
    ToolCall,
    Usage,
)

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a paused server-tool turn; what came so far is the answer
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def parse_input(text: str) -> dict[str, Any]:
    """Streamed ``partial_json`` fragments, joined, to a dict (empty → {}; not a JSON object →
    ``{"_raw": text}``: the model produced bad JSON and the caller decides), as OpenAI's
    tool-call arguments are read."""
    return parse_arguments(text)


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> FinishReason:
    """``stop_reason`` mapped; unknown or missing → stop, or tool_calls when calls came."""
    reason = _STOP_REASONS.get(stop_reason) if isinstance(stop_reason, str) else None
    if reason is None or (reason == "tool_calls" and not has_tool_calls):
        # tool_use with only the answer tool called is a finished answer
        return "tool_calls" if has_tool_calls else "stop"
    return reason


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(data: Any) -> Usage | None:
    """``usage`` to Usage: the API's ``input_tokens`` leaves the cache out, ours counts every
    prompt token (uncached + cache read + cache written, as the API's docs add them up);
    cached is the cache read, cache_write the cache written (``cache_creation`` tells the
    one-hour writes among them)."""
    if not isinstance(data, dict):
        return None
    cache_read = _int(data.get("cache_read_input_tokens"))
    cache_write = _int(data.get("cache_creation_input_tokens"))
    details = data.get("output_tokens_details")
    ttl = data.get("cache_creation")
    long_writes = _int(ttl.get("ephemeral_1h_input_tokens")) if isinstance(ttl, dict) else 0
    tools = data.get("server_tool_use")  # {"web_search_requests": N, ...}
    return Usage(
        input_tokens=_int(data.get("input_tokens")) + cache_read + cache_write,
        output_tokens=_int(data.get("output_tokens")),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(long_writes, cache_write),
        web_searches=_int(tools.get("web_search_requests")) if isinstance(tools, dict) else 0,
        reasoning_tokens=(_int(details.get("thinking_tokens"))
                          if isinstance(details, dict) else 0),
    )


def parse_message(data: Any, model: str, answer: AnswerTool | None = None) -> ChatResponse:
    """A ``message`` object to ChatResponse: text blocks joined, tool_use blocks as calls,
    thinking blocks as ``reasoning`` (never in ``text``; with their signatures in
    ``provider_state``); the answer tool's input as ``text``. ``stop_reason: "refusal"`` sets
    ``refusal`` (finish_reason content_filter), whether or not content came before it."""
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        raise ServerError("message has no content list")
    texts: list[str] = []
    thoughts: list[str] = []
    signed: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    answer_text: str | None = None
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(reply_text(block.get("text")))
        elif kind == "thinking" or kind == "redacted_thinking":
            if kind == "thinking":
                thoughts.append(reply_text(block.get("thinking")))
            signed.append(thinking_state(block))
        elif kind == "tool_use":
            raw = block.get("input")
            if raw is not None and not isinstance(raw, dict):
                raise ValueError(f"tool_use input is {type(raw).__name__}, not an object")
            arguments = dict(raw) if raw else {}
            if answer is not None and block.get("name") == answer.name:
                answer_text = answer.text(arguments)
            else:
                calls.append(ToolCall(id=str(block.get("id") or ""),
                                      name=str(block.get("name") or ""), arguments=arguments))
    text = "".join(texts) if answer_text is None else answer_text
    refusal = None
    if data.get("stop_reason") == "refusal":
        refusal = refusal_text(data.get("stop_details"))
    return ChatResponse(
        text=text,
        tool_calls=calls,
        finish_reason=finish_reason(data.get("stop_reason"), bool(calls)),
        usage=parse_usage(data.get("usage")) or Usage(),
        model=str(data.get("model") or model),
        id=data.get("id"),
        reasoning="".join(thoughts) or None,
        refusal=refusal,
        provider_state=provider_state(signed),
    )
