"""What every handler reads from a request (the Proxy, the request id) and the replies they
share: the ``x-router-*`` headers and an error in the shape of the API that was called."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any

from aiohttp import web

from router.obs import log
from router.server.errors import ApiError, anthropic_error_body, openai_error_body
from router.server.generation import Generation
from router.server.inbound import call_options, read_json
from router.server.keys import AccessKey
from router.server.proxy import Proxy

if TYPE_CHECKING:
    from router.engine.router import Router

PROXY = web.AppKey("proxy", Proxy)
REQUEST_ID = web.RequestKey("request_id", str)
#: The route file in force when the request came (its Router serves the whole request).
GENERATION = web.RequestKey("generation", Generation)
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


async def request_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, within the proxy's body size and time limits."""
    settings = request.app[PROXY].settings
    return await read_json(request, settings.max_body_bytes, settings.body_timeout)


def router_of(request: web.Request) -> Router:
    """The Router of the route file in force when the request came."""
    return request[GENERATION].router


def begin_call(request: web.Request, model: str) -> Router:
    """Note the model asked for and check the access key may use it (403 otherwise); the
    Router to call."""
    request[ALIAS] = model
    key = request.get(ACCESS_KEY)
    if key is not None and not key.allows(model):
        raise ApiError(403, f"the access key {key.name!r} may not use the model {model!r}",
                       "permission_error", param="model")
    return router_of(request)


def call_kwargs(request: web.Request) -> dict[str, Any]:
    """The call's own options (request id, ``x-router-*`` headers) as Router.chat keywords;
    the access key's tags win over the header's (a caller cannot leave its team's budget)."""
    options = call_options(request.headers, request[REQUEST_ID]).kwargs()
    key = request.get(ACCESS_KEY)
    if key is not None and key.tags:
        options["tags"] = {**(options["tags"] or {}), **key.tags}
    return options


def is_anthropic(request: web.Request) -> bool:
    """Whether the request is to Anthropic's API, or from an Anthropic client (every
    Anthropic SDK sends ``anthropic-version``): its errors take Anthropic's shape."""
    return request.path.startswith("/v1/messages") or "anthropic-version" in request.headers


def call_headers(request: web.Request, target: str | None, attempts: int | None,
                 ) -> dict[str, str]:
    """The ``x-router-*`` headers of a call's reply: request id, requested model, serving
    target (``-`` when none served), attempts (a stream's: those made up to the one that
    streams, as its headers go out with the first chunk)."""
    headers = {ID_HEADER: request[REQUEST_ID], TARGET_HEADER: target or _NO_TARGET}
    alias = request.get(ALIAS)
    if alias is not None:
        headers[ALIAS_HEADER] = alias
    if attempts is not None:
        headers[ATTEMPTS_HEADER] = str(attempts)
    if target:
        request[TARGET] = target
    return headers


def error_response(request: web.Request, err: ApiError) -> web.Response:
    """``err`` as the called API's error body, status and headers."""
    request[ERROR_CODE] = err.code
    body: dict[str, Any] = (anthropic_error_body(err, request[REQUEST_ID])
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


__all__ = ["ACCESS_KEY", "ALIAS", "ALIAS_HEADER", "ATTEMPTS_HEADER", "ERROR_CODE", "GENERATION",
           "ID_HEADER", "PROXY", "REQUEST_ID", "SSE_HEADERS", "TARGET", "TARGET_HEADER",
           "begin_call", "call_headers", "call_kwargs", "error_response", "is_anthropic",
           "log_bug", "proxy_of", "request_body", "router_of", "served_model"]
