"""What the proxy records of each request for ``GET /metrics`` (router.obs.metrics), and
that endpoint.

Everything is derived from what a call already reports: the AttemptRecords of its response,
last stream chunk or error, its usage, and the proxy's own clock. The router's overhead is a
request's wall time less the time spent in upstream attempts and retry waits. Budgets are read
from the state store at scrape time (every worker shares it), breakers from the Router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from router.errors import LlmError
from router.obs import log
from router.obs.metrics import CONTENT_TYPE, FLUSH_SECONDS, BudgetReading, Metrics, Vocabulary
from router.plan.routes import BudgetSpec, Plan
from router.policy.budget import budget_key
from router.server.context import EXCHANGE, ID_HEADER, REQUEST_ID, proxy_of
from router.server.proxy import Proxy
from router.types import AttemptRecord, Usage

#: Requests that are not counted: the scrape itself and the load balancer's probes.
_UNCOUNTED = frozenset({"/metrics", "/healthz", "/readyz"})
#: How long a scrape waits for the state store's budget figures.
_STORE_TIMEOUT = 2.0


class CallFacts:
    """What one request's call reported: its attempts, its usage, when its first chunk
    came (streams); and the Observer that counts the request (None: not counted). No
    ``__init__``: the defaults are class attributes, so making one costs next to nothing."""

    attempts: Sequence[AttemptRecord] = ()
    usage: Usage | None = None
    first_chunk_at: float | None = None
    observer: Observer | None = None


class Observer:
    """The metrics of one app, and the label vocabulary of the plan in force."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.current_plan: Plan | None = None
        self.current_vocab = Vocabulary(frozenset(), frozenset())
        self.breakers_open = False
        self.endpoints: dict[AbstractRoute, str] = {}

    def vocab(self, plan: Plan) -> Vocabulary:
        """The plan's aliases and targets (computed once per plan: a reload brings a new
        one)."""
        if plan is not self.current_plan:
            targets = frozenset(t.key for r in plan.routes.values() for t in r.targets)
            self.current_vocab = Vocabulary(frozenset(plan.routes), targets)
            self.current_plan = plan
        return self.current_vocab

    def refresh_breakers(self, proxy: Proxy) -> None:
        states = proxy.router.breaker_states()
        self.metrics.set_breakers(self.vocab(proxy.router.plan), states)
        self.breakers_open = any(s != "closed" for s in states.values())

    def breakers_may_have_moved(self, records: Sequence[AttemptRecord]) -> bool:
        """Whether a call could have changed a breaker: a failure or skip, or any success
        while some breaker was not closed."""
        return self.breakers_open or any_failed(records)

    def endpoint(self, request: web.Request) -> str:
        """The route's pattern (``/v1/models/{model}``), never the path a client made up
        (kept per route: the app's routes are fixed; a 404's or 405's route is made per
        request and is not kept)."""
        route = request.match_info.route
        endpoint = self.endpoints.get(route)
        if endpoint is None:
            resource = route.resource
            if resource is None:
                return "unmatched"
            endpoint = self.endpoints[route] = resource.canonical
        return endpoint


def any_failed(records: Sequence[AttemptRecord]) -> bool:
    """Whether any attempt failed or was skipped."""
    for r in records:  # noqa: SIM110 - a loop: any() and its generator cost more
        if r.outcome != "ok":
            return True
    return False


OBSERVER = web.AppKey("observer", Observer)
_FLUSHER = web.AppKey("metrics_flusher", asyncio.Task[None])
_FACTS = web.RequestKey("call_facts", CallFacts)


def install(app: web.Application) -> None:
    """Give ``app`` its metrics, the ``GET /metrics`` endpoint, and the timer that flushes
    recorded figures into prometheus-client every ``FLUSH_SECONDS`` (a scrape of this
    process flushes first; another worker's sees them after the next flush)."""
    app[OBSERVER] = Observer()
    app.router.add_get("/metrics", metrics_endpoint)
    app.on_startup.append(_start_flushing)
    app.on_cleanup.append(_stop_flushing)


async def _start_flushing(app: web.Application) -> None:
    app[_FLUSHER] = asyncio.get_running_loop().create_task(_flush_every(app[OBSERVER].metrics))


async def _flush_every(metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            metrics.flush()
        except Exception as e:  # the timer lives on; the next flush tries again
            log.emit("metrics_error", level=logging.WARNING, error=type(e).__name__)


async def _stop_flushing(app: web.Application) -> None:
    """The last flush, once requests have drained (a worker's files outlive it)."""
    task = app.get(_FLUSHER)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    app[OBSERVER].metrics.flush()


def call_summary(request: web.Request) -> tuple[int | None, float | None]:
    """The attempts a request's call made (skips included) and what they cost in all (None:
    no call, or no cost known): for its ``proxy_request`` log line."""
    try:
        attempts = request[_FACTS].attempts
    except KeyError:
        return None, None
    if len(attempts) == 1:  # the common case
        return 1, attempts[0].cost_usd
    if not attempts:
        return None, None
    costs = [r.cost_usd for r in attempts if r.cost_usd is not None]
    return len(attempts), (sum(costs) if costs else None)


def _facts(request: web.Request) -> CallFacts:
    try:
        return request[_FACTS]
    except KeyError:
        facts = request[_FACTS] = CallFacts()
        return facts


def note_call(request: web.Request, attempts: Sequence[AttemptRecord] | None,
              usage: Usage | None = None) -> None:
    """The attempts (and usage) a call reported: a response, a stream's last chunk, or an
    error's ``attempts``; an error without any (refused before the router) is no call."""
    if not attempts and usage is None:
        return
    facts = _facts(request)
    if attempts is not None:
        facts.attempts = attempts
    if usage is not None:
        facts.usage = usage


def note_first_chunk(request: web.Request) -> None:
    """A stream's first chunk is out (time to first token, as the client sees it)."""
    _facts(request).first_chunk_at = time.perf_counter()


def request_began(request: web.Request) -> None:
    """Count a request in flight (not the scrape and the probes): its CallFacts, made here,
    name the Observer that records it when it ends."""
    if request.path not in _UNCOUNTED:
        observer = request.app[OBSERVER]
        observer.metrics.enter()
        facts = request[_FACTS] = CallFacts()
        facts.observer = observer


def request_ended(request: web.Request, status: int, began: float) -> None:
    """Record an answered request; never raises (it runs in the middleware's finally)."""
    try:
        facts = request[_FACTS]
    except KeyError:  # not counted, and no call
        return
    observer = facts.observer
    if observer is None:  # not counted (the scrape, a probe)
        return
    try:
        observer.metrics.leave()
        _record(request, facts, observer, status, began)
    except Exception as e:  # metrics must never cost a client its answer
        log.emit("metrics_error", level=logging.WARNING, request_id=request.get(REQUEST_ID),
                 error=type(e).__name__)


def _record(request: web.Request, facts: CallFacts, observer: Observer, status: int,
            began: float) -> None:
    seconds = time.perf_counter() - began
    exchange = request[EXCHANGE]
    proxy = exchange.proxy
    plan = proxy.router.plan
    vocab = observer.current_vocab if plan is observer.current_plan else observer.vocab(plan)
    m = observer.metrics
    error = exchange.error
    outcome = ("cancelled" if status == 499 else
               "error" if status >= 400 or error is not None else "ok")
    route = request.match_info.route
    endpoint = observer.endpoints.get(route)
    if endpoint is None:
        endpoint = observer.endpoint(request)
    series = m.request_series(vocab, endpoint, exchange.alias,
                              exchange.target, outcome, error)
    attempts, usage, first_chunk_at = facts.attempts, facts.usage, facts.first_chunk_at
    if not attempts and usage is None and first_chunk_at is None:  # no call
        series.observe(seconds)
        return
    upstream = m.observe_attempts(vocab, attempts) if attempts else 0.0
    series.observe_call(seconds, seconds - upstream, usage,
                        None if first_chunk_at is None else first_chunk_at - began)
    if observer.breakers_open or any_failed(attempts):
        observer.refresh_breakers(proxy)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text: every worker's counters and histograms, this worker's view of the
    breakers (the worst of any live worker in multiprocess mode), budgets from the store."""
    proxy = proxy_of(request)
    observer = request.app[OBSERVER]
    observer.refresh_breakers(proxy)
    budgets = await read_budgets(proxy)
    observer.metrics.flush()  # here, in the loop that records
    body = await asyncio.to_thread(observer.metrics.render, budgets,  # reads worker files
                                   flush=False)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                            ID_HEADER: request[REQUEST_ID]})


def _all_budgets(plan: Plan) -> list[BudgetSpec]:
    seen: dict[tuple[str, str], BudgetSpec] = {}
    for spec in [*plan.budgets, *(b for r in plan.routes.values() for b in r.budgets)]:
        seen.setdefault((spec.scope, spec.per), spec)
    return list(seen.values())


async def read_budgets(proxy: Proxy) -> list[BudgetReading] | None:
    """Every configured budget in its current window; None when the store does not answer."""
    now = time.time()
    readings = []
    try:
        async with asyncio.timeout(_STORE_TIMEOUT):
            for spec in _all_budgets(proxy.router.plan):
                usage = await proxy.store.usage(budget_key(spec, now).key)
                readings.append(BudgetReading(spec.scope, spec.per, spec.usd,
                                              usage.spent_micro / 1e6,
                                              usage.reserved_micro / 1e6))
    except (LlmError, OSError, TimeoutError) as e:
        log.emit("metrics_store_unavailable", level=logging.WARNING, error=type(e).__name__)
        return None
    return readings


__all__ = ["OBSERVER", "CallFacts", "Observer", "call_summary", "install", "metrics_endpoint",
           "note_call", "note_first_chunk", "read_budgets", "request_began", "request_ended"]
