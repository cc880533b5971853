"""The aiohttp application: the routes, and the one middleware every request passes through
(request id, draining, access keys, errors in the called API's shape, one log event)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from router.errors import LlmError
from router.obs import log
from router.server import anthropic_api, info, observe, openai_api
from router.server.context import (
    ACCESS_KEY,
    ALIAS,
    ERROR_CODE,
    GENERATION,
    ID_HEADER,
    PROXY,
    REQUEST_ID,
    TARGET,
    error_response,
    log_bug,
)
from router.server.errors import ApiError, from_llm_error
from router.server.proxy import Proxy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Probes answer without a key and while draining (a load balancer reads them).
_PROBES = frozenset({"/healthz", "/readyz"})
_KEY_HELP = "send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'"


def _presented_keys(request: web.Request) -> list[str]:
    keys = []
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    api_key = request.headers.get("x-api-key")
    if api_key:
        keys.append(api_key)
    return keys


def _check_key(proxy: Proxy, request: web.Request) -> None:
    if not proxy.keys.required:
        return
    presented = _presented_keys(request)
    if not presented:
        raise ApiError(401, f"this proxy needs an access key: {_KEY_HELP}", "invalid_api_key")
    key = proxy.keys.match(presented)
    if key is None:
        raise ApiError(401, "the access key is not valid for this proxy", "invalid_api_key")
    request[ACCESS_KEY] = key


def _http_error(e: web.HTTPException) -> ApiError:
    if e.status == 404:
        return ApiError(404, "no such endpoint on this proxy", "not_found")
    if e.status == 405:
        return ApiError(405, "method not allowed on this endpoint", "method_not_allowed")
    return ApiError(e.status, e.reason, "http_error")


async def _answer(request: web.Request, handler: Handler, proxy: Proxy) -> web.StreamResponse:
    try:
        if request.path not in _PROBES:
            if proxy.draining:
                raise ApiError(503, "the proxy is shutting down", "draining")
            _check_key(proxy, request)
        response = await handler(request)
    except ApiError as e:
        observe.note_call(request, e.attempts)
        response = error_response(request, e)
    except LlmError as e:
        err = from_llm_error(e)
        observe.note_call(request, err.attempts)
        response = error_response(request, err)
    except web.HTTPException as e:  # aiohttp's own: no such route, wrong method
        if e.status < 400:
            raise
        response = error_response(request, _http_error(e))
    except Exception as e:  # a bug: never a traceback to the client
        log_bug(request, e)
        response = error_response(request, ApiError(
            500, "internal error in the proxy (logged with this request id)", "internal_error"))
    if not response.prepared:
        response.headers.setdefault(ID_HEADER, request[REQUEST_ID])
    return response


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    proxy = request.app[PROXY]
    request[REQUEST_ID] = proxy.new_request_id()
    began = time.perf_counter()
    status = 499  # the client went away before an answer (nginx's figure)
    task = asyncio.current_task()
    assert task is not None  # aiohttp runs each request in a task
    proxy.enter(task)
    observe.request_began(request)
    # The request keeps the route file in force now, to its end (a stream's too): a reload
    # closes the old Router only once its last request is done.
    gen = request[GENERATION] = proxy.lease()
    try:
        response = await _answer(request, handler, proxy)
        status = response.status
        return response
    finally:
        proxy.release(gen)
        proxy.leave(task)
        observe.request_ended(request, status, began)
        log.emit("proxy_request", request_id=request[REQUEST_ID], method=request.method,
                 path=request.path, status=status, alias=request.get(ALIAS),
                 target=request.get(TARGET), error=request.get(ERROR_CODE),
                 latency_ms=round((time.perf_counter() - began) * 1000, 2))


async def _close_proxy(app: web.Application) -> None:
    await app[PROXY].aclose()


def create_app(proxy: Proxy) -> web.Application:
    """The proxy's application; closing it (runner cleanup) closes the Router and store."""
    app = web.Application(client_max_size=proxy.settings.max_body_bytes,
                          middlewares=[_guard])
    app[PROXY] = proxy
    add = app.router
    add.add_post("/v1/chat/completions", openai_api.chat_completions)
    add.add_post("/v1/messages", anthropic_api.messages)
    add.add_post("/v1/messages/count_tokens", anthropic_api.count_tokens)
    add.add_get("/v1/models", info.models)
    add.add_get("/v1/models/{model}", info.model)
    add.add_post("/v1/router/explain", info.explain)
    add.add_get("/healthz", info.healthz)
    add.add_get("/readyz", info.readyz)
    observe.install(app)  # GET /metrics
    app.on_cleanup.append(_close_proxy)
    return app


__all__ = ["create_app"]
