"""Prometheus metrics of ``router serve`` (prometheus-client), derived from what a call
already reports: its AttemptRecords, its usage and the proxy's own clock.

Labels are bounded whatever clients send: an alias label is one of the plan's aliases or
``other`` (a made-up model name cannot add series), a target label one of the plan's targets
or ``other``, and free-form values (endpoint, error code, skip reason) pass through a guard
that keeps the first few distinct values and folds the rest into ``other``. No label ever
holds a request id, a prompt, a key or a tag value.

Recording is cheap: a request adds into plain accumulators owned by the event loop (a tally
per counter series, a count per bucket plus a sum per histogram series, an in-flight count),
with no lock and no loop over buckets. ``Metrics.flush`` moves what they hold into
prometheus-client: before every scrape of this process, so its own figures are exact, and
every ``FLUSH_SECONDS`` (the server's timer, ``router.server.observe``).

With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set, by ``router serve
--workers``) values live in that directory and every scrape aggregates all workers
(prometheus-client's multiprocess mode): counters and histograms add up, in-flight requests
add up over live workers, a breaker shows the worst state any live worker sees. The other
workers' figures are those of their last flush: at most ``FLUSH_SECONDS`` behind.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

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

from router.errors import ErrorClass
from router.obs._cells import (
    AttemptSeries,
    Cells,
    RequestsByLabels,
    RequestSeries,
    add_usage_detail,
)
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
#: How often the server flushes recorded figures into prometheus-client (and, with several
#: workers, into their shared directory): the most another worker's scrape lags behind.
FLUSH_SECONDS = 1.0


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


class _Guard(dict[str | None, str]):
    """The first ``limit`` distinct values of a label, then ``other`` for any new one:
    ``guard[value]`` is the label value (a dict of the values seen, so a known one is a
    single lookup; a value folded into ``other`` is not kept)."""

    def __init__(self, limit: int = _GUARD_LIMIT) -> None:
        super().__init__({None: NONE, "": NONE})
        self._room = limit

    def __missing__(self, value: str | None) -> str:
        if not value:  # pragma: no cover - None and "" are always present
            return NONE
        if self._room <= 0 or not value.isascii() or len(value) > 64:
            return OTHER
        self._room -= 1
        self[value] = value
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


#: What a request's series is found by: its endpoint, the alias and target it named, its
#: outcome and error code.
_RequestKey = tuple[str, str | None, str | None, str, str | None]
#: What an attempt's series is found by: the record's alias, target, outcome, error class and
#: skip reason.
_AttemptKey = tuple[str, str, str, ErrorClass | None, str | None]


def _bounded(key: tuple[object, ...], labels: tuple[str, ...]) -> bool:
    """Whether a series may be indexed by ``key``, the values its ``labels`` came from: not
    when one of them was folded into ``other`` (a made-up model name, a new error code past
    the guard's limit), which would let clients grow the index. Every other value is its own
    label, an enum, or one of the few that mean ``none``."""
    for value, label in zip(key, labels, strict=True):
        if label == OTHER and value != OTHER:
            return False
    return True


class Metrics:
    """The proxy's metrics, in a registry of their own (several apps in one process do not
    clash); ``render`` gives the Prometheus text of a scrape.

    Not thread-safe: record and ``flush`` from one thread (the event loop's)."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._endpoint = _Guard()
        self._error = _Guard()
        self._reason = _Guard()
        self._in_flight = 0
        self._define()
        self._cells = Cells(self, _LATENCY_BUCKETS, _TTFT_BUCKETS, _OVERHEAD_BUCKETS)
        self._requests_by_labels = RequestsByLabels(self._cells)
        # Series by the values a request or record brings, so the hot path makes one lookup
        # per request and one per attempt, no label mapping; per Vocabulary (a plan maps
        # names to labels its own way), bounded as the labels are (see _bounded).
        self._index_vocab: Vocabulary | None = None
        self._request_index: dict[_RequestKey, RequestSeries] = {}
        self._attempt_index: dict[_AttemptKey, AttemptSeries] = {}

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
    def enter(self) -> None:
        """A request began (the in-flight gauge)."""
        self._in_flight += 1

    def leave(self) -> None:
        """A request ended."""
        self._in_flight -= 1

    def request_series(self, vocab: Vocabulary, endpoint: str, alias: str | None,
                       target: str | None, outcome: str, error: str | None) -> RequestSeries:
        """Where a request is recorded: ``alias`` and ``target`` as the request named them
        (bounded by ``vocab`` here), endpoint and error through the guard."""
        if vocab is not self._index_vocab:
            self._reindex(vocab)
        key = (endpoint, alias, target, outcome, error)
        series = self._request_index.get(key)
        if series is None:
            labels = (self._endpoint[endpoint], vocab.alias(alias), vocab.target(target),
                      outcome, self._error[error])
            series = self._requests_by_labels[labels]
            if _bounded(key, labels):
                self._request_index[key] = series
        return series

    def observe_request(self, endpoint: str, alias: str, target: str, outcome: str,
                        error: str | None, seconds: float) -> None:
        """One answered request (labels already bounded by a Vocabulary, but endpoint and
        error, which pass the guard here)."""
        labels = (self._endpoint[endpoint], alias, target, outcome, self._error[error])
        self._requests_by_labels[labels].observe(seconds)

    def _reindex(self, vocab: Vocabulary) -> None:
        """A new plan: names map to labels its own way."""
        self._index_vocab, self._request_index, self._attempt_index = vocab, {}, {}

    def observe_attempts(self, vocab: Vocabulary, records: Iterable[AttemptRecord]) -> float:
        """Every attempt and skip of a call: counts, times, tokens and cost by target.
        Returns the seconds spent upstream (attempts and retry waits)."""
        if vocab is not self._index_vocab:
            self._reindex(vocab)
        index = self._attempt_index
        upstream_ms = 0.0
        for rec in records:
            key = (rec.alias, rec.target, rec.outcome, rec.error_class, rec.reason)
            series = index.get(key)
            if series is None:
                series = self._attempt_series(vocab, key)
            series.count.n += 1
            if series.skipped:
                continue
            ms = rec.latency_ms
            if ms is not None:
                upstream_ms += ms
                spread = series.seconds  # Spread.observe, inline
                if spread.child is None:
                    spread.child = spread.metric.labels(*spread.labels)
                seconds = ms / 1e3
                spread.counts[bisect_left(spread.bounds, seconds)] += 1
                spread.sum += seconds
            if rec.retry_in_ms is not None:
                upstream_ms += rec.retry_in_ms
            if rec.ttft_ms is not None:
                series.ttft.observe(rec.ttft_ms / 1e3)
            pair = series.pair
            if rec.input_tokens:
                pair["input"].n += rec.input_tokens
            if rec.output_tokens:
                pair["output"].n += rec.output_tokens
            if rec.cost_usd:
                pair["cost"].n += rec.cost_usd
        return upstream_ms / 1e3

    def _attempt_series(self, vocab: Vocabulary, key: _AttemptKey) -> AttemptSeries:
        name, target_key, outcome, error_class, reason = key
        alias, target = vocab.alias(name), vocab.target(target_key)
        err = error_class.value if error_class is not None else None
        labels = (alias, target, outcome, self._error[err], self._reason[reason])
        series = AttemptSeries(self._cells, labels)
        if _bounded(key, labels):
            self._attempt_index[key] = series
        return series

    def observe_usage_detail(self, alias: str, target: str, usage: Usage) -> None:
        """The token types only the final usage carries (input and output come with the
        attempt records)."""
        add_usage_detail(self._cells.pair(alias, target), usage)

    def observe_overhead(self, endpoint: str, seconds: float) -> None:
        self._cells.overhead_seconds[self._endpoint[endpoint],].observe(max(0.0, seconds))

    def observe_first_token(self, alias: str, seconds: float) -> None:
        self._cells.first_token_seconds[alias,].observe(seconds)

    def set_breakers(self, vocab: Vocabulary, states: Mapping[str, str]) -> None:
        """Breaker states (closed, half_open, open) of targets, as this process sees them."""
        for key, state in states.items():
            self.breaker.labels(vocab.target(key)).set(BREAKER_VALUES.get(state, 0))

    def flush(self) -> None:
        """Move what was recorded since the last flush into prometheus-client (in
        multiprocess mode, into this worker's files, where other workers' scrapes read it)."""
        self._cells.flush()
        self.in_flight.set(self._in_flight)

    # -- scraping ----------------------------------------------------------------------
    def render(self, budgets: Sequence[BudgetReading] | None, *, flush: bool = True) -> bytes:
        """The Prometheus text of every worker's figures (multiprocess mode) or this
        process's, plus the budgets read for this scrape (None: the store did not answer).
        It flushes first; pass ``flush=False`` when rendering in another thread, after a
        ``flush`` in the recording one."""
        if flush:
            self.flush()
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


__all__ = ["BREAKER_VALUES", "CONTENT_TYPE", "FLUSH_SECONDS", "MULTIPROC_ENV", "NONE", "OTHER",
           "BudgetReading", "Metrics", "RequestSeries", "Vocabulary", "mark_worker_dead",
           "multiprocess_dir"]
