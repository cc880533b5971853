"""Router: executes a Plan. Tries targets in the order the decision module gives, under their
timeouts and the call's deadline, and records every attempt and skip.

The engine never touches aiohttp or wire shapes: providers do (router.providers).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from router.engine.call import Call, error_record
from router.engine.decision import (
    Admit,
    CallNeeds,
    Decision,
    Done,
    Try,
    Wait,
    needs_for,
    order_targets,
    walk,
)
from router.engine.request import build_request
from router.errors import (
    ConfigError,
    ErrorClass,
    LlmError,
    NoRouteError,
    RouteFailed,
    StreamInterruptedError,
    TimeoutError_,
    make_error,
)
from router.obs import log
from router.plan.routes import Plan, Route, Target
from router.policy.admission import Gate
from router.policy.breaker import Breakers
from router.policy.budget import Hold
from router.policy.pricing import cost_usd, price_of
from router.providers import registry
from router.providers.base import HttpPool, Provider, ProviderConfig
from router.state.base import StateStore

if TYPE_CHECKING:
    from router.engine.sync import SyncRunner
    from router.obs.tracing import Tracing
from router.types import AttemptRecord, ChatChunk, ChatRequest, ChatResponse, Message

_counter = itertools.count()
# Request ids: a random per-process prefix and a counter (uuid4 per call costs ~5 us).
_RID_PREFIX = os.urandom(6).hex()
_rids = itertools.count(1)


def _new_rid_prefix() -> None:
    # A worker forked after import (gunicorn --preload, multiprocessing) needs its own.
    global _RID_PREFIX, _rids
    _RID_PREFIX, _rids = os.urandom(6).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_rid_prefix)


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
                 tracing: bool | Tracing | None = None) -> None:
        """Route by ``plan``. With no plan: the route file named by ``ROUTER_CONFIG``, else
        the providers whose keys are in the environment (see ``from_env``)."""
        if plan is None:
            plan = _default_plan()
        self.plan = plan
        self._tracing = _make_tracing(tracing)
        self._http = http if http is not None else HttpPool()
        self._owns_http = http is None
        if store is None:
            from router.state import make_store

            st = plan.state
            store = make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix)
            self._owns_store = True
        else:
            self._owns_store = False
        self._store = store
        self._gate = Gate(plan, store)
        self._breakers = Breakers()
        self._rng = random.Random(seed)
        self._providers: dict[str, Provider] = {}
        self._missing: dict[str, tuple[str, ...]] = {}
        for name, spec in plan.providers.items():
            cfg = ProviderConfig(name=name, kind=spec.kind, base_url=spec.base_url,
                                 api_key=spec.api_key, headers=spec.headers,
                                 options=spec.options)
            if not registry.is_available(spec.kind):
                raise ConfigError(f"provider {name!r}: kind {spec.kind!r} is not available in "
                                  f"this installation (available: "
                                  f"{', '.join(registry.available_kinds())})")
            self._providers[name] = registry.provider_class(spec.kind)(cfg, self._http)
            if spec.missing_env:
                self._missing[name] = spec.missing_env
            if spec.api_key is not None:
                log.add_secrets([spec.api_key.get_secret_value()])
            log.add_secrets(v for v in spec.headers.values())
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # set by the first call
        self._runner: SyncRunner | None = None  # the sync facade's loop thread

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                  **kw: Any) -> Router:
        """Load, check and compile a route file. Raises ConfigError listing every error."""
        from router.config.validate import validate_file

        result = validate_file(Path(path), env=env)
        return cls._from_result(result, **kw)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                  **kw: Any) -> Router:
        """Like from_yaml, from a dict shaped like the route file."""
        from router.config.validate import validate_dict

        return cls._from_result(validate_dict(data, env=env), **kw)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kw: Any) -> Router:
        """Every provider whose key variable is set (OPENAI_API_KEY, ANTHROPIC_API_KEY,
        GEMINI_API_KEY or GOOGLE_API_KEY, AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT) plus
        Ollama at OLLAMA_HOST (or 127.0.0.1:11434), with default timeouts and retries. Address
        models as "provider:model", a bare model name, or "a,b" for an ad-hoc fallback chain."""
        from router.config.validate import validate_dict
        from router.config.zeroconfig import env_route_file

        env = os.environ if env is None else env
        result = validate_dict(env_route_file(env), env=env, filename="<environment>")
        return cls._from_result(result, **kw)

    @classmethod
    def _from_result(cls, result: Any, **kw: Any) -> Router:
        return cls(_usable_plan(result), **kw)

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
        from router.engine import sync

        await sync.aclose(self, self._aclose_here)

    async def _aclose_here(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_http:
                await self._http.aclose()
            if self._owns_store:
                await self._store.aclose()

    def close(self) -> None:
        """Close from sync code: the pool, the store and the sync facade's thread; safe to
        call twice. ``with Router.from_yaml(...) as r:`` calls it on exit."""
        from router.engine import sync

        sync.close(self)

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
        from router.engine import sync

        return sync.chat_sync(self, model, messages, **kw)

    def stream_sync(self, model: str, messages: Iterable[Message | Mapping[str, Any]],
                    **kw: Any) -> Generator[ChatChunk, None, None]:
        """``stream`` as a plain iterator; stopping early (break, ``close()``) frees the
        connection at once."""
        from router.engine import sync

        return sync.stream_sync(self, model, messages, **kw)

    # -- calls ----------------------------------------------------------------------------
    def _prepare(self, model: str, messages: Iterable[Message | Mapping[str, Any]],
                 params: dict[str, Any], stream: bool,
                 request_id: str | None) -> tuple[Route, ChatRequest, CallNeeds, str]:
        if self._closed:
            raise RuntimeError("this Router is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first call, or a second loop (an error)
            from router.engine import sync

            sync.bind_loop(self, loop)
        route = self.plan.resolve(model)
        request = build_request(messages, params)
        if request.max_tokens is None and route.max_tokens is not None:
            request.max_tokens = route.max_tokens
        needs = needs_for(request, route, stream=stream)
        return route, request, needs, request_id or f"{_RID_PREFIX}{next(_rids):08x}"

    def _order(self, route: Route) -> list[Target]:
        return order_targets(route, self._rng, next(_counter))

    async def chat(self, model: str, messages: Iterable[Message | Mapping[str, Any]], *,
                   timeout: float | None = None, request_id: str | None = None,
                   tags: Mapping[str, str] | None = None, **params: Any) -> ChatResponse:
        """One call routed by ``model`` (alias, provider:model, bare model name or a,b chain).
        Raises RouteFailed (an LlmError) with every attempt when no target answers."""
        route, request, needs, rid = self._prepare(model, messages, params, False, request_id)
        call = Call(self, route, rid, timeout, request, tags)
        gen = walk(route, self._order(route), needs, call)
        decision: Decision = next(gen)
        response: ChatResponse | None = None
        try:
            while not isinstance(decision, Done):
                if isinstance(decision, Try):
                    response, error = await self._attempt(call, decision, request)
                    await call.end_hold(response.cost_usd if response else None,
                                        ok=error is None)
                    decision = gen.send(error)
                elif isinstance(decision, Admit):
                    decision = gen.send(await call.admit(decision))
                elif isinstance(decision, Wait):
                    call.note_wait(decision)
                    await asyncio.sleep(decision.seconds)
                    decision = next(gen)
                else:
                    call.skip(decision, len(call.records) + 1)
                    decision = next(gen)
        finally:
            gen.close()
            call.release_probes()
            await call.end_hold(None, ok=False)  # cancelled mid-attempt: free the hold
            if not isinstance(decision, Done):
                call.end_span(None, None)  # cancelled between attempts
        if decision.ok and response is not None:
            response.attempts = call.records
            response.request_id = rid
            call.end_span(response, None)
            log.emit("route_done", request_id=rid, alias=route.alias, target=response.target,
                     attempts=len(call.records), cost_usd=response.cost_usd)
            return response
        raise self._failed(call, decision)

    def _failed(self, call: Call, done: Done) -> RouteFailed:
        err = done.error
        if done.reason == "deadline" and err is None:
            err = TimeoutError_("the call deadline passed before any target answered",
                                timeout_kind="deadline")
        tried = sum(1 for r in call.records if r.outcome == "error")
        if err is None:
            reasons = {r.reason for r in call.records}
            for reason, cls in (("budget", ErrorClass.BUDGET_EXCEEDED),
                                ("rate_limited_locally", ErrorClass.RATE_LIMITED_LOCALLY)):
                if reason in reasons:
                    err = make_error(cls, "; ".join(
                        f"{r.target}: {r.detail}" for r in call.records if r.reason == reason),
                        retryable=False)
                    break
            msg = (f"no target of {call.alias!r} could be tried: "
                   + "; ".join(f"{r.target} {r.reason}" for r in call.records))
        else:
            msg = (f"{call.alias!r} failed after {tried} attempt(s) "
                   f"({done.reason.replace('_', ' ')}): {err}")
        log.emit("route_failed", request_id=call.request_id, alias=call.alias,
                 error_class=(err.error_class.value if err else ErrorClass.NO_ROUTE.value),
                 attempts=len(call.records), reason=done.reason)
        failure = RouteFailed(msg, attempts=call.records, last_error=err, alias=call.alias)
        call.end_span(None, failure)
        return failure

    def _request_for(self, target: Target, request: ChatRequest,
                     hold: Hold | None) -> ChatRequest:
        """The request as sent to ``target``: with its max_tokens when the caller gave none,
        or the output limit a budget hold assumed (so the provider enforces the worst case)."""
        if request.max_tokens is None:
            cap = target.max_tokens or (hold.output_cap if hold is not None else None)
            if cap is not None:
                return replace(request, max_tokens=cap)
        return request

    def _classify(self, target: Target, err: LlmError) -> LlmError:
        """Apply the route file's ``errors:`` rules, then set the target."""
        for rule in self.plan.error_rules:
            if rule.matches(target.provider, target.kind, err.status, err.provider_code,
                            err.provider_type, err.provider_message or err.message):
                if rule.error_class is not err.error_class:
                    new = make_error(rule.error_class, err.message, status=err.status,
                                     retry_after=err.retry_after, target=target.key,
                                     provider_type=err.provider_type,
                                     provider_code=err.provider_code,
                                     provider_message=err.provider_message)
                    new.__cause__ = err
                    return new
                break
        return err.with_target(target.key)

    def _missing_key_error(self, target: Target) -> LlmError | None:
        missing = self._missing.get(target.provider)
        if not missing:
            return None
        return make_error(ErrorClass.AUTH, f"provider {target.provider!r} needs "
                          f"{', '.join(missing)} in the environment", target=target.key,
                          retryable=False)

    def _timeout_error(self, d: Try) -> LlmError:
        kind = "deadline" if d.timeout_is_deadline else "total"
        return TimeoutError_(f"no answer within {d.timeout:.3g}s ({kind} timeout)",
                             timeout_kind=kind, target=d.target.key)

    async def _attempt(self, call: Call, d: Try,
                       request: ChatRequest) -> tuple[ChatResponse | None, LlmError | None]:
        target = d.target
        provider = self._providers[target.provider]
        start = time.perf_counter()
        error = self._missing_key_error(target)
        response: ChatResponse | None = None
        if error is None:
            with call.attempt(target, d.attempt):
                try:
                    sent = self._request_for(target, request, call.hold)
                    async with asyncio.timeout(d.timeout):
                        response = await provider.chat(target.model, sent, target.timeouts)
                except LlmError as e:
                    error = self._classify(target, e)
                except TimeoutError:
                    error = self._timeout_error(d)
        latency = (time.perf_counter() - start) * 1000
        if error is not None:
            await self._note_failure(call, target, error)
            call.record(error_record(call, d, error, latency))
            return None, error
        assert response is not None
        self._note_success(call, target)
        await self._gate.publish_breaker(target, opened=False)
        response.target = target.key
        response.cost_usd = cost_usd(price_of(target), response.usage)
        call.record(AttemptRecord(
            call.request_id, call.alias, target.key, d.attempt, "ok", latency_ms=round(latency, 2),
            input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens,
            cost_usd=response.cost_usd), finish_reason=response.finish_reason,
            response_model=response.model)
        return response, None

    def _note_success(self, call: Call, target: Target) -> None:
        call.probes.discard(target.key)  # a verdict: the probe (if held) is spent
        self._breakers.record_success(target.key)

    async def _note_failure(self, call: Call, target: Target, error: LlmError) -> None:
        call.probes.discard(target.key)
        if self._breakers.record_failure(target.key, target.breaker, retryable=error.retryable):
            log.emit("breaker_opened", target=target.key, cooldown_s=target.breaker.cooldown)
            await self._gate.publish_breaker(target, opened=True)

    # -- streaming ------------------------------------------------------------------------
    def stream(self, model: str, messages: Iterable[Message | Mapping[str, Any]], *,
               timeout: float | None = None, request_id: str | None = None,
               tags: Mapping[str, str] | None = None,
               **params: Any) -> AsyncIterator[ChatChunk]:
        """Stream one call. Retries and fallbacks happen until the first chunk reaches you;
        after it, a failure raises StreamInterruptedError with the partial text."""
        from router.engine.stream import stream_call

        return stream_call(self, model, messages, timeout=timeout, request_id=request_id,
                           tags=tags, params=params)

    # -- explaining -----------------------------------------------------------------------
    def dry_run(self, model: str, messages: Iterable[Message | Mapping[str, Any]] | None = None,
                *, simulate: Mapping[str, str | list[str]] | None = None,
                **params: Any) -> Any:
        """What the router would do for this call, without I/O; ``simulate`` maps a target
        (provider:model) to an outcome or a list of outcomes, one per try."""
        from router.engine.dryrun import dry_run

        return dry_run(self.plan, model, messages, simulate=simulate, params=params,
                       breakers=self._breakers)

    def __repr__(self) -> str:
        return (f"Router(file={self.plan.file!r}, providers={sorted(self.plan.providers)}, "
                f"aliases={len(self.plan.routes)})")


def _usable_plan(result: Any) -> Plan:
    """The Plan of a validation result, or ConfigError listing its errors and the missing
    environment variables of providers that routes use."""
    errors = [d for d in result.diagnostics if d.is_error]
    if errors or result.plan is None:
        raise ConfigError(f"{result.file}: {len(errors)} error(s) in the route file", errors)
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
