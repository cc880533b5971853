"""Answering a parsed call, the same for both APIs: the access check, the router call with the
request's options, and the reply, whole (a JSON body in the API's shape) or streamed (the
API's SSE events, router.server.sse)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web
from aiohttp.hdrs import CONTENT_TYPE

from router.providers._json import dumps_json
from router.server import observe
from router.server.context import REQUEST_ID, begin_call, call_headers, call_kwargs
from router.server.sse import Encoder, relay
from router.types import ChatChunk, ChatResponse

if TYPE_CHECKING:
    from router.engine.router import Router

JSON_TYPE = "application/json; charset=utf-8"


class Call(Protocol):
    """A parsed body: what the router takes, and whether to stream the reply."""

    @property
    def model(self) -> str: ...
    @property
    def messages(self) -> list[Any]: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def stream(self) -> bool: ...


C = TypeVar("C", bound=Call)
#: The reply body of a whole answer, from the response and the request id.
BodyOf = Callable[[ChatResponse, str], Mapping[str, Any]]
#: A stream's encoder: from the call, its request id, the Router serving it and the
#: stream's first chunk.
EncoderOf = Callable[[C, str, "Router", ChatChunk], Encoder]


async def answer(request: web.Request, call: C, body_of: BodyOf,
                 encoder_of: EncoderOf[C]) -> web.StreamResponse:
    """Make ``call`` (after the access check) and answer: the whole reply's ``body_of``, or
    the stream's events by ``encoder_of``."""
    router = begin_call(request, call.model)
    options = call_kwargs(request)
    rid = request[REQUEST_ID]
    if call.stream:
        chunks = router.stream(call.model, call.messages, **options, **call.params)
        return await relay(request, chunks,
                           lambda first: encoder_of(call, rid, router, first))
    resp = await router.chat(call.model, call.messages, **options, **call.params)
    observe.note_call(request, resp.attempts, resp.usage)
    headers = call_headers(request, resp.target, len(resp.attempts))
    headers[CONTENT_TYPE] = JSON_TYPE  # what web.json_response sets, without its text step
    return web.Response(body=dumps_json(body_of(resp, rid), escape=True), headers=headers)


__all__ = ["BodyOf", "Call", "EncoderOf", "answer"]
