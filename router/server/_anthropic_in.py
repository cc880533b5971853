"""An Anthropic Messages body as a router call: OpenAI-shaped messages (the router's input)
and parameters. Parameter paths in errors follow Anthropic's (``messages.1.content.0.type``).

- ``system`` (a string or text blocks) becomes a system message;
- user blocks: text, image (base64 or url source) and document (a base64 PDF; a text source
  becomes text) become parts; each ``tool_result`` becomes
  a ``tool`` message (before the user's other parts, as the Messages API requires them first),
  its text joined, or its parts when it holds images (a screenshot) or documents;
- assistant blocks: text is joined, ``tool_use`` becomes a tool call; thinking and
  redacted_thinking blocks go unchanged into the message's ``provider_state`` (kind
  anthropic), which the router sends back to Anthropic targets only (another kind's API
  would refuse a signature it did not make);
- ``stop_sequences`` -> ``stop``, ``tools`` -> functions (Anthropic's own tool types, such as
  web search, -> ``server_tools``, sent to Anthropic targets only), ``tool_choice`` (auto,
  any, tool, none; ``disable_parallel_tool_use``), ``metadata.user_id`` -> ``user``; any
  other field is passed to the provider as it is;
- ``cache_control`` stays where it was: on system, text and image blocks (as parts), on a
  tool (beside its function), and on a tool_result, tool_use or the text of an assistant turn
  as the breakpoint after that message (the router checks its shape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from router.engine.request import check_cache_control
from router.errors import InvalidRequestError
from router.server.errors import ApiError, invalid

_ROLES = ("user", "assistant")


@dataclass(slots=True)
class MessagesCall:
    """A Messages body, split into what the router takes and how to reply."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    stream: bool


def _kind(block: Any, path: str) -> str:
    if not isinstance(block, dict):
        raise invalid(path, f"{path}: each content block must be an object")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise invalid(f"{path}.type", f"{path}.type: Field required")
    return kind


def _blocks(content: list[Any], path: str) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Each content block with its type and its path (``messages.1.content.0``)."""
    for j, block in enumerate(content):
        where = f"{path}.{j}"
        yield block, _kind(block, where), where


def _cached(part: dict[str, Any], block: dict[str, Any], path: str) -> dict[str, Any]:
    """``part`` with the block's ``cache_control`` (checked, 400 naming ``path``'s), if any."""
    value = block.get("cache_control")
    if value is not None:
        try:
            part["cache_control"] = check_cache_control(value, f"{path}.cache_control")
        except InvalidRequestError as e:
            raise invalid(e.param or path, str(e)) from None
    return part


def _unsupported(kind: str, where: str, role: str) -> ApiError:
    return invalid(f"{where}.type", f"{where}.type: {kind!r} blocks are not supported in "
                                    f"{role} messages by this proxy")


def _text(block: dict[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{path}.text", f"{path}.text: must be a string")
    return text


def _image(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
        raise invalid(f"{path}.source", f"{path}.source: the source type must be base64 or "
                                        "url")
    if source["type"] == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(f"{path}.source.url", f"{path}.source.url: must be an http(s) URL")
        return _cached({"type": "image_url", "image_url": {"url": url}}, block, path)
    media, data = source.get("media_type"), source.get("data")
    if not isinstance(media, str) or not isinstance(data, str) or not data:
        raise invalid(f"{path}.source", f"{path}.source: a base64 source needs media_type "
                                        "and data strings")
    return _cached({"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}},
                   block, path)


def _document(block: dict[str, Any], path: str) -> dict[str, Any]:
    """A ``document`` block: a base64 PDF, or one by URL, as a file part (its title as the
    file name), a plain-text one as text."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text" and isinstance(source, dict) and isinstance(source.get("data"), str):
        return _cached({"type": "text", "text": source["data"]}, block, path)
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        file: dict[str, Any] = {"file_data": source["url"]}  # fetched by the provider
    elif kind != "base64" or not isinstance(source, dict):
        raise invalid(f"{path}.source", f"{path}.source: only base64 (PDF), url and text "
                                        "document sources are supported by this proxy")
    else:
        media, data = source.get("media_type"), source.get("data")
        if media != "application/pdf" or not isinstance(data, str) or not data:
            raise invalid(f"{path}.source", f"{path}.source: a base64 document needs "
                                            "media_type application/pdf and its data")
        file = {"file_data": f"data:application/pdf;base64,{data}"}
    if isinstance(block.get("title"), str):
        file["filename"] = block["title"]
    return _cached({"type": "file", "file": file}, block, path)


def _text_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    return _cached({"type": "text", "text": _text(block, path)}, block, path)


#: The content blocks that become parts of a message (in a user turn or a tool_result), by type.
_PARTS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "text": _text_part, "image": _image, "document": _document}


def _tool_result(block: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{path}.tool_use_id", f"{path}.tool_use_id: Field required")
    content = block.get("content", "")
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id}
    if isinstance(content, list):
        parts: list[dict[str, Any]] = []
        for inner, kind, where in _blocks(content, f"{path}.content"):
            convert = _PARTS.get(kind)
            if convert is None:
                raise invalid(f"{where}.type", f"{where}.type: only text, image and document "
                                               "blocks are supported in a tool_result by this "
                                               "proxy")
            parts.append(convert(inner, where))
        texts = [p for p in parts if p["type"] == "text"]
        if len(texts) < len(parts):
            content = parts  # with media: the parts, each with its own breakpoint
        else:  # text alone: one string, and a breakpoint in it marks the message
            content = "\n".join(p["text"] for p in texts)
            for p in texts:
                _cached(message, p, path)
    elif not isinstance(content, str):
        raise invalid(f"{path}.content", f"{path}.content: must be a string or blocks")
    message["content"] = content
    return _cached(message, block, path)


def _user(content: list[Any], path: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block, kind, where in _blocks(content, path):
        convert = _PARTS.get(kind)
        if convert is not None:
            parts.append(convert(block, where))
        elif kind == "tool_result":
            results.append(_tool_result(block, where))
        else:
            raise _unsupported(kind, where, "user")
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _thinking(block: dict[str, Any], kind: str, path: str) -> dict[str, Any]:
    """A thinking or redacted_thinking block as it must go back: its fields unchanged."""
    fields = ("data",) if kind == "redacted_thinking" else ("thinking", "signature")
    for name in fields:
        if not isinstance(block.get(name), str):
            raise invalid(f"{path}.{name}", f"{path}.{name}: must be a string (send the "
                                            "block back as it came)")
    return {"type": kind, **{name: block[name] for name in fields}}


def _assistant(content: list[Any], path: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    message: dict[str, Any] = {"role": "assistant"}
    for block, kind, where in _blocks(content, path):
        _cached(message, block, where)  # one breakpoint per message here: after its last block
        if kind == "text":
            texts.append(_text(block, where))
        elif kind == "tool_use":
            args = block.get("input", {})
            if not isinstance(args, dict):
                raise invalid(f"{where}.input", f"{where}.input: must be an object")
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": args}})
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(_thinking(block, kind, where))
        else:
            raise _unsupported(kind, where, "assistant")
    message["content"] = "".join(texts) or None
    if calls:
        message["tool_calls"] = calls
    if thinking:  # the router's reasoning state: sent back to Anthropic targets only
        message["provider_state"] = {"kind": "anthropic", "thinking": thinking}
    return message


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise invalid("messages", "messages: Field required (a non-empty array)")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        where = f"messages.{i}"
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise invalid(f"{where}.role", f"{where}.role: must be user or assistant")
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
        elif not isinstance(content, list):
            raise invalid(f"{where}.content", f"{where}.content: must be a string or blocks")
        elif m["role"] == "user":
            out.extend(_user(content, f"{where}.content"))
        else:
            out.append(_assistant(content, f"{where}.content"))
    return out


def _system(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"role": "system", "content": raw}] if raw else []
    if not isinstance(raw, list):
        raise invalid("system", "system: must be a string or text blocks")
    parts = []
    for block, kind, where in _blocks(raw, "system"):
        if kind != "text":
            raise invalid(f"{where}.type", f"{where}.type: system blocks must be text")
        parts.append(_text_part(block, where))
    return [{"role": "system", "content": parts}] if parts else []


def _tools(raw: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The custom tools as functions; Anthropic's own (``web_search_20250305``...) go to
    ``params["server_tools"]`` as they are (for Anthropic targets only)."""
    if not isinstance(raw, list):
        raise invalid("tools", "tools: must be an array")
    out = []
    for k, t in enumerate(raw):
        where = f"tools.{k}"
        if not isinstance(t, dict):
            raise invalid(where, f"{where}: must be an object")
        if t.get("type", "custom") != "custom":
            if not isinstance(t.get("type"), str) or not isinstance(t.get("name"), str):
                raise invalid(f"{where}.name", f"{where}.name: Field required (each of "
                                               "Anthropic's tools has a type and a name)")
            params.setdefault("server_tools", []).append(t)
            continue
        fn: dict[str, Any] = {"name": t.get("name"),
                              "parameters": t.get("input_schema") or {"type": "object"}}
        if t.get("description") is not None:
            fn["description"] = t["description"]
        out.append(_cached({"type": "function", "function": fn}, t, where))
    return out


def _tool_choice(raw: Any, params: dict[str, Any]) -> None:
    if not isinstance(raw, dict):
        raise invalid("tool_choice", "tool_choice: must be an object")
    kind = raw.get("type")
    if kind == "tool":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("tool_choice.name", "tool_choice.name: Field required")
        params["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in ("auto", "any", "none"):
        params["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise invalid("tool_choice.type", "tool_choice.type: must be auto, any, tool or none")
    if raw.get("disable_parallel_tool_use") is True:
        params["parallel_tool_calls"] = False


def parse_messages(body: dict[str, Any]) -> MessagesCall:
    """A Messages body as a router call; 400 naming the parameter when the shape is wrong."""
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise invalid("model", "model: Field required (a model name or alias of this "
                               "proxy's route file)")
    messages = _system(body.pop("system", None)) + _messages(body.pop("messages", None))
    stream = body.pop("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream", "stream: must be a boolean")
    params: dict[str, Any] = {}
    if "stop_sequences" in body:
        params["stop"] = body.pop("stop_sequences")
    if "tools" in body:
        tools = _tools(body.pop("tools"), params)
        if tools:
            params["tools"] = tools
    if "tool_choice" in body:
        _tool_choice(body.pop("tool_choice"), params)
    metadata = body.pop("metadata", None)
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        params["user"] = metadata["user_id"]
    for name in ("timeout", "tags", "request_id"):
        if name in body:
            raise invalid(name, f"{name}: not a Messages parameter (x-router-* headers set "
                                "the router's call options)")
    params.update(body)  # max_tokens, temperature, top_p and fields the router passes on
    return MessagesCall(model, messages, params, stream)


__all__ = ["MessagesCall", "parse_messages"]
