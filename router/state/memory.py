"""The in-process state store: plain dicts on one event loop.

No method awaits, so each one runs to completion before another starts: that is the whole
atomicity argument, and why there are no locks. State dies with the process.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from router.state.base import BudgetKey, Refusal, StateStore, Usage

# Expired rows of keys nobody touches again (old windows) are dropped by a sweep at most this
# often; a key that is touched is purged on the spot.
SWEEP_EVERY = 60.0


def unique_keys(keys: Sequence[BudgetKey]) -> list[BudgetKey]:
    """``keys`` without repeated names (the first one wins), so a hold is taken once per key."""
    seen: set[str] = set()
    out: list[BudgetKey] = []
    for k in keys:
        if k.key not in seen:
            seen.add(k.key)
            out.append(k)
    return out


def check_reserve_args(amount_micro: int, hold_seconds: float) -> None:
    """Reject arguments every store would otherwise store nonsense for."""
    if amount_micro < 0:
        raise ValueError(f"amount_micro must be >= 0, got {amount_micro}")
    if not hold_seconds > 0:
        raise ValueError(f"hold_seconds must be > 0, got {hold_seconds}")


def sliding_log_wait(entries: Iterable[tuple[float, int]], used: int, limit: int, amount: int,
                     now: float) -> float:
    """Seconds until ``amount`` fits under ``limit`` in a sliding log of live
    (expires_at, amount) entries that sum to ``used``."""
    excess = used + amount - limit
    for expires_at, taken in sorted(entries):
        excess -= taken
        if excess <= 0:
            return max(expires_at - now, 0.0)
    return math.inf  # unreachable when amount <= limit


@dataclass(slots=True)
class _Spend:
    spent: int = 0
    expires_at: float | None = None


@dataclass(slots=True)
class _Reservation:
    amount: int
    expires_at: float
    keys: list[tuple[str, float | None]]  # (budget key, window end)


@dataclass(slots=True)
class _Log:
    """Sliding log of one rate key: a heap of (expires_at, amount) and their sum."""

    entries: list[tuple[float, int]] = field(default_factory=list)
    used: int = 0

    def purge(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now:
            self.used -= heapq.heappop(self.entries)[1]


class MemoryStore(StateStore):
    """Budgets, rate limits and breaker state in this process only (the default store)."""

    kind = "memory"
    suspends = False  # no method awaits: each runs to completion once started

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._spend: dict[str, _Spend] = {}
        self._holds: dict[str, dict[str, tuple[int, float]]] = {}  # key -> rid -> (amount, exp)
        self._reservations: dict[str, _Reservation] = {}
        self._first: dict[str, float] = {}  # key -> expires_at (inf: never)
        self._rates: dict[str, _Log] = {}
        self._breakers: dict[str, tuple[int, float | None, float]] = {}
        self._next_sweep = 0.0

    # -- budgets -------------------------------------------------------------------------------

    async def reserve(self, reservation_id: str, keys: Sequence[BudgetKey], amount_micro: int,
                      hold_seconds: float) -> Refusal | None:
        check_reserve_args(amount_micro, hold_seconds)
        now = self._now()
        live = self._reservations.get(reservation_id)
        if live is not None and live.expires_at > now:
            return None  # already held: a retried reserve must not hold twice
        keys = unique_keys(keys)
        for k in keys:
            self._purge_holds(k.key, now)
        for k in keys:
            spent = self._spent(k.key, now)
            reserved = sum(a for a, _ in self._holds.get(k.key, {}).values())
            if spent + reserved + amount_micro > k.cap_micro:
                return Refusal(k.key, k.cap_micro, spent, reserved, amount_micro)
        expires_at = now + hold_seconds
        for k in keys:
            self._holds.setdefault(k.key, {})[reservation_id] = (amount_micro, expires_at)
        self._reservations[reservation_id] = _Reservation(
            amount_micro, expires_at,
            [(k.key, None if k.ttl is None else now + k.ttl) for k in keys])
        return None

    async def settle(self, reservation_id: str, actual_micro: int) -> None:
        self._finish(reservation_id, max(actual_micro, 0))

    async def release(self, reservation_id: str) -> None:
        self._finish(reservation_id, 0)

    async def usage(self, key: str) -> Usage:
        now = self._now()
        reserved = sum(a for a, exp in self._holds.get(key, {}).values() if exp > now)
        return Usage(self._spent(key, now), reserved)

    async def add_spend(self, key: BudgetKey, amount_micro: int) -> int:
        now = self._now()
        return self._add(key.key, amount_micro, None if key.ttl is None else now + key.ttl, now)

    # -- warn once, rate limits, breakers ------------------------------------------------------

    async def first_time(self, key: str, ttl: float | None) -> bool:
        now = self._now()
        if self._first.get(key, -math.inf) > now:
            return False
        self._first[key] = math.inf if ttl is None else now + ttl
        return True

    async def rate_acquire(self, key: str, limit: int, amount: int, window: float) -> float:
        if amount <= 0:
            return 0.0
        if amount > limit:
            return math.inf  # can never fit
        now = self._now()
        log = self._rates.setdefault(key, _Log())
        log.purge(now)
        if log.used + amount <= limit:
            heapq.heappush(log.entries, (now + window, amount))
            log.used += amount
            return 0.0
        return sliding_log_wait(log.entries, log.used, limit, amount, now)

    async def breaker_get(self, key: str) -> tuple[int, float | None]:
        state = self._breakers.get(key)
        if state is None or state[2] <= self._now():
            return 0, None
        return state[0], state[1]

    async def breaker_put(self, key: str, failures: int, opened_at: float | None,
                          ttl: float) -> None:
        self._breakers[key] = (failures, opened_at, self._now() + ttl)

    def footprint(self) -> dict[str, int]:
        """How many entries each table holds now (expired ones until a sweep drops them)."""
        return {"spend": len(self._spend), "holds": sum(map(len, self._holds.values())),
                "reservations": len(self._reservations), "first": len(self._first),
                "rates": len(self._rates), "breakers": len(self._breakers)}

    # -- internals -----------------------------------------------------------------------------

    def _now(self) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            self._sweep(now)
        return now

    def _finish(self, reservation_id: str, actual_micro: int) -> None:
        res = self._reservations.pop(reservation_id, None)
        if res is None:
            return  # unknown, or settled already: nothing to undo, never negative
        now = self._now()
        for key, window_end in res.keys:
            holds = self._holds.get(key)
            if holds is not None:
                holds.pop(reservation_id, None)
            if res.expires_at > now and actual_micro:
                self._add(key, actual_micro, window_end, now)

    def _add(self, key: str, amount: int, window_end: float | None, now: float) -> int:
        s = self._spend.get(key)
        if s is None or (s.expires_at is not None and s.expires_at <= now):
            s = self._spend[key] = _Spend()
        s.spent += amount
        s.expires_at = window_end
        return s.spent

    def _spent(self, key: str, now: float) -> int:
        s = self._spend.get(key)
        if s is None or (s.expires_at is not None and s.expires_at <= now):
            return 0
        return s.spent

    def _purge_holds(self, key: str, now: float) -> None:
        holds = self._holds.get(key)
        if holds:
            for rid in [rid for rid, (_, exp) in holds.items() if exp <= now]:
                del holds[rid]

    def _sweep(self, now: float) -> None:
        """Drop whatever has expired: old windows' spend, dead holds, stale limiter state."""
        for key in [k for k, s in self._spend.items()
                    if s.expires_at is not None and s.expires_at <= now]:
            del self._spend[key]
        for rid in [r for r, res in self._reservations.items() if res.expires_at <= now]:
            for key, _ in self._reservations.pop(rid).keys:
                self._holds.get(key, {}).pop(rid, None)
        for key in [k for k, h in self._holds.items() if not h]:
            del self._holds[key]
        for key in [k for k, exp in self._first.items() if exp <= now]:
            del self._first[key]
        for key, log in list(self._rates.items()):
            log.purge(now)
            if not log.entries:
                del self._rates[key]
        for key in [k for k, b in self._breakers.items() if b[2] <= now]:
            del self._breakers[key]
