"""Message content as span attributes (``capture_content=True`` only): the semantic
conventions' parts (text clipped, images and documents as their kind and MIME type, never
their bytes; URLs without their query string)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from router.types import ChatChunk, ChatResponse, FilePart, ImagePart, Message, TextPart, ToolCall

_MAX_TEXT = 4096  # characters of one text part, one tool argument object
_MAX_MESSAGES = 32768  # characters of one gen_ai.*.messages attribute


def _clip(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return text
    return f"{text[:_MAX_TEXT]}...[{len(text) - _MAX_TEXT} more characters]"


def _tool_call_part(call: ToolCall) -> dict[str, Any]:
    args: Any = call.arguments
    text = json.dumps(args, ensure_ascii=False, default=str)
    if len(text) > _MAX_TEXT:
        args = _clip(text)
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": args}


def _image_part(part: ImagePart | FilePart) -> dict[str, Any]:
    modality = "document" if isinstance(part, FilePart) else "image"
    if part.is_data_url:  # the bytes stay out; the MIME type says what they were
        mime = part.url[5:].split(";", 1)[0].split(",", 1)[0] or None
        return {"type": "blob", "modality": modality, "mime_type": mime, "content": ""}
    # The query string may hold a signature (presigned URLs): left out.
    return {"type": "uri", "modality": modality, "uri": part.url.split("?", 1)[0]}


def input_message(m: Message) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if m.role == "tool":
        parts.append({"type": "tool_call_response", "id": m.tool_call_id,
                      "response": _clip(m.text)})
    elif isinstance(m.content, str):
        parts.append({"type": "text", "content": _clip(m.content)})
    elif m.content:
        for p in m.content:
            parts.append({"type": "text", "content": _clip(p.text)} if isinstance(p, TextPart)
                         else _image_part(p))
    parts.extend(_tool_call_part(c) for c in m.tool_calls or ())
    out: dict[str, Any] = {"role": m.role, "parts": parts}
    if m.name:
        out["name"] = m.name
    return out


def output_message(response: ChatResponse | ChatChunk) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    if isinstance(response, ChatResponse):
        if response.reasoning:
            parts.append({"type": "reasoning", "content": _clip(response.reasoning)})
        if response.text:
            parts.append({"type": "text", "content": _clip(response.text)})
        calls: Sequence[ToolCall] = response.tool_calls
    else:
        calls = response.final_tool_calls or ()
    parts.extend(_tool_call_part(c) for c in calls)
    if not parts:
        return None
    reason = response.finish_reason or "stop"
    # The schema's FinishReason says "tool_call" where OpenAI (and router) say "tool_calls".
    return {"role": "assistant", "parts": parts,
            "finish_reason": "tool_call" if reason == "tool_calls" else reason}


def messages_json(messages: list[dict[str, Any]]) -> str:
    """A JSON array of ``messages`` (the spec allows a JSON string on spans) within
    _MAX_MESSAGES characters: the newest messages are kept, order preserved."""
    encoded = [json.dumps(m, ensure_ascii=False, default=str) for m in messages]
    kept: list[str] = []
    size = 2
    for item in reversed(encoded):
        if kept and size + len(item) + 1 > _MAX_MESSAGES:
            break
        kept.append(item)
        size += len(item) + 1
    return "[" + ",".join(reversed(kept)) + "]"


__all__ = ["input_message", "messages_json", "output_message"]
