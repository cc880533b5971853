"""What every handler reads from a request (the Proxy, the request id) and the replies they
share: the ``x-router-*`` headers and an error in the shape of the API that was called."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from router.obs import log
from router.server.errors import ApiError, anthropic_error_body, openai_error_body
from router.server.generation import Generation
from router.server.inbound import TAG_HEADER, TIMEOUT_HEADER, call_options, read_json
from router.server.keys import AccessKey
from router.server.proxy import Proxy

if TYPE_CHECKING:
    from router.engine.router import Router



class Exchange:
    """What the proxy notes of one request as it answers it, read without lookups: its id,
    the proxy answering it, the route file in force when it came (its Router serves the
    whole request), the access key it presented, the model asked for, the target that
    served, the error code it ended with. The request's ``ALIAS``, ``TARGET`` and
    ``ERROR_CODE`` keys mirror the last three (router.server.observe reads them)."""

    __slots__ = ("alias", "error", "generation", "key", "proxy", "request_id", "target")

    def __init__(self, request_id: str, generation: Generation, proxy: Proxy) -> None:
        self.request_id = request_id
        self.generation = generation
        self.proxy = proxy
        self.key: AccessKey | None = None
        self.alias: str | None = None
        self.target: str | None = None
        self.error: str | None = None


PROXY = web.AppKey("proxy", Proxy)
REQUEST_ID = web.RequestKey("request_id", str)
EXCHANGE = web.RequestKey("exchange", Exchange)
#: The access key the request presented (when the proxy needs keys).
ACCESS_KEY = web.RequestKey("access_key", AccessKey)
#: The model the caller asked for and the target that served (for the request's log event).
ALIAS = web.RequestKey("alias", str)
TARGET = web.RequestKey("target", str)
#: The error code a request ended with (an error reply, or a stream's error event).
ERROR_CODE = web.RequestKey("error_code", str)

ID_HEADER = "x-router-request-id"
TARGET_HEADER = "x-router-target"
ATTEMPTS_HEADER = "x-router-attempts"
ALIAS_HEADER = "x-router-alias"
_NO_TARGET = "-"

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8",
               "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def proxy_of(request: web.Request) -> Proxy:
    return request.app[PROXY]


def request_body(request: web.Request) -> Coroutine[Any, Any, dict[str, Any]]:
    """The request's JSON object (to await), within the proxy's body size and time
    limits."""
    settings = request[EXCHANGE].proxy.settings
    return read_json(request, settings.max_body_bytes, settings.body_timeout)


def router_of(request: web.Request) -> Router:
    """The Router of the route file in force when the request came."""
    return request[EXCHANGE].generation.router


def note_error(request: web.Request, code: str) -> None:
    """The error code the request ends with (an error reply, or a stream's error event)."""
    request[EXCHANGE].error = request[ERROR_CODE] = code


def begin_call(request: web.Request, model: str, exchange: Exchange | None = None) -> Router:
    """Note the model asked for and check the access key may use it (403 otherwise); the
    Router to call. ``exchange``: the request's, when the caller holds it."""
    if exchange is None:
        exchange = request[EXCHANGE]
    exchange.alias = request[ALIAS] = model
    key = exchange.key
    if key is not None and not key.allows(model):
        raise ApiError(403, f"the access key {key.name!r} may not use the model {model!r}",
                       "permission_error", param="model")
    return exchange.generation.router


def call_kwargs(request: web.Request, exchange: Exchange | None = None) -> dict[str, Any]:
    """The call's own options (request id, ``x-router-*`` headers) as Router.chat keywords;
    the access key's tags win over the header's (a caller cannot leave its team's budget)."""
    if exchange is None:
        exchange = request[EXCHANGE]
    headers = request.headers
    if TAG_HEADER in headers or TIMEOUT_HEADER in headers:
        options = call_options(headers, exchange.request_id).kwargs()
    else:  # the common case: no option headers to read
        options = {"request_id": exchange.request_id, "tags": None, "timeout": None}
    key = exchange.key
    if key is not None and key.tags:
        options["tags"] = {**(options["tags"] or {}), **key.tags}
    return options


def is_anthropic(request: web.Request) -> bool:
    """Whether the request is to Anthropic's API, or from an Anthropic client (every
    Anthropic SDK sends ``anthropic-version``): its errors take Anthropic's shape."""
    return request.path.startswith("/v1/messages") or "anthropic-version" in request.headers


def call_headers(request: web.Request, target: str | None, attempts: int | None,
                 exchange: Exchange | None = None) -> dict[str, str]:
    """The ``x-router-*`` headers of a call's reply: request id, requested model, serving
    target (``-`` when none served), attempts (a stream's: those made up to the one that
    streams, as its headers go out with the first chunk)."""
    if exchange is None:
        exchange = request[EXCHANGE]
    headers = {ID_HEADER: exchange.request_id, TARGET_HEADER: target or _NO_TARGET}
    alias = exchange.alias
    if alias is not None:
        headers[ALIAS_HEADER] = alias
    if attempts is not None:
        headers[ATTEMPTS_HEADER] = str(attempts)
    if target:
        exchange.target = request[TARGET] = target
    return headers


def error_response(request: web.Request, err: ApiError) -> web.Response:
    """``err`` as the called API's error body, status and headers."""
    note_error(request, err.code)
    body: dict[str, Any] = (anthropic_error_body(err, request[EXCHANGE].request_id)
                            if is_anthropic(request) else openai_error_body(err))
    headers = {**err.headers(), **call_headers(request, err.target, len(err.attempts))}
    response = web.json_response(body, status=err.status, headers=headers)
    if err.status == 408:  # a body too slow to come: the connection goes with it
        response.force_close()
    return response


def served_model(target: str) -> str:
    """The model part of a ``provider:model`` target (the model may hold colons)."""
    return target.partition(":")[2] or target


def log_bug(request: web.Request, e: BaseException) -> None:
    """Log an unexpected exception with its traceback (the client gets a 500 body only)."""
    log.emit("proxy_bug", level=logging.ERROR, request_id=request[REQUEST_ID],
             path=request.path, error=type(e).__name__,
             traceback="".join(traceback.format_exception(e)))


__all__ = ["ACCESS_KEY", "ALIAS", "ALIAS_HEADER", "ATTEMPTS_HEADER", "ERROR_CODE", "EXCHANGE",
           "ID_HEADER", "PROXY", "REQUEST_ID", "SSE_HEADERS", "TARGET", "TARGET_HEADER",
           "Exchange", "begin_call", "call_headers", "call_kwargs", "error_response",
           "is_anthropic", "log_bug", "note_error", "proxy_of", "request_body", "router_of",
           "served_model"]
