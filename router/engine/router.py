"""Router: the facade over one compiled Plan. Each call resolves its route, builds its
request and runs the one driver of the decision walk (router.engine.drive) with the attempt
step (router.engine.attempt); every collaborator a call needs is in its Runtime.

The engine never touches aiohttp or wire shapes: providers do (router.providers).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from router.engine.attempt import open_chat, record_ok, settle_ok
from router.engine.call import Call
from router.engine.decision import Decision, Outcome, needs_for, walk
from router.engine.drive import drive
from router.engine.request import build_request, validate_call_options, validate_model
from router.engine.runtime import Runtime, build_seats
from router.engine.stream import stream_call
from router.engine.sync import LoopBinding, SyncRunner
from router.errors import ConfigError, NoRouteError, StreamInterruptedError
from router.obs import log
from router.plan.resolver import RouteResolver
from router.plan.routes import Plan
from router.policy.admission import Gate
from router.policy.breaker import Breakers
from router.policy.pricing import cost_usd, price_of
from router.providers.base import HttpPool, Provider
from router.state.base import StateStore
from router.types import ChatChunk, ChatRequest, ChatResponse, Message

if TYPE_CHECKING:
    from router.obs.tracing import Tracing

# Request ids: a random per-process prefix and a counter (uuid4 per call costs ~5 us).
_RID_PREFIX = os.urandom(6).hex()
_rids = itertools.count(1)


def _new_rid_prefix() -> None:
    # A worker forked after import (gunicorn --preload, multiprocessing) needs its own.
    global _RID_PREFIX, _rids
    _RID_PREFIX, _rids = os.urandom(6).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_rid_prefix)


def request_id_prefix() -> str:
    """This process's request id prefix (renewed in a forked child)."""
    return _RID_PREFIX


class Router:
    """Routes LLM calls across providers by a compiled route file (a Plan).

    Build one with ``Router.from_yaml("routes.yaml")``, ``Router.from_dict(d)``,
    ``Router.from_env()`` or ``Router()`` (``ROUTER_CONFIG``, else the environment), then::

        async with Router.from_yaml("routes.yaml") as router:
            r = await router.chat("fast", [{"role": "user", "content": "hi"}], max_tokens=200)
            r.text, r.target, r.usage, r.cost_usd, r.attempts
            async for chunk in router.stream("fast", [{"role": "user", "content": "hi"}]):
                print(chunk.delta, end="")

    ``model`` is an alias, ``"provider:model"``, a bare model name or ``"a,b"`` (an ad-hoc
    chain). Failures are ``LlmError`` with an ``error_class``; when every target fails the
    error is ``RouteFailed`` with every attempt. ``chat_sync``/``stream_sync`` serve scripts
    and notebooks; ``dry_run`` explains a call without sending it.

    Owns one HTTP connection pool and its state store; ``aclose()`` (or leaving
    ``async with``) closes them. A pool or store passed in belongs to the caller.
    """

    def __init__(self, plan: Plan | None = None, *, http: HttpPool | None = None,
                 store: StateStore | None = None, seed: int | None = None,
                 clock: Callable[[], float] | None = None,
                 tracing: bool | Tracing | None = None, call_events: bool = True) -> None:
        """Route by ``plan``. With no plan: the route file named by ``ROUTER_CONFIG``, else
        the providers whose keys are in the environment (see ``from_env``).

        ``seed`` fixes the randomness (backoff jitter, random and weighted pools); ``clock``
        (epoch seconds) replaces ``time.time`` for budget windows, shared breaker state, the
        store this Router makes (rate limits, holds) and breaker cooldowns. ``call_events=False``
        leaves out the ``route_done`` event of each call (attempt events and ``route_failed``
        stay): for an application that logs every call itself, as ``router serve`` does."""
        if plan is None:
            plan = _default_plan()
        self.plan = plan
        self._http = http if http is not None else HttpPool()
        self._owns_http = http is None
        wall = time.time if clock is None else clock
        if store is None:
            from router.state import make_store

            st = plan.state
            store = make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix, clock=wall)
            self._owns_store = True
        else:
            self._owns_store = False
        self._store = store
        self._rt = Runtime(plan, build_seats(plan, self._http), Gate(plan, store, clock=wall),
                           Breakers(time.monotonic if clock is None else clock),
                           rng=random.Random(seed), tracing=_make_tracing(tracing),
                           call_events=call_events)
        self._binding = LoopBinding()
        self._routes = RouteResolver(plan)  # ad-hoc routes compiled once, LRU-bounded

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                  strict: bool = False, **kw: Any) -> Router:
        """Load, check and compile a route file. Raises ConfigError listing every error.

        A provider whose key variable is unset does not stop the others: its targets are
        skipped at call time (``missing_key``). ``strict=True`` refuses instead (E060)."""
        from router.config.validate import validate_file

        result = validate_file(Path(path), env=env)
        return cls.from_result(result, strict=strict, **kw)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                  strict: bool = False, **kw: Any) -> Router:
        """Like from_yaml, from a dict shaped like the route file."""
        from router.config.validate import validate_dict

        return cls.from_result(validate_dict(data, env=env), strict=strict, **kw)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kw: Any) -> Router:
        """Providers from the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY
        or GOOGLE_API_KEY, AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT) plus Ollama at
        OLLAMA_HOST (or 127.0.0.1:11434), with default timeouts and retries. Address models
        as "provider:model", a bare model name, or "a,b" for an ad-hoc fallback chain; a
        target whose key variable is unset is skipped (``missing_key``) and the chain goes
        on."""
        from router.config.validate import validate_dict
        from router.config.zeroconfig import env_route_file

        env = os.environ if env is None else env
        result = validate_dict(env_route_file(env), env=env, filename="<environment>")
        return cls.from_result(result, **kw)

    @classmethod
    def from_result(cls, result: Any, *, strict: bool = False, **kw: Any) -> Router:
        """From a validation result (``router.config.validate.validate_*``): its Plan, or
        ConfigError listing its errors (``strict``: and the environment variables that the
        providers routes use lack, E060)."""
        return cls(_usable_plan(result, strict=strict), **kw)

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        """``async with router:`` closes the pool and store on exit."""
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (if this Router created it) and the store, and stop the
        sync facade's thread if it ran; safe to call twice, from any loop."""
        await self._binding.aclose(self._aclose_here)

    async def _aclose_here(self) -> None:
        if not self._binding.closed:
            self._binding.closed = True
            await self._rt.gate.drain()  # holds still being released after a cancellation
            if self._owns_http:
                await self._http.aclose()
            if self._owns_store:
                await self._store.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` or ``close()`` ran."""
        return self._binding.closed

    @property
    def sync_runner(self) -> SyncRunner | None:
        """The sync facade's private loop thread (None until the first sync call)."""
        return self._binding.runner

    def provider(self, name: str) -> Provider:
        """The provider configured as ``name`` (KeyError when there is none)."""
        return self._rt.seats[name].provider

    def breaker_states(self) -> dict[str, str]:
        """Each plan target's circuit breaker in this Router: closed, open or half_open."""
        states: dict[str, str] = {}
        for route in self.plan.routes.values():
            for t in route.targets:
                if t.key not in states:
                    states[t.key] = self._rt.breakers.state(t.key, t.breaker)
        return states

    def close(self) -> None:
        """Close from sync code: the pool, the store and the sync facade's thread; safe to
        call twice. ``with Router.from_yaml(...) as r:`` calls it on exit."""
        self._binding.close(self.aclose)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- sync facade (scripts, notebooks) -------------------------------------------------
    def chat_sync(self, model: str, messages: Iterable[Message | Mapping[str, Any]],
                  **kw: Any) -> ChatResponse:
        """``chat`` for sync code, even inside a running loop (Jupyter): runs on this Router's
        private loop thread. Use either the sync calls or ``await``, not both, on one Router."""
        return self._binding.run(self, self.chat(model, messages, **kw))

    def stream_sync(self, model: str, messages: Iterable[Message | Mapping[str, Any]],
                    **kw: Any) -> Generator[ChatChunk, None, None]:
        """``stream`` as a plain iterator; stopping early (break, ``close()``) frees the
        connection at once."""
        return self._binding.iterate(self, self.stream(model, messages, **kw))

    # -- calls ----------------------------------------------------------------------------
    def _begin(self, model: str, messages: Iterable[Message | Mapping[str, Any]],
               params: dict[str, Any], timeout: float | None, request_id: str | None,
               tags: Mapping[str, str] | None, operation: str,
               ) -> tuple[Call, Generator[Decision, Outcome, None], ChatRequest]:
        """A call's state, its walk and its request (a bad call raises here, before I/O)."""
        model = validate_model(model)
        if timeout is not None or request_id is not None or tags is not None:
            validate_call_options(timeout, request_id, tags)
        binding = self._binding
        if binding.closed:
            raise RuntimeError("this Router is closed")
        loop = asyncio.get_running_loop()
        if loop is not binding.loop:  # the first call, or a second loop (an error)
            binding.bind(loop)
        route = self._routes.resolve(model)
        request = build_request(messages, params)
        if request.max_tokens is None and route.max_tokens is not None:
            request.max_tokens = route.max_tokens
        rt = self._rt
        info = rt.routes.get(route.alias) or rt.route_info(route)  # (a call less, most calls)
        needs = needs_for(request, route, operation == "stream", info.estimate)  # stream, estimate
        rid = request_id or f"{_RID_PREFIX}{next(_rids):08x}"
        call = Call(rt, route, rid, timeout, request, tags, operation, loop, info.gates)  # gates
        order = info.targets if info.positions is None else rt.order(route, info)
        return call, walk(order, needs, call), request

    async def chat(self, model: str, messages: Iterable[Message | Mapping[str, Any]], *,
                   timeout: float | None = None, request_id: str | None = None,
                   tags: Mapping[str, str] | None = None, **params: Any) -> ChatResponse:
        """One call routed by ``model`` (alias, provider:model, bare model name or a,b chain).
        Raises RouteFailed (an LlmError) with every attempt when no target answers."""
        call, gen, request = self._begin(model, messages, params, timeout, request_id, tags,
                                         "chat")
        response, d = await drive(call, gen, request, open_chat)
        target = d.target
        response.target = target.key
        response.cost_usd = cost_usd(price_of(target), response.usage)
        try:
            # end_ok in two steps: most calls have no hold to settle (no coroutine for them).
            if record_ok(call, d, response.usage, response.cost_usd, response.finish_reason,
                         response.model):
                await settle_ok(call, d, response.cost_usd)
        finally:
            response.attempts = call.records
            response.request_id = call.request_id
            if call.span is not None:
                call.end_span(response, None)
        if call.logging and call.rt.call_events:
            log.emit("route_done", request_id=call.request_id, alias=call.alias,
                     target=target.key, attempts=len(call.records),
                     cost_usd=response.cost_usd)
        return response

    def stream(self, model: str, messages: Iterable[Message | Mapping[str, Any]], *,
               timeout: float | None = None, request_id: str | None = None,
               tags: Mapping[str, str] | None = None, recover: str | None = None,
               **params: Any) -> AsyncIterator[ChatChunk]:
        """Stream one call. Retries and fallbacks happen until the first chunk reaches you;
        a failure after it is recovered per ``recover`` (replay, continue or off; default:
        the route's ``stream.recover``) without repeating or contradicting what you got, or
        raises StreamInterruptedError with the partial text."""
        return stream_call(self._begin, model, messages, params, timeout, request_id, tags,
                           "stream", recover=recover)

    # -- explaining -----------------------------------------------------------------------
    def dry_run(self, model: str, messages: Iterable[Message | Mapping[str, Any]] | None = None,
                *, simulate: Mapping[str, str | list[str]] | None = None,
                **params: Any) -> Any:
        """What the router would do for this call, without I/O; ``simulate`` maps a target
        (provider:model) to an outcome or a list of outcomes, one per try."""
        from router.engine.dryrun import dry_run

        return dry_run(self.plan, model, messages, simulate=simulate, params=params,
                       breakers=self._rt.breakers)

    def __repr__(self) -> str:
        return (f"Router(file={self.plan.file!r}, providers={sorted(self.plan.providers)}, "
                f"aliases={len(self.plan.routes)})")


def _usable_plan(result: Any, *, strict: bool = False) -> Plan:
    """The Plan of a validation result, or ConfigError listing its errors (``strict``: and
    the missing environment variables of providers that routes use; otherwise their targets
    are skipped at call time, each naming its variables)."""
    errors = [d for d in result.diagnostics if d.is_error]
    if errors or result.plan is None:
        raise ConfigError(f"{result.file}: {len(errors)} error(s) in the route file", errors)
    if strict:
        used = {t.provider for r in result.plan.routes.values() for t in r.targets}
        missing = result.missing_key_errors(used)
        if missing:
            raise ConfigError(f"{result.file}: environment variables missing for providers "
                              "used by routes", missing)
    plan: Plan = result.plan
    return plan


def _default_plan() -> Plan:
    """What ``Router()`` routes by: ROUTER_CONFIG's route file, else the environment."""
    from router.config.validate import validate_dict, validate_file
    from router.config.zeroconfig import env_route_file

    path = os.environ.get("ROUTER_CONFIG")
    if path:
        return _usable_plan(validate_file(Path(path)))
    return _usable_plan(validate_dict(env_route_file(os.environ), filename="<environment>"))


def _make_tracing(tracing: bool | Tracing | None) -> Tracing | None:
    """None: on when ROUTER_TRACING=1 (or true); True: on (needs opentelemetry-api);
    a Tracing object: that one."""
    if tracing is None:
        tracing = os.environ.get("ROUTER_TRACING", "").lower() in ("1", "true", "yes")
    if tracing is False:
        return None
    from router.obs.tracing import Tracing as _Tracing

    return tracing if isinstance(tracing, _Tracing) else _Tracing()


__all__ = ["NoRouteError", "Router", "StreamInterruptedError"]
