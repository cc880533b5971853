"""The accumulators behind router.obs.metrics: what a request adds to, with no lock and no
loop over buckets, and what ``Metrics.flush`` moves into prometheus-client.

A ``Tally`` is one counter series' increments since the last flush, a ``Spread`` one
histogram series' count per bucket and sum. Series objects (``RequestSeries``,
``AttemptSeries``, ``Pair``) hold the tallies and spreads one request or attempt adds to, so
recording is a lookup and a few additions. One thread (the event loop's) records and
flushes.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from router.types import Usage


class Families(Protocol):
    """The prometheus-client metrics the cells flush into (``metrics.Metrics`` has them)."""

    requests: Counter
    attempts: Counter
    tokens: Counter
    cost: Counter
    request_seconds: Histogram
    attempt_seconds: Histogram
    first_token_seconds: Histogram
    upstream_ttft_seconds: Histogram
    overhead_seconds: Histogram

Buckets = Sequence[float]


class Tally:
    """What one counter series counted since the last flush."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0.0

    def flush(self) -> None:
        if self.n:
            self.child.inc(self.n)
            self.n = 0.0


class Spread:
    """What one histogram series observed since the last flush: how many values fell in each
    bucket (the first whose bound is at or above the value, where prometheus-client's
    ``observe`` files it) and their sum. Its child is made on the first observation (a
    series that never sees a value, such as the time to first token of an attempt that did
    not stream, shows nothing)."""

    __slots__ = ("bounds", "child", "counts", "labels", "metric", "sum")

    def __init__(self, metric: Histogram, labels: tuple[str, ...],
                 bounds: tuple[float, ...]) -> None:
        self.metric = metric
        self.labels = labels
        self.child: Any = None
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if self.child is None:
            self.child = self.metric.labels(*self.labels)
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def flush(self) -> None:
        counts = self.counts
        if not any(counts):
            return
        # prometheus-client has no public way to add many observations at once: add to the
        # child's bucket values and sum as ``observe`` does, one bucket at a time
        # (tests/test_obs_metrics.py renders both ways and compares).
        buckets = self.child._buckets  # noqa: SLF001
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self.child._sum.inc(self.sum)  # noqa: SLF001
        self.sum = 0.0


class Tallies(dict[tuple[str, ...], Tally]):
    """A counter's tallies by label values, each made (with its child) on first use. The
    label values are bounded (plan vocabulary, guards), and so is this dict."""

    def __init__(self, metric: Counter) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, labels: tuple[str, ...]) -> Tally:
        tally = self[labels] = Tally(self.metric.labels(*labels))
        return tally


class Spreads(dict[tuple[str, ...], Spread]):
    """A histogram's spreads by label values, each made (with its child) on first use."""

    def __init__(self, metric: Histogram, buckets: Sequence[float]) -> None:
        super().__init__()
        self.metric = metric
        self.bounds = (*map(float, buckets), math.inf)

    def __missing__(self, labels: tuple[str, ...]) -> Spread:
        spread = self[labels] = Spread(self.metric, labels, self.bounds)
        return spread


class Pair(dict[str, Tally]):
    """The counters of one (alias, target): its token tallies by type, and its cost under
    ``"cost"``, each made on first use."""

    def __init__(self, cells: Cells, alias: str, target: str) -> None:
        super().__init__()
        self._cells = cells
        self._labels = (alias, target)

    def __missing__(self, kind: str) -> Tally:
        cells = self._cells
        tally = self[kind] = (cells.cost[self._labels] if kind == "cost"
                              else cells.tokens[(*self._labels, kind)])
        return tally


class RequestSeries:
    """Where one kind of answered request is recorded (an endpoint, alias, target, outcome
    and error class): found once, by ``Metrics.request_series``, then a few additions."""

    __slots__ = ("count", "first_token", "overhead", "pair", "seconds")

    def __init__(self, cells: Cells, labels: tuple[str, str, str, str, str]) -> None:
        endpoint, alias, target, outcome, _ = labels
        self.count = cells.requests[labels]
        self.seconds = cells.request_seconds[endpoint, alias, outcome]
        self.overhead = cells.overhead_seconds[endpoint,]
        self.first_token = cells.first_token_seconds[alias,]
        self.pair = cells.pair(alias, target)

    def observe(self, seconds: float) -> None:
        """The request, and its wall time."""
        self.count.n += 1
        self.seconds.observe(seconds)

    def observe_call(self, seconds: float, overhead: float, usage: Usage | None,
                     first_token: float | None) -> None:
        """A request that made a call: the request and its wall time, the router's own time
        in it (never below zero), the token types only the final usage carries, a stream's
        first chunk from the request's arrival (all of ``observe`` and the three below, in
        one call)."""
        self.count.n += 1
        # Spread.observe, inline (a call per histogram costs more than its work)
        spread = self.seconds
        if spread.child is None:
            spread.child = spread.metric.labels(*spread.labels)
        spread.counts[bisect_left(spread.bounds, seconds)] += 1
        spread.sum += seconds
        if overhead < 0.0:
            overhead = 0.0
        spread = self.overhead
        if spread.child is None:
            spread.child = spread.metric.labels(*spread.labels)
        spread.counts[bisect_left(spread.bounds, overhead)] += 1
        spread.sum += overhead
        if usage is not None and (usage.cached_tokens or usage.reasoning_tokens
                                  or usage.cache_write_tokens):
            add_usage_detail(self.pair, usage)
        if first_token is not None:
            self.first_token.observe(first_token)

    def observe_overhead(self, seconds: float) -> None:
        """The router's own time in the request (never below zero)."""
        self.overhead.observe(seconds if seconds > 0.0 else 0.0)

    def observe_first_token(self, seconds: float) -> None:
        """A stream's first chunk, from the request's arrival."""
        self.first_token.observe(seconds)

    def observe_usage_detail(self, usage: Usage) -> None:
        """The token types only the final usage carries (input and output come with the
        attempt records)."""
        add_usage_detail(self.pair, usage)


def add_usage_detail(pair: Pair, usage: Usage) -> None:
    if usage.cached_tokens:
        pair["cached"].n += usage.cached_tokens
    if usage.reasoning_tokens:
        pair["reasoning"].n += usage.reasoning_tokens
    if usage.cache_write_tokens:
        pair["cache_write"].n += usage.cache_write_tokens


class RequestsByLabels(dict[tuple[str, str, str, str, str], RequestSeries]):
    """Request series by their labels, each made on first use."""

    def __init__(self, cells: Cells) -> None:
        super().__init__()
        self._cells = cells

    def __missing__(self, labels: tuple[str, str, str, str, str]) -> RequestSeries:
        series = self[labels] = RequestSeries(self._cells, labels)
        return series


class AttemptSeries:
    """Where one kind of attempt is recorded (alias, target, outcome, error class, reason)."""

    __slots__ = ("count", "pair", "seconds", "skipped", "ttft")

    def __init__(self, cells: Cells, labels: tuple[str, str, str, str, str]) -> None:
        alias, target, outcome, _, _ = labels
        self.count = cells.attempts[labels]
        self.skipped = outcome == "skipped"
        self.seconds = cells.attempt_seconds[target, outcome]
        self.ttft = cells.upstream_ttft_seconds[target,]
        self.pair = cells.pair(alias, target)


class Cells:
    """The accumulators of every metric, by label values, and what ``flush`` walks."""

    def __init__(self, m: Families, latency: Buckets, ttft: Buckets, overhead: Buckets) -> None:
        self.requests = Tallies(m.requests)
        self.attempts = Tallies(m.attempts)
        self.tokens = Tallies(m.tokens)
        self.cost = Tallies(m.cost)
        self.request_seconds = Spreads(m.request_seconds, latency)
        self.attempt_seconds = Spreads(m.attempt_seconds, latency)
        self.first_token_seconds = Spreads(m.first_token_seconds, ttft)
        self.upstream_ttft_seconds = Spreads(m.upstream_ttft_seconds, ttft)
        self.overhead_seconds = Spreads(m.overhead_seconds, overhead)
        self.pairs: dict[tuple[str, str], Pair] = {}

    def pair(self, alias: str, target: str) -> Pair:
        """The token and cost counters of ``alias`` served by ``target``."""
        pair = self.pairs.get((alias, target))
        if pair is None:
            pair = self.pairs[alias, target] = Pair(self, alias, target)
        return pair

    def flush(self) -> None:
        for tallies in (self.requests, self.attempts, self.tokens, self.cost):
            for tally in tallies.values():
                tally.flush()
        for spreads in (self.request_seconds, self.attempt_seconds, self.first_token_seconds,
                        self.upstream_ttft_seconds, self.overhead_seconds):
            for spread in spreads.values():
                spread.flush()


__all__ = ["AttemptSeries", "Buckets", "Cells", "Pair", "RequestSeries", "RequestsByLabels",
           "Spread", "Spreads", "Tallies", "Tally", "add_usage_detail"]
