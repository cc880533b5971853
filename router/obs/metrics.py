"""Prometheus metrics of ``router serve`` (prometheus-client), derived from what a call
already reports: its AttemptRecords, its usage and the proxy's own clock.

Labels are bounded whatever clients send: an alias label is one of the plan's aliases or
``other`` (a made-up model name cannot add series), a target label one of the plan's targets
or ``other``, and free-form values (endpoint, error code, skip reason) pass through a guard
that keeps the first few distinct values and folds the rest into ``other``. No label ever
holds a request id, a prompt, a key or a tag value.

With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set, by ``router serve
--workers``) values live in that directory and every scrape aggregates all workers
(prometheus-client's multiprocess mode): counters and histograms add up, in-flight requests
add up over live workers, a breaker shows the worst state any live worker sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.types import AttemptRecord, Usage

#: The label value of anything outside the known set.
OTHER = "other"
#: The label value where there is nothing to name (no target served, no error).
NONE = "none"
#: The environment variable that switches prometheus-client to its multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The numbers a breaker state is exported as (higher is worse: ``max`` over workers).
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
# The proxy's own work is sub-millisecond when all is well (bench/proxy_overhead.py).
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 1.0)
_GUARD_LIMIT = 64  # distinct values a free-form label may take before it says "other"


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, when it is on."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The label values a plan allows: its aliases and its targets."""

    aliases: frozenset[str]
    targets: frozenset[str]

    def alias(self, name: str | None) -> str:
        """``name`` when the plan has that alias, else ``other`` (``none`` for no name)."""
        if not name:
            return NONE
        return name if name in self.aliases else OTHER

    def target(self, key: str | None) -> str:
        """``key`` when it is one of the plan's targets, else ``other`` (``none``: no target)."""
        if not key or key == "-":
            return NONE
        return key if key in self.targets else OTHER


class _Guard:
    """The first ``limit`` distinct values of a label, then ``other`` for any new one."""

    def __init__(self, limit: int = _GUARD_LIMIT) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str | None) -> str:
        if not value:
            return NONE
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit or not value.isascii() or len(value) > 64:
            return OTHER
        self._seen.add(value)
        return value


@dataclass(frozen=True, slots=True)
class BudgetReading:
    """One configured budget in its current window, read from the state store."""

    scope: str
    per: str
    cap_usd: float
    spent_usd: float
    reserved_usd: float

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.cap_usd - self.spent_usd - self.reserved_usd)


class Metrics:
    """The proxy's metrics, in a registry of their own (several apps in one process do not
    clash); ``render`` gives the Prometheus text of a scrape."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._endpoint = _Guard()
        self._error = _Guard()
        self._reason = _Guard()
        # Children by label values: labels() validates and locks on every call; a request
        # records a dozen samples, so the hot path looks its children up here instead. The
        # label values are bounded (plan vocabulary, guards), and so is this dict.
        self._children: dict[tuple[object, ...], Any] = {}
        self._define()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _define(self) -> None:
        r = self._registry
        self.requests = Counter(
            "router_requests", "Requests answered, by endpoint, alias, serving target, "
            "outcome (ok, error, cancelled) and error class",
            ["endpoint", "alias", "target", "outcome", "error_class"], registry=r)
        self.attempts = Counter(
            "router_attempts", "Attempts and skips of targets, by alias, target, outcome "
            "(ok, error, skipped), error class and skip reason",
            ["alias", "target", "outcome", "error_class", "reason"], registry=r)
        self.request_seconds = Histogram(
            "router_request_duration_seconds", "Wall time of a request, end to end",
            ["endpoint", "alias", "outcome"], buckets=_LATENCY_BUCKETS, registry=r)
        self.attempt_seconds = Histogram(
            "router_attempt_duration_seconds", "Time of one upstream attempt",
            ["target", "outcome"], buckets=_LATENCY_BUCKETS, registry=r)
        self.first_token_seconds = Histogram(
            "router_time_to_first_token_seconds", "Streams: from the request's arrival to "
            "its first chunk (fallbacks included)", ["alias"], buckets=_TTFT_BUCKETS,
            registry=r)
        self.upstream_ttft_seconds = Histogram(
            "router_upstream_time_to_first_token_seconds", "Streams: from an attempt's "
            "start to the target's first token", ["target"], buckets=_TTFT_BUCKETS, registry=r)
        self.overhead_seconds = Histogram(
            "router_overhead_seconds", "The router's own time in a call: wall time less "
            "upstream attempts and retry waits", ["endpoint"], buckets=_OVERHEAD_BUCKETS,
            registry=r)
        self.tokens = Counter(
            "router_tokens", "Tokens by type (input, output, cached, reasoning, cache_write)",
            ["alias", "target", "type"], registry=r)
        self.cost = Counter("router_cost_usd", "Cost of attempts in US dollars",
                            ["alias", "target"], registry=r)
        self.in_flight = Gauge("router_in_flight_requests", "Requests being answered now",
                               registry=r, multiprocess_mode="livesum")
        self.breaker = Gauge(
            "router_breaker_state", "Circuit breaker of a target: 0 closed, 1 half-open, "
            "2 open (the worst any live worker sees)", ["target"], registry=r,
            multiprocess_mode="livemax")

    # -- recording ---------------------------------------------------------------------
    def observe_request(self, endpoint: str, alias: str, target: str, outcome: str,
                        error: str | None, seconds: float) -> None:
        """One answered request (labels already bounded by a Vocabulary, but endpoint and
        error, which pass the guard here)."""
        endpoint = self._endpoint(endpoint)
        self._child(self.requests, endpoint, alias, target, outcome, self._error(error)).inc()
        self._child(self.request_seconds, endpoint, alias, outcome).observe(seconds)

    def observe_attempts(self, vocab: Vocabulary, records: Iterable[AttemptRecord]) -> None:
        """Every attempt and skip of a call: counts, times, tokens and cost by target."""
        for rec in records:
            alias, target = vocab.alias(rec.alias), vocab.target(rec.target)
            err = rec.error_class.value if rec.error_class is not None else None
            child = self._child
            child(self.attempts, alias, target, rec.outcome, self._error(err),
                  self._reason(rec.reason)).inc()
            if rec.outcome == "skipped":
                continue
            if rec.latency_ms is not None:
                child(self.attempt_seconds, target, rec.outcome).observe(rec.latency_ms / 1e3)
            if rec.ttft_ms is not None:
                child(self.upstream_ttft_seconds, target).observe(rec.ttft_ms / 1e3)
            if rec.input_tokens:
                child(self.tokens, alias, target, "input").inc(rec.input_tokens)
            if rec.output_tokens:
                child(self.tokens, alias, target, "output").inc(rec.output_tokens)
            if rec.cost_usd:
                child(self.cost, alias, target).inc(rec.cost_usd)

    def observe_usage_detail(self, alias: str, target: str, usage: Usage) -> None:
        """The token types only the final usage carries (input and output come with the
        attempt records)."""
        for kind, n in (("cached", usage.cached_tokens), ("reasoning", usage.reasoning_tokens),
                        ("cache_write", usage.cache_write_tokens)):
            if n:
                self._child(self.tokens, alias, target, kind).inc(n)

    def observe_overhead(self, endpoint: str, seconds: float) -> None:
        self._child(self.overhead_seconds, self._endpoint(endpoint)).observe(max(0.0, seconds))

    def observe_first_token(self, alias: str, seconds: float) -> None:
        self._child(self.first_token_seconds, alias).observe(seconds)

    def set_breakers(self, vocab: Vocabulary, states: Mapping[str, str]) -> None:
        """Breaker states (closed, half_open, open) of targets, as this process sees them."""
        for key, state in states.items():
            self.breaker.labels(vocab.target(key)).set(BREAKER_VALUES.get(state, 0))

    # -- scraping ----------------------------------------------------------------------
    def render(self, budgets: Sequence[BudgetReading] | None) -> bytes:
        """The Prometheus text of every worker's figures (multiprocess mode) or this
        process's, plus the budgets read for this scrape (None: the store did not answer)."""
        registry = CollectorRegistry(auto_describe=False)
        if multiprocess_dir() is not None:
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Forward(self._registry))
        registry.register(_Budgets(budgets))
        return generate_latest(registry)


class _Forward(Collector):
    """Another registry's metrics, as one collector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _Budgets(Collector):
    """Budgets as read for one scrape: the same in every worker (they share the store)."""

    def __init__(self, readings: Sequence[BudgetReading] | None) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("router_state_store_up",
                               "Whether the state store answered this scrape's budget reads")
        up.add_metric([], 0.0 if self._readings is None else 1.0)
        yield up
        labels = ["scope", "per"]
        families = {
            name: GaugeMetricFamily(f"router_budget_{name}_usd", doc, labels=labels)
            for name, doc in (("cap", "A budget's cap in its window"),
                              ("spent", "Spent in the budget's current window"),
                              ("reserved", "Held by calls in flight"),
                              ("remaining", "Cap less spent and held"))}
        for b in self._readings or ():
            for name, value in (("cap", b.cap_usd), ("spent", b.spent_usd),
                                ("reserved", b.reserved_usd),
                                ("remaining", b.remaining_usd)):
                families[name].add_metric([b.scope, b.per], value)
        yield from families.values()


def mark_worker_dead(pid: int, directory: str) -> None:
    """Forget a worker's live gauges (in-flight, breakers) once it has exited."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


__all__ = ["BREAKER_VALUES", "CONTENT_TYPE", "MULTIPROC_ENV", "NONE", "OTHER", "BudgetReading",
           "Metrics", "Vocabulary", "mark_worker_dead", "multiprocess_dir"]
