"""Router answers in Anthropic's Messages shapes (anthropic-sdk-python's ``Message`` and
``RawMessageStreamEvent``): the whole message, and the SSE event sequence of a stream:
message_start, ping, per block content_block_start / content_block_delta (text_delta,
input_json_delta, thinking_delta, signature_delta) / content_block_stop, then message_delta
and message_stop.

Thinking blocks come out only when an Anthropic target served (its signed blocks are the
reply's ``provider_state``); another kind's reasoning has no signature to send back. In a
stream the router knows a thinking block's signature only at the end, so the block stays
open while the answer's blocks stream after it, and gets its ``signature_delta`` and
``content_block_stop`` at the end (blocks are addressed by index, as the SDKs accumulate
them); redacted_thinking blocks, which carry no text to stream, come whole at the end."""

from __future__ import annotations

import json
from typing import Any

from router.providers._json import dumps_json
from router.server.context import served_model
from router.server.errors import ApiError, anthropic_error_body
from router.types import ChatChunk, ChatResponse, ToolCall, Usage

#: The router's finish reasons as Anthropic stop reasons.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal"}


def usage_body(u: Usage) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; the router's
    input count includes both (router.types.Usage)."""
    body: dict[str, Any] = {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens, "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens}
    if u.web_searches:
        body["server_tool_use"] = {"web_search_requests": u.web_searches}
    if u.cache_write_tokens:  # the writes by lifetime, as the API breaks them down
        body["cache_creation"] = {
            "ephemeral_5m_input_tokens": u.cache_write_tokens - u.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens}
    return body


def thinking_blocks(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The signed thinking blocks of an Anthropic target's reasoning state ([] otherwise)."""
    if not state or state.get("kind") != "anthropic":
        return []
    return [dict(b) for b in state.get("thinking") or () if isinstance(b, dict)]


def stop_reason(finish_reason: str | None, refusal: str | None) -> str:
    """The stop reason of an answer (``refusal`` when the provider refused)."""
    return "refusal" if refusal else STOP_REASONS.get(finish_reason or "stop", "end_turn")


def _tool_use(tc: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": tc.id, "name": tc.name, "input": tc.arguments}


def message_body(resp: ChatResponse, request_id: str) -> dict[str, Any]:
    """The ``message`` object of a router answer; ``model`` names the model that served."""
    content = thinking_blocks(resp.provider_state)
    if resp.text or not (resp.tool_calls or resp.refusal):
        content.append({"type": "text", "text": resp.text})
    content += [_tool_use(tc) for tc in resp.tool_calls]
    body = {"id": f"msg_{request_id}", "type": "message", "role": "assistant",
            "model": resp.model or served_model(resp.target), "content": content,
            "stop_reason": stop_reason(resp.finish_reason, resp.refusal),
            "stop_sequence": None, "usage": usage_body(resp.usage)}
    if resp.refusal:  # Anthropic's RefusalStopDetails; the router knows no category
        body["stop_details"] = {"type": "refusal", "category": None,
                                "explanation": resp.refusal}
    return body


def _event(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: ".encode() + dumps_json(obj, escape=True) + b"\n\n"


class EventEncoder:
    """A router stream as Messages stream events. Text and each tool call are blocks in the
    order they start; a tool call's arguments stream as ``input_json_delta``. With
    ``thinking`` (an Anthropic target serves) the reasoning streams as thinking blocks
    (``thinking_delta``), signed at the end (see the module docstring)."""

    def __init__(self, request_id: str, model: str, thinking: bool = False) -> None:
        self._id, self._model = f"msg_{request_id}", model
        self._index = -1  # the open block's index (-1: none yet)
        self._open: str | None = None  # "text", "tool" or "thinking"
        self._tools: dict[int, int] = {}  # the router's tool index -> block index
        self._finish: str | None = None
        self._refusal = False
        self._usage: Usage | None = None
        self._thinking = thinking
        self._unsigned: list[int] = []  # thinking blocks waiting for their signature
        self._state: dict[str, Any] | None = None

    def start(self) -> list[bytes]:
        message: dict[str, Any] = {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [_event({"type": "message_start", "message": message}),
                _event({"type": "ping"})]

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        if self._open == "thinking":  # left open until its signature comes (at the end)
            self._open = None
            return []
        self._open = None
        return [_event({"type": "content_block_stop", "index": self._index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self._index += 1
        self._open = kind
        out.append(_event({"type": "content_block_start", "index": self._index,
                           "content_block": block}))
        return out

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event({"type": "content_block_delta", "index": index, "delta": delta})

    def chunk(self, c: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        if c.reasoning_delta and self._thinking:
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "",
                                                     "signature": ""})
                self._unsigned.append(self._index)
            out.append(self._delta(self._index, {"type": "thinking_delta",
                                                 "thinking": c.reasoning_delta}))
        if c.delta:
            if self._open != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out.append(self._delta(self._index, {"type": "text_delta", "text": c.delta}))
        for d in c.tool_calls:
            if d.index not in self._tools:
                out += self._open_block("tool", {"type": "tool_use", "id": d.id or "",
                                                 "name": d.name or "", "input": {}})
                self._tools[d.index] = self._index
            if d.arguments:
                out.append(self._delta(self._tools[d.index], {"type": "input_json_delta",
                                                              "partial_json": d.arguments}))
        if c.final_tool_calls and not self._tools:  # calls only known at the end
            for tc in c.final_tool_calls:
                out += self._open_block("tool", {**_tool_use(tc), "input": {}})
                out.append(self._delta(self._index, {"type": "input_json_delta",
                                                     "partial_json": json.dumps(tc.arguments)}))
        if c.finish_reason is not None:
            self._finish = c.finish_reason
        self._refusal = self._refusal or bool(c.refusal)
        if c.usage is not None:
            self._usage = c.usage
        if c.provider_state is not None:
            self._state = c.provider_state
        return out

    def _sign(self) -> list[bytes]:
        """Each streamed thinking block's signature and stop, then the redacted blocks."""
        out: list[bytes] = []
        blocks = thinking_blocks(self._state) if self._thinking else []
        signed = [b for b in blocks if b.get("type") == "thinking"]
        for k, index in enumerate(self._unsigned):
            if k < len(signed) and isinstance(signed[k].get("signature"), str):
                out.append(self._delta(index, {"type": "signature_delta",
                                               "signature": signed[k]["signature"]}))
            out.append(_event({"type": "content_block_stop", "index": index}))
        for b in blocks:
            if b.get("type") == "redacted_thinking":
                self._index += 1
                out += [_event({"type": "content_block_start", "index": self._index,
                                "content_block": b}),
                        _event({"type": "content_block_stop", "index": self._index})]
        return out

    def end(self) -> list[bytes]:
        out = self._close_block() + self._sign()
        stop = stop_reason(self._finish, "refusal" if self._refusal else None)
        usage = usage_body(self._usage) if self._usage is not None else {"output_tokens": 0}
        out.append(_event({"type": "message_delta",
                           "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": usage}))
        out.append(_event({"type": "message_stop"}))
        return out

    def error(self, err: ApiError) -> bytes:
        return _event(anthropic_error_body(err))


__all__ = ["STOP_REASONS", "EventEncoder", "message_body", "stop_reason", "thinking_blocks",
           "usage_body"]
