"""``POST /v1/chat/completions``: OpenAI's Chat Completions API over the router.

The body's ``model`` is a route (alias, ``provider:model``...); ``messages``, tools, images,
``response_format`` and every other field go to the router as they are (fields it does not
know are sent to the provider as extra parameters). ``stream`` and ``stream_options`` shape
the reply; ``n`` > 1 gives several choices where the target supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from router.server._openai_shapes import ChunkEncoder, completion_body
from router.server.calls import answer
from router.server.context import request_body, served_model
from router.server.errors import invalid
from router.server.inbound import TAG_HEADER, TIMEOUT_HEADER
from router.types import ChatChunk

if TYPE_CHECKING:
    from router.engine.router import Router

#: Router.chat's own keywords: set by headers, never by a body field.
_RESERVED = {"timeout": TIMEOUT_HEADER, "tags": TAG_HEADER, "request_id": "x-router-request-id"}


@dataclass(slots=True)
class ChatCall:
    """A chat completions body, split into what the router takes and how to reply."""

    model: str
    messages: list[Any]
    params: dict[str, Any]
    stream: bool
    include_usage: bool


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.pop(name, None)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(name, f"{name} must be a boolean")
    return value


def parse_chat(body: dict[str, Any]) -> ChatCall:
    """Split a chat completions body; 400 naming the parameter when the shape is wrong."""
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise invalid("model", "model is required: a model name or alias of this proxy's "
                               "route file (GET /v1/models lists them)")
    messages = body.pop("messages", None)
    if not isinstance(messages, list):
        raise invalid("messages", "messages is required and must be an array")
    stream = _flag(body, "stream") if "stream" in body else False
    options = body.pop("stream_options", None)
    if options is not None and not stream:
        raise invalid("stream_options", "stream_options is only allowed when stream is true")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options", "stream_options must be an object")
    include_usage = bool(options and options.get("include_usage"))
    if not _RESERVED.keys().isdisjoint(body):
        for name, header in _RESERVED.items():
            if name in body:
                raise invalid(name, f"{name} is not a chat completions parameter (use the "
                                    f"{header} header)")
    return ChatCall(model, messages, body, stream, include_usage)


def _encoder(call: ChatCall, rid: str, _router: Router, first: ChatChunk) -> ChunkEncoder:
    n = call.params.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return ChunkEncoder(rid, served_model(first.target), call.include_usage, choices)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """One chat completion, whole or streamed."""
    return await answer(request, parse_chat(await request_body(request)), completion_body,
                        _encoder)


__all__ = ["ChatCall", "chat_completions", "parse_chat"]
