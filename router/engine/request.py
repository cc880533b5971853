"""Turn what callers pass (OpenAI-shaped dicts or our objects) into a ChatRequest.

Bad input raises InvalidRequestError naming the offending field, before any target is tried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from router.errors import InvalidRequestError
from router.types import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCall,
)

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_KNOWN_PARAMS = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "seed", "user",
    "reasoning_effort",
})


_PLAIN_ROLES = frozenset({"system", "user", "assistant"})


def to_message(m: Message | Mapping[str, Any], i: int = 0) -> Message:
    """One message from a Message or an OpenAI chat dict."""
    if type(m) is dict and len(m) == 2:  # the common {"role": ..., "content": "text"}
        role, content = m.get("role"), m.get("content")
        if type(content) is str and role in _PLAIN_ROLES:
            return Message(role, content)
    if isinstance(m, Message):
        return m
    if not isinstance(m, Mapping):
        raise InvalidRequestError(f"messages[{i}] must be a dict or Message, "
                                  f"not {type(m).__name__}")
    role = m.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(f"messages[{i}].role must be one of system, user, assistant, "
                                  f"tool (got {role!r})")
    if role == "developer":
        role = "system"
    content = _content(m.get("content"), i)
    calls = m.get("tool_calls")
    tool_calls = [_tool_call(c, i, j) for j, c in enumerate(calls)] if calls else None
    tool_call_id = m.get("tool_call_id")
    if role == "tool" and not tool_call_id:
        raise InvalidRequestError(f"messages[{i}] has role tool but no tool_call_id")
    return Message(role=cast(Role, role), content=content, tool_calls=tool_calls,
                   tool_call_id=tool_call_id, name=m.get("name"))


def _content(c: Any, i: int) -> str | list[ContentPart] | None:
    if c is None or isinstance(c, str):
        return c
    if not isinstance(c, list):
        raise InvalidRequestError(f"messages[{i}].content must be a string or a list of parts")
    parts: list[ContentPart] = []
    for j, p in enumerate(c):
        if isinstance(p, TextPart | ImagePart):
            parts.append(p)
            continue
        kind = p.get("type") if isinstance(p, Mapping) else None
        if kind == "text":
            parts.append(TextPart(str(p.get("text", ""))))
        elif kind == "image_url":
            img = p.get("image_url")
            url = img.get("url") if isinstance(img, Mapping) else img
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
                raise InvalidRequestError(f"messages[{i}].content[{j}].image_url.url must be "
                                          "an http(s) or data: URL")
            detail = img.get("detail") if isinstance(img, Mapping) else None
            parts.append(ImagePart(url, detail))
        else:
            raise InvalidRequestError(f"messages[{i}].content[{j}] has unsupported type "
                                      f"{kind!r} (text and image_url are supported)")
    return parts


def _tool_call(c: Any, i: int, j: int) -> ToolCall:
    if isinstance(c, ToolCall):
        return c
    fn = c.get("function", c) if isinstance(c, Mapping) else None
    if not isinstance(fn, Mapping) or not fn.get("name"):
        raise InvalidRequestError(f"messages[{i}].tool_calls[{j}] needs function.name")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as e:
            raise InvalidRequestError(f"messages[{i}].tool_calls[{j}].function.arguments "
                                      "is not valid JSON") from e
    if not isinstance(args, dict):
        raise InvalidRequestError(f"messages[{i}].tool_calls[{j}] arguments must be an object")
    return ToolCall(id=str(c.get("id") or f"call_{i}_{j}"), name=str(fn["name"]), arguments=args)


def to_tool(t: Tool | Mapping[str, Any], i: int = 0) -> Tool:
    """A Tool from a Tool or an OpenAI ``{"type": "function", "function": {...}}`` dict."""
    if isinstance(t, Tool):
        return t
    fn = t.get("function", t) if isinstance(t, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise InvalidRequestError(f"tools[{i}] needs function.name")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    return Tool(name=fn["name"], description=fn.get("description"), parameters=params,
                strict=fn.get("strict"))


def to_response_format(rf: ResponseFormat | Mapping[str, Any] | None) -> ResponseFormat | None:
    """A ResponseFormat from ours or OpenAI's dict (json_object / json_schema)."""
    if rf is None or isinstance(rf, ResponseFormat):
        return rf
    kind = rf.get("type")
    if kind == "json_schema":
        js = rf.get("json_schema") or {}
        if not isinstance(js.get("schema"), Mapping):
            raise InvalidRequestError("response_format.json_schema.schema must be an object")
        return ResponseFormat("json_schema", schema=dict(js["schema"]),
                              name=js.get("name") or "response", strict=js.get("strict"))
    if kind in ("json_object", "text"):
        return ResponseFormat(kind)
    raise InvalidRequestError(f"response_format.type must be text, json_object or json_schema "
                              f"(got {kind!r})")


def build_request(messages: Iterable[Message | Mapping[str, Any]],
                  params: Mapping[str, Any]) -> ChatRequest:
    """The ChatRequest of one call; unknown params go to ``extra`` (sent as-is)."""
    if type(messages) is not list and (  # the ABC check costs ~2 us: only off the common path
            isinstance(messages, str | bytes) or not isinstance(messages, Iterable)):
        raise InvalidRequestError("messages must be a list of messages")
    msgs = [to_message(m, i) for i, m in enumerate(messages)]
    if not msgs:
        raise InvalidRequestError("messages is empty")
    max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequestError("max_tokens must be a positive integer")
    tools = params.get("tools")
    stop = params.get("stop")
    return ChatRequest(
        messages=msgs,
        max_tokens=max_tokens,
        temperature=params.get("temperature"),
        top_p=params.get("top_p"),
        stop=[stop] if isinstance(stop, str) else stop,
        tools=[to_tool(t, i) for i, t in enumerate(tools)] if tools else None,
        tool_choice=params.get("tool_choice"),
        parallel_tool_calls=params.get("parallel_tool_calls"),
        response_format=to_response_format(params.get("response_format")),
        seed=params.get("seed"),
        user=params.get("user"),
        reasoning_effort=params.get("reasoning_effort"),
        extra={k: v for k, v in params.items() if k not in _KNOWN_PARAMS},
    )
