"""Answering a parsed call, the same for both APIs: the access check, the router call with the
request's options, and the reply, whole (a JSON body in the API's shape) or streamed (the
API's SSE events, router.server.sse)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from aiohttp import web
from aiohttp.hdrs import CONTENT_TYPE

from router.providers._json import dumps_json
from router.server import observe
from router.server.context import EXCHANGE, begin_call, call_headers, call_kwargs
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
    exchange = request[EXCHANGE]
    router = begin_call(request, call.model, exchange)
    options = call_kwargs(request, exchange)
    rid = exchange.request_id
    if call.stream:
        chunks = router.stream(call.model, call.messages, **options, **call.params)
        return await relay(request, chunks,
                           lambda first: encoder_of(call, rid, router, first))
    resp = await router.chat(call.model, call.messages, **options, **call.params)
    observe.note_call(request, resp.attempts, resp.usage)
    headers = call_headers(request, resp.target, len(resp.attempts), exchange)
    headers[CONTENT_TYPE] = JSON_TYPE  # what web.json_response sets, without its text step
    return web.Response(body=_reply_json(body_of(resp, rid), resp), headers=headers)


#: dumps_json's orjson options: what stdlib json writes its own way, orjson refuses.
_STRICT = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
           | orjson.OPT_PASSTHROUGH_DATETIME)
#: UTF-8 of U+0085, U+2028 and U+2029, which ``dumps_json(escape=True)`` keeps escaped.
_LINE_BREAKS = (b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9")


def _reply_json(body: Mapping[str, Any], resp: ChatResponse) -> bytes:
    """``dumps_json(body, escape=True)``, the same bytes. A reply of text alone holds no
    float (no tool calls, no provider state, usage counts ints: no NaN), so orjson's JSON is
    stdlib's and needs no reading back (dumps_json reads back JSON holding ``null``, as
    NaN is written so, and every reply holds ``null``)."""
    u = resp.usage
    if (resp.provider_state is None and not resp.tool_calls
            and type(u.input_tokens) is type(u.output_tokens) is type(u.cached_tokens)
            is type(u.reasoning_tokens) is type(u.cache_write_tokens)
            is type(u.cache_write_1h_tokens) is int
            and not (resp.choices and any(c.tool_calls for c in resp.choices))):
        try:
            out = orjson.dumps(body, option=_STRICT)
        except orjson.JSONEncodeError:  # a lone surrogate...: dumps_json's way
            pass
        else:
            if out.isascii() or not any(b in out for b in _LINE_BREAKS):
                return out
    return dumps_json(body, escape=True)


__all__ = ["BodyOf", "Call", "EncoderOf", "answer"]
