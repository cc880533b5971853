"""The aiohttp application: its routes, each handler wrapped once, when it is added, in the
guard every request passes through (request id, draining, access keys, errors in the called
API's shape, one log event). A request no route takes (404, 405) is answered by the guard too.
No aiohttp middleware: a middleware costs every request a layer of calls."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError, UrlMappingMatchInfo
from yarl import URL

from router.errors import LlmError
from router.obs import log
from router.server import anthropic_api, info, observe, openai_api
from router.server.context import (
    ACCESS_KEY,
    EXCHANGE,
    ID_HEADER,
    PROXY,
    REQUEST_ID,
    Exchange,
    error_response,
    log_bug,
)
from router.server.errors import ApiError, from_llm_error
from router.server.proxy import Proxy

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import _InfoDict

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


def _check_key(proxy: Proxy, request: web.Request, exchange: Exchange) -> None:
    presented = _presented_keys(request)
    if not presented:
        raise ApiError(401, f"this proxy needs an access key: {_KEY_HELP}", "invalid_api_key")
    key = proxy.keys.match(presented)
    if key is None:
        raise ApiError(401, "the access key is not valid for this proxy", "invalid_api_key")
    exchange.key = request[ACCESS_KEY] = key


def _http_error(e: web.HTTPException) -> ApiError:
    if e.status == 404:
        return ApiError(404, "no such endpoint on this proxy", "not_found")
    if e.status == 405:
        return ApiError(405, "method not allowed on this endpoint", "method_not_allowed")
    return ApiError(e.status, e.reason, "http_error")


def _guard(handler: Handler, proxy: Proxy, probe: bool | None) -> Handler:
    """``handler`` as the proxy answers it; ``probe``: a probe's route (None: a request no
    route takes, a probe's by its path)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        rid = request[REQUEST_ID] = proxy.new_request_id()
        began = perf_counter()
        status = 499  # the client went away before an answer (nginx's figure)
        task = asyncio.current_task()
        assert task is not None  # aiohttp runs each request in a task
        # The request keeps the route file in force now, to its end (a stream's too): a
        # reload closes the old Router only once its last request is done.
        gen = proxy.begin(task)
        observe.request_began(request)
        exchange = request[EXCHANGE] = Exchange(rid, gen, proxy)
        try:
            try:
                if not (request.path in _PROBES if probe is None else probe):
                    if proxy.draining:
                        raise ApiError(503, "the proxy is shutting down", "draining")
                    if proxy.keys.required:
                        _check_key(proxy, request, exchange)
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
                    500, "internal error in the proxy (logged with this request id)",
                    "internal_error"))
            if not response.prepared:
                response.headers.setdefault(ID_HEADER, rid)
            status = response.status
            return response
        finally:
            proxy.end(task, gen)
            observe.request_ended(request, status, began)
            # The one line of a request: its call's attempts and cost too (the proxy's
            # Router leaves out route_done, which would say the same).
            attempts, cost = observe.call_summary(request)
            log.emit_fields("proxy_request", {
                "request_id": rid, "method": request.method, "path": request.path,
                "status": status, "alias": exchange.alias, "target": exchange.target,
                "error": exchange.error, "attempts": attempts, "cost_usd": cost,
                "latency_ms": round((perf_counter() - began) * 1000, 2)})

    return guarded


async def _refuse(request: web.Request) -> web.StreamResponse:
    """A request no route takes: 404 or 405 (the guard answers it)."""
    raise request.match_info.http_exception or web.HTTPNotFound()


class _Refusal(MatchInfoError):
    """aiohttp's match for a request no route takes, answered through the guard."""

    __slots__ = ("_guarded",)

    def __init__(self, http_exception: web.HTTPException, guarded: Handler) -> None:
        super().__init__(http_exception)
        self._guarded = guarded

    @property
    def handler(self) -> Handler:
        return self._guarded


class _Routes(web.UrlDispatcher):
    """The app's routes: each handler guarded as it is added (``observe.install``'s too)."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self._proxy = proxy

    def add_route(self, method: str, path: str, handler: Any, **kwargs: Any,
                  ) -> web.AbstractRoute:
        return super().add_route(method, path, _guard(handler, self._proxy, path in _PROBES),
                                 **kwargs)

    def add_get(self, path: str, handler: Handler, **kwargs: Any) -> web.AbstractRoute:
        # aiohttp adds a GET route (and its HEAD) without add_route
        return super().add_get(path, _guard(handler, self._proxy, path in _PROBES), **kwargs)


class _Unmatched(web.AbstractResource):
    """Added last, at ``/``: aiohttp tries it for a request no other route takes, and it
    answers aiohttp's 404 or 405 through the guard (its route no resource's: metrics count
    such requests as one endpoint). Matched requests never reach it: no cost to them."""

    def __init__(self, routes: web.UrlDispatcher, proxy: Proxy) -> None:
        super().__init__()
        self._routes = routes
        self._guarded = _guard(_refuse, proxy, None)

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, **kwargs: str) -> URL:
        raise NotImplementedError("no URL: it takes what no route does")

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        allowed: set[str] = set()  # the methods of routes at this path (a 405), as aiohttp
        for resource in self._routes.resources():
            if resource is not self:
                allowed |= (await resource.resolve(request))[1]
        refusal = (web.HTTPMethodNotAllowed(request.method, allowed) if allowed
                   else web.HTTPNotFound())
        return _Refusal(refusal, self._guarded), set()

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("the proxy's app is no sub-application")

    def get_info(self) -> _InfoDict:
        return {}

    def raw_match(self, path: str) -> bool:  # noqa: ARG002 - aiohttp's signature
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        return iter(())


async def _close_proxy(app: web.Application) -> None:
    await app[PROXY].aclose()


def create_app(proxy: Proxy) -> web.Application:
    """The proxy's application; closing it (runner cleanup) closes the Router and store."""
    with warnings.catch_warnings():  # a router of one's own is deprecated, not going away
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(client_max_size=proxy.settings.max_body_bytes,
                              router=_Routes(proxy))
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
    add.register_resource(_Unmatched(add, proxy))  # last
    app.on_cleanup.append(_close_proxy)
    return app


__all__ = ["create_app"]
