"""A loopback server speaking Anthropic's Messages wire: real status codes, headers, error
bodies and SSE bytes (named events), scripted per request.

    async with AnthropicServer() as server:      # 127.0.0.1, port 0
        server.enqueue(json_reply(message([text_block("hi")])), error_reply("overloaded"))
        ...  # point a provider at server.base_url ("http://127.0.0.1:<port>", no version)
        server.requests[0].json["max_tokens"]
        server.open_connections                  # sockets open right now

With ``AnthropicServer(prefill=False)`` it answers a request whose last message is the
assistant's (a prefill) with the 400 that Claude 4.6 models give ("Prefilling assistant messages
is not supported for this model."), before any scripted reply.

With ``AnthropicServer(signed=True)`` it also holds thinking blocks to what it served: each
thinking block a request sends back must carry a signature this server issued, with its thinking
text unchanged, and each redacted_thinking block data it issued (else a 400, as the API answers
a modified block); ``server.returned`` lists the blocks that came back.

Like the real API, the server checks every request it gets (``validate_request``: alternating
roles, no system role, tool_result after tool_use, image sources, max_tokens, known fields...)
and answers an invalid one with a 400 ``invalid_request_error`` naming the problems, before any
scripted reply; ``server.problems`` keeps them. The rest (queues, recorded requests, connection
counting, misbehaviours such as ``cut_at``) is the scripted server of ``tests/servers/base.py``;
stream ``events`` are dicts written as ``event: <type>`` + ``data: <json>``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.servers.base import (
    RecordedRequest,
    Reply,
    Script,
    ScriptedServer,
    json_reply,
    redirect_reply,
    stream_reply,
)

__all__ = [
    "ERRORS",
    "MESSAGES_PATH",
    "MESSAGE_STOP",
    "MODEL",
    "PING",
    "PREFILL_REFUSED",
    "AnthropicServer",
    "RecordedRequest",
    "Reply",
    "Script",
    "ScriptedServer",
    "block_delta",
    "block_start",
    "block_stop",
    "error_body",
    "error_reply",
    "json_reply",
    "message",
    "message_delta",
    "message_start",
    "named_error_body",
    "redirect_reply",
    "sse_bytes",
    "sse_frame",
    "stream_reply",
    "text_block",
    "text_events",
    "thinking_block",
    "thinking_events",
    "tool_events",
    "tool_use_block",
    "usage",
    "validate_headers",
    "validate_request",
]

MESSAGES_PATH = "/v1/messages"
MODEL = "claude-haiku-4-5-20251001"


class AnthropicServer(ScriptedServer):
    """The scripted server; an async context manager (see the module docstring)."""

    def __init__(self, *, seed: int = 0, validate: bool = True, signed: bool = False,
                 prefill: bool = True) -> None:
        super().__init__(seed=seed)
        self.prefill = prefill
        self.problems: list[list[str]] = []  # per rejected request
        self.default = json_reply(message([text_block("Hello!")]))
        self.validate = validate
        self.signed = signed
        self.issued: dict[str, str] = {}  # signature (or redacted data) -> thinking text
        self.returned: list[dict[str, Any]] = []  # thinking blocks requests sent back
        self._ids = itertools.count(1)

    def reply_for(self, recorded: RecordedRequest) -> Reply:
        if self.validate and recorded.path == MESSAGES_PATH:
            problems = validate_headers(recorded.headers)
            try:
                problems += validate_request(recorded.json)
                if self.signed:
                    problems += self._check_signatures(recorded.json)
            except ValueError:
                problems.append("body is not JSON")
            if not self.prefill and _ends_with_assistant(recorded.json):
                problems.append(PREFILL_REFUSED)
            if problems:
                self.problems.append(problems)
                return json_reply(error_body("invalid_request_error", "; ".join(problems)),
                                  status=400)
        reply = self.next_reply(recorded)
        if self.signed:
            self._issue(reply)
        return reply

    def _issue(self, reply: Reply) -> None:
        """Remember the thinking blocks a reply hands out (whole or streamed)."""
        blocks = list(reply.json.get("content") or ()) if isinstance(reply.json, dict) else []
        thinking: dict[int, list[str]] = {}
        for event in reply.events or ():
            if not isinstance(event, dict):
                continue
            block, delta = event.get("content_block") or {}, event.get("delta") or {}
            if block.get("type") in ("thinking", "redacted_thinking"):
                blocks.append(block)
                thinking[event["index"]] = [block.get("thinking") or ""]
            elif delta.get("type") == "thinking_delta":
                thinking[event["index"]].append(delta["thinking"])
            elif delta.get("type") == "signature_delta":
                self.issued[delta["signature"]] = "".join(thinking[event["index"]])
        for b in blocks:
            if b.get("type") == "thinking" and b.get("signature"):
                self.issued[b["signature"]] = b.get("thinking") or ""
            elif b.get("type") == "redacted_thinking":
                self.issued[b["data"]] = ""

    def _check_signatures(self, body: Any) -> list[str]:
        problems = []
        for i, m in enumerate(body.get("messages") or ()):
            content = m.get("content") if isinstance(m, dict) else None
            for j, b in enumerate(content if isinstance(content, list) else ()):
                kind = b.get("type") if isinstance(b, dict) else None
                if kind not in ("thinking", "redacted_thinking"):
                    continue
                self.returned.append(b)
                key = b.get("signature") if kind == "thinking" else b.get("data")
                if key not in self.issued or (
                        kind == "thinking" and self.issued[key] != b.get("thinking")):
                    problems.append(f"messages.{i}.content.{j}: Invalid `signature` in "
                                    f"`{kind}` block")
        return problems

    def reply_headers(self, reply: Reply) -> dict[str, str]:
        return {"request-id": f"req_011Test{next(self._ids):06d}",
                "anthropic-organization-id": "org-test", **reply.headers}

    def stream_headers(self) -> dict[str, str]:
        return {"cache-control": "no-cache"}

    def frame(self, event: Any) -> bytes:
        return sse_frame(event)


# --------------------------------------------------------------------------------------------
# Payload builders (the shapes of anthropic-sdk-python's Message and RawMessageStreamEvent)


def sse_frame(event: Any) -> bytes:
    """``event: <type>`` + ``data: <json>``, as the API names every event after its type."""
    if isinstance(event, bytes):
        return event
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def sse_bytes(events: Sequence[Any]) -> bytes:
    return b"".join(sse_frame(e) for e in events)


def usage(input_: int = 12, output: int = 5, *, cache_read: int = 0,
          cache_creation: int = 0, cache_creation_1h: int = 0) -> dict[str, Any]:
    """Usage as the API sends it: ``cache_creation_input_tokens`` is every cache write,
    ``cache_creation`` splits them by lifetime (``cache_creation_1h`` of them for an hour)."""
    return {"input_tokens": input_, "output_tokens": output,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_creation - cache_creation_1h,
                               "ephemeral_1h_input_tokens": cache_creation_1h},
            "service_tier": "standard"}


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(id_: str, name: str, input_: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": input_}


def thinking_block(thinking: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": thinking, "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}


def message(content: list[dict[str, Any]], *, stop_reason: str = "end_turn",
            model: str = MODEL, usage_: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop_reason,
            "stop_sequence": None, "usage": usage_ if usage_ is not None else usage()}


def message_start(*, model: str = MODEL, usage_: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    start_usage = dict(usage_ if usage_ is not None else usage(output=1))
    return {"type": "message_start",
            "message": {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message",
                        "role": "assistant", "model": model, "content": [],
                        "stop_reason": None, "stop_sequence": None, "usage": start_usage}}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str = "end_turn", output: int = 15,
                  **usage_fields: int) -> dict[str, Any]:
    return {"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output, **usage_fields}}


PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}


def text_events(parts: Sequence[str], *, stop_reason: str = "end_turn", output: int = 15,
                start_usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A streamed text answer as the API sends it (with a ping after the first block start)."""
    events = [message_start(usage_=start_usage), block_start(0, text_block("")), PING]
    events += [block_delta(0, {"type": "text_delta", "text": p}) for p in parts]
    return [*events, block_stop(0), message_delta(stop_reason, output), MESSAGE_STOP]


def tool_events(calls: Sequence[tuple[str, str, str]], *, fragment: int = 4,
                text: str | None = None) -> list[dict[str, Any]]:
    """Tool calls streamed as the API does: a tool_use block start with empty input, an empty
    first input_json_delta, then ``partial_json`` fragments of ``fragment`` characters."""
    events: list[dict[str, Any]] = [message_start()]
    index = 0
    if text is not None:
        events += [block_start(0, text_block("")),
                   block_delta(0, {"type": "text_delta", "text": text}), block_stop(0)]
        index = 1
    for id_, name, arguments in calls:
        events.append(block_start(index, tool_use_block(id_, name, {})))
        events.append(block_delta(index, {"type": "input_json_delta", "partial_json": ""}))
        events += [block_delta(index, {"type": "input_json_delta",
                                       "partial_json": arguments[i:i + fragment]})
                   for i in range(0, len(arguments), fragment)]
        events.append(block_stop(index))
        index += 1
    return [*events, message_delta("tool_use", 40), MESSAGE_STOP]


def thinking_events(thoughts: Sequence[str], answer: Sequence[str]) -> list[dict[str, Any]]:
    """A thinking block (with its signature_delta) then a text block."""
    events: list[dict[str, Any]] = [message_start(),
                                    block_start(0, {"type": "thinking", "thinking": ""})]
    events += [block_delta(0, {"type": "thinking_delta", "thinking": t}) for t in thoughts]
    events += [block_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gb"}),
               block_stop(0), block_start(1, text_block(""))]
    events += [block_delta(1, {"type": "text_delta", "text": a}) for a in answer]
    return [*events, block_stop(1), message_delta("end_turn", 60), MESSAGE_STOP]


# --------------------------------------------------------------------------------------------
# Errors: https://docs.anthropic.com/en/api/errors

#: Real Anthropic error replies: name -> (status, type, message, details).
ERRORS: dict[str, tuple[int, str, str, dict[str, Any] | None]] = {
    "invalid_request": (400, "invalid_request_error",
                        "messages: roles must alternate between \"user\" and \"assistant\"", None),
    "prompt_too_long": (400, "invalid_request_error",
                        "prompt is too long: 208656 tokens > 200000 maximum", None),
    "context_limit": (400, "invalid_request_error",
                      "input length and `max_tokens` exceed context limit: 178959 + 64000 > "
                      "200000, decrease input length or `max_tokens` and try again", None),
    "credit_balance": (400, "invalid_request_error",
                       "Your credit balance is too low to access the Anthropic API. Please go to "
                       "Plans & Billing to upgrade or purchase credits.", None),
    "authentication": (401, "authentication_error", "invalid x-api-key", None),
    "billing": (402, "billing_error", "Billing error", None),
    "permission": (403, "permission_error",
                   "Your API key does not have permission to use the specified resource.", None),
    "not_found": (404, "not_found_error", "model: claude-9-opus", None),
    "request_too_large": (413, "request_too_large",
                          "Request exceeds the maximum allowed number of bytes.", None),
    "rate_limit": (429, "rate_limit_error",
                   "Number of request tokens has exceeded your per-minute rate limit "
                   "(https://docs.anthropic.com/en/api/rate-limits); see the response headers "
                   "for current usage.", None),
    "spend_limit": (429, "rate_limit_error",
                    "You have reached your API usage limits: your organization has crossed its "
                    "monthly API usage threshold, set based on your organization's API tier.",
                    {"error_code": "enforced_spend_limit_reached"}),
    "api_error": (500, "api_error", "Internal server error", None),
    "timeout": (504, "timeout_error", "Request timeout", None),
    "overloaded": (529, "overloaded_error", "Overloaded", None),
}


def error_body(type_: str, msg: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": msg}
    if details is not None:
        error["details"] = details
    return {"type": "error", "error": error, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


def named_error_body(name: str) -> dict[str, Any]:
    _, type_, msg, details = ERRORS[name]
    return error_body(type_, msg, details)


def error_reply(name: str, *, headers: Mapping[str, str] | None = None) -> Reply:
    """The real status and body of Anthropic error ``name`` (a key of ERRORS)."""
    return json_reply(named_error_body(name), status=ERRORS[name][0], headers=headers)


# --------------------------------------------------------------------------------------------
# What the API accepts (the rules a request breaks get a 400 from the real API)

_TOP_LEVEL = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier",
    "container", "mcp_servers", "context_management",
})
_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_USER_BLOCKS = frozenset({"text", "image", "tool_result", "document"})
_ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})


PREFILL_REFUSED = "Prefilling assistant messages is not supported for this model."


def _ends_with_assistant(body: Any) -> bool:
    messages = body.get("messages") if isinstance(body, Mapping) else None
    if not isinstance(messages, list) or not messages:
        return False
    return isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant"


def validate_headers(headers: Mapping[str, str]) -> list[str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    problems = [f"{h} header is required" for h in ("x-api-key", "anthropic-version")
                if not lowered.get(h)]
    if not lowered.get("content-type", "").startswith("application/json"):
        problems.append("content-type must be application/json")
    return problems


def _check_image(source: Any, where: str) -> list[str]:
    if not isinstance(source, Mapping):
        return [f"{where}.source must be an object"]
    if source.get("type") == "url":
        url = source.get("url")
        ok = isinstance(url, str) and url.startswith(("http://", "https://"))
        return [] if ok else [f"{where}.source.url must be an http(s) URL"]
    if source.get("type") != "base64":
        return [f"{where}.source.type must be base64 or url"]
    problems = []
    if source.get("media_type") not in _MEDIA_TYPES:
        problems.append(f"{where}.source.media_type {source.get('media_type')!r} unsupported")
    try:
        base64.b64decode(str(source.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{where}.source.data is not base64")
    if not source.get("data"):
        problems.append(f"{where}.source.data is empty")
    return problems


def _check_document(source: Any, where: str) -> list[str]:
    """A document's source: a base64 PDF, plain text, or a URL."""
    if not isinstance(source, Mapping):
        return [f"{where}.source must be an object"]
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            return [f"{where}.source.media_type must be application/pdf"]
        try:
            base64.b64decode(str(source.get("data") or ""), validate=True)
        except (binascii.Error, ValueError):
            return [f"{where}.source.data is not base64"]
        return [] if source.get("data") else [f"{where}.source.data is empty"]
    if kind == "text":
        ok = source.get("media_type") == "text/plain" and isinstance(source.get("data"), str)
        return [] if ok else [f"{where}.source: a text source needs media_type text/plain"]
    if kind == "url":
        return [] if str(source.get("url", "")).startswith(("http://", "https://")) else [
            f"{where}.source.url must be an http(s) URL"]
    return [f"{where}.source.type must be base64, text, url or content"]


def _check_block(block: Any, role: str, where: str) -> list[str]:
    if not isinstance(block, Mapping):
        return [f"{where} must be an object"]
    kind = block.get("type")
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    if kind not in allowed:
        return [f"{where}: a {role} turn cannot hold a {kind!r} block"]
    if kind == "text" and not (isinstance(block.get("text"), str) and block["text"]):
        return [f"{where}: text content blocks must be non-empty"]
    if kind == "image":
        return _check_image(block.get("source"), where)
    if kind == "document":
        return _check_document(block.get("source"), where)
    if kind == "tool_use" and not (isinstance(block.get("id"), str) and block["id"]
                                   and isinstance(block.get("name"), str)
                                   and isinstance(block.get("input"), Mapping)):
        return [f"{where}: tool_use needs id, name and an input object"]
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return [p for i, b in enumerate(content)
                    for p in _check_block(b, "user", f"{where}.content[{i}]")]
    return []


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


_MAX_BREAKPOINTS = 4
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


def _marked(body: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(path, block, cache_control) of every block the request marks, in the API's prefix
    order: tools, then system, then messages (a tool_result's own blocks after it)."""
    out: list[tuple[str, Any, Any]] = []

    def visit(block: Any, where: str) -> None:
        if isinstance(block, Mapping):
            if "cache_control" in block:
                out.append((where, block, block["cache_control"]))
            inner = block.get("content") if block.get("type") == "tool_result" else None
            for k, b in enumerate(inner if isinstance(inner, list) else ()):
                visit(b, f"{where}.content.{k}")

    for i, tool in enumerate(body.get("tools") or ()):
        visit(tool, f"tools.{i}")
    system = body.get("system")
    for i, block in enumerate(system if isinstance(system, list) else ()):
        visit(block, f"system.{i}")
    for i, m in enumerate(body.get("messages") or ()):
        content = m.get("content") if isinstance(m, Mapping) else None
        for j, block in enumerate(content if isinstance(content, list) else ()):
            visit(block, f"messages.{i}.content.{j}")
    return out


def _check_cache_control(body: Mapping[str, Any]) -> list[str]:
    """Anthropic's prompt-caching rules: ``{"type": "ephemeral"}`` with an optional ttl of
    5m or 1h, at most four breakpoints, none on a thinking block, and a 1h breakpoint never
    after a 5m one (in the order tools, system, messages)."""
    problems: list[str] = []
    marked = _marked(body)
    if len(marked) > _MAX_BREAKPOINTS:
        problems.append(f"A maximum of {_MAX_BREAKPOINTS} blocks with cache_control may be "
                        f"provided. Found {len(marked)}.")
    short_seen = False
    for where, block, cc in marked:
        if block.get("type") in _UNCACHEABLE:
            problems.append(f"{where}.cache_control: {block['type']} blocks cannot be cached")
        if not isinstance(cc, Mapping) or cc.get("type") != "ephemeral" or set(cc) - {
                "type", "ttl"} or cc.get("ttl", "5m") not in ("5m", "1h"):
            problems.append(f"{where}.cache_control: invalid {cc!r}")
            continue
        if cc.get("ttl", "5m") == "5m":
            short_seen = True
        elif short_seen:
            problems.append(f"{where}.cache_control: a ttl='1h' cache_control block must not "
                            "come after a ttl='5m' cache_control block")
    return problems


def _check_turns(messages: list[Any]) -> list[str]:
    problems: list[str] = []
    pending: set[str] = set()  # tool_use ids of the previous assistant turn
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        role = m.get("role") if isinstance(m, Mapping) else None
        if role not in ("user", "assistant"):
            problems.append(f"{where}.role must be user or assistant (got {role!r}); "
                            "system prompts go in the top-level system field")
            continue
        if i == 0 and role != "user":
            problems.append("messages: first message must use the \"user\" role")
        if i and isinstance(messages[i - 1], Mapping) and messages[i - 1].get("role") == role:
            problems.append(f"{where}: roles must alternate between user and assistant")
        content = m.get("content")
        if not content or not isinstance(content, str | list):
            problems.append(f"{where}: content must be a non-empty string or list")
            pending = set()
            continue
        blocks = _blocks(content)
        for j, b in enumerate(blocks):
            problems += _check_block(b, role, f"{where}.content.{j}")
        kinds = [b.get("type") for b in blocks if isinstance(b, Mapping)]
        results = [b.get("tool_use_id") for b in blocks
                   if isinstance(b, Mapping) and b.get("type") == "tool_result"]
        if role == "user":
            if results and kinds[:len(results)] != ["tool_result"] * len(results):
                problems.append(f"{where}: tool_result blocks must come first")
            if set(results) != pending:
                problems.append(f"{where}: tool_result ids {sorted(map(str, results))} do not "
                                f"answer the tool_use ids {sorted(pending)} before them")
            pending = set()
        else:
            if pending:
                problems.append(f"{where}: tool_use ids {sorted(pending)} have no tool_result")
            pending = {str(b.get("id")) for b in blocks
                       if isinstance(b, Mapping) and b.get("type") == "tool_use"}
    if messages and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant":
        last = _blocks(messages[-1].get("content") or [])
        if last and isinstance(last[-1], Mapping) and last[-1].get("type") == "text" \
                and str(last[-1].get("text")) != str(last[-1].get("text")).rstrip():
            problems.append("final assistant content cannot end with trailing whitespace")
    return problems


def _check_tools(body: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    names = set()
    for i, tool in enumerate(body.get("tools") or ()):
        name = tool.get("name") if isinstance(tool, Mapping) else None
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            problems.append(f"tools.{i}.name {name!r} is invalid")
        names.add(name)
        kind = tool.get("type", "custom") if isinstance(tool, Mapping) else None
        if kind != "custom":  # Anthropic's own tools (web_search_20250305...): type and name
            if not (isinstance(kind, str) and re.fullmatch(r"[a-z_]+_\d{8}", kind)):
                problems.append(f"tools.{i}.type {kind!r} is not a tool type")
            continue
        schema = tool.get("input_schema") if isinstance(tool, Mapping) else None
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            problems.append(f"tools.{i}.input_schema must be an object schema")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, Mapping) or choice.get("type") not in (
                "auto", "any", "tool", "none"):
            problems.append(f"tool_choice {choice!r} is invalid")
        elif choice["type"] == "tool" and choice.get("name") not in names:
            problems.append(f"tool_choice names an unknown tool {choice.get('name')!r}")
    return problems


def _check_thinking(body: Mapping[str, Any]) -> list[str]:
    thinking = body.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return []
    problems = []
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        problems.append("thinking.budget_tokens must be at least 1024")
    elif budget >= body.get("max_tokens", 0):
        problems.append("max_tokens must be greater than thinking.budget_tokens")
    if "temperature" in body or "top_k" in body:
        problems.append("temperature and top_k may not be set when thinking is enabled")
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
        problems.append("thinking may not be enabled when tool_choice forces tool use")
    return problems + _check_thinking_turn(body.get("messages"))


def _results_first(turn: Any) -> bool:
    content = turn.get("content") if isinstance(turn, Mapping) else None
    return isinstance(content, list) and bool(content) and isinstance(content[0], Mapping) \
        and content[0].get("type") == "tool_result"


def _check_thinking_turn(messages: Any) -> list[str]:
    """With thinking on, a tool-use turn in progress must have begun with a thinking block
    ("Toggling thinking modes in conversations": one thinking mode per assistant turn)."""
    if not isinstance(messages, list) or not messages or not _results_first(messages[-1]):
        return []
    first, index = None, 0
    for i in range(len(messages) - 2, -1, -1):
        turn = messages[i]
        if isinstance(turn, Mapping) and turn.get("role") == "assistant":
            first, index = turn, i
        elif not _results_first(turn):
            break
    blocks = _blocks(first.get("content") or []) if first is not None else []
    if not blocks or not isinstance(blocks[0], Mapping) \
            or blocks[0].get("type") in ("thinking", "redacted_thinking"):
        return []
    return [f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` "
            "message must start with a thinking block."]


def validate_request(body: Any) -> list[str]:
    """What the real API would reject in this Messages request body ([] when valid)."""
    if not isinstance(body, Mapping):
        return ["body must be a JSON object"]
    problems = [f"{k}: Extra inputs are not permitted" for k in body if k not in _TOP_LEVEL]
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        problems.append("max_tokens: Field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages: at least one message is required")
    else:
        problems += _check_turns(messages)
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        problems.append("system must be a string or a list of text blocks")
    for i, block in enumerate(system if isinstance(system, list) else ()):
        if not (isinstance(block, Mapping) and block.get("type") == "text"
                and isinstance(block.get("text"), str) and block["text"]):
            problems.append(f"system.{i}: must be a non-empty text block")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list)
                                  and all(isinstance(s, str) for s in stops)):
        problems.append("stop_sequences must be a list of strings")
    return problems + _check_tools(body) + _check_thinking(body) + _check_cache_control(body)
