"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API over
the router, for Anthropic-SDK clients and coding agents (conversion in ``_anthropic_in``)."""

from __future__ import annotations

from aiohttp import web

from router.engine.request import build_request
from router.engine.router import Router
from router.policy.tokens import estimate_prompt_tokens
from router.server._anthropic_in import MessagesCall, parse_messages
from router.server._anthropic_shapes import EventEncoder, message_body
from router.server.calls import answer
from router.server.context import ID_HEADER, REQUEST_ID, begin_call, request_body, served_model
from router.types import ChatChunk

#: Says that count_tokens answers from the router's estimate, not a provider's tokenizer.
ESTIMATE_HEADER = "x-router-token-count"


def _encoder(_call: MessagesCall, rid: str, router: Router, first: ChatChunk) -> EventEncoder:
    return EventEncoder(rid, served_model(first.target),
                        thinking=_anthropic(router, first.target))


async def messages(request: web.Request) -> web.StreamResponse:
    """One message, whole or streamed. A client's ``anthropic-beta`` header goes on to
    Anthropic targets (as ``betas``; the other kinds leave it out)."""
    call = parse_messages(await request_body(request))
    beta = request.headers.get("anthropic-beta")
    if beta and "betas" not in call.params:
        call.params["betas"] = [b.strip() for b in beta.split(",") if b.strip()]
    return await answer(request, call, message_body, _encoder)


def _anthropic(router: Router, target: str) -> bool:
    """Whether ``target`` (``provider:model``) is served by an Anthropic provider."""
    spec = router.plan.providers.get(target.partition(":")[0])
    return spec is not None and spec.kind == "anthropic"


async def count_tokens(request: web.Request) -> web.Response:
    """``{"input_tokens": N}`` from the router's prompt estimate (~4 characters a token plus
    per-message and per-image figures), marked as an estimate by a header."""
    call = parse_messages(await request_body(request))
    begin_call(request, call.model).plan.resolve(call.model)  # unknown: 404, as for messages
    tools = call.params.get("tools")
    chat_request = build_request(call.messages, {"tools": tools} if tools else {})
    return web.json_response({"input_tokens": estimate_prompt_tokens(chat_request)},
                             headers={ESTIMATE_HEADER: "estimate",
                                      ID_HEADER: request[REQUEST_ID]})


__all__ = ["ESTIMATE_HEADER", "count_tokens", "messages"]
