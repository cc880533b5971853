"""Circuit breakers per target: closed -> open after N consecutive retryable failures ->
half-open after a cooldown, when exactly one probe may go through -> closed on success."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from router.plan.routes import BreakerPolicy


@dataclass(slots=True)
class _State:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class Breakers:
    """The breaker state of every target of one Router (in memory, one event loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._states: dict[str, _State] = {}
        self._clock = clock

    def enter(self, key: str, policy: BreakerPolicy) -> bool | None:
        """Whether a call may go to ``key`` now: None (open), True (half-open: this caller
        is the probe, which it must end with a verdict or ``release_probe``) or False
        (closed: go)."""
        if not policy.enabled:
            return False
        s = self._states.get(key)
        if s is None or s.opened_at is None:
            return False
        if self._clock() - s.opened_at < policy.cooldown or s.probing:
            return None
        s.probing = True
        return True

    def allows(self, key: str, policy: BreakerPolicy) -> bool:
        """Whether a call may go to ``key`` now; in half-open state, only the first caller."""
        if not policy.enabled:
            return True
        s = self._states.get(key)
        if s is None or s.opened_at is None:
            return True
        if self._clock() - s.opened_at < policy.cooldown or s.probing:
            return False
        s.probing = True  # half-open: this caller is the probe
        return True

    def record_success(self, key: str) -> None:
        s = self._states.get(key)
        if s is not None:
            s.failures, s.opened_at, s.probing = 0, None, False

    def record_failure(self, key: str, policy: BreakerPolicy, *, retryable: bool) -> bool:
        """Count a failure; returns True when this failure opened (or re-opened) the breaker.
        Non-retryable failures (auth, invalid request...) say nothing about health."""
        if not policy.enabled:
            return False
        s = self._states.setdefault(key, _State())
        if not retryable:  # no verdict on health: a half-open probe just frees its slot
            s.probing = False
            return False
        if s.probing:  # the half-open probe failed: open again for a full cooldown
            s.probing, s.opened_at = False, self._clock()
            return True
        s.failures += 1
        if s.opened_at is None and s.failures >= policy.failures:
            s.opened_at = self._clock()
            return True
        return False

    def release_probe(self, key: str) -> None:
        """A probe that ended without a verdict (cancelled, non-retryable) frees the slot."""
        s = self._states.get(key)
        if s is not None:
            s.probing = False

    def state(self, key: str, policy: BreakerPolicy) -> str:
        """closed | open | half_open, for display."""
        s = self._states.get(key)
        if s is None or s.opened_at is None:
            return "closed"
        if self._clock() - s.opened_at < policy.cooldown:
            return "open"
        return "half_open"

    def force_open(self, key: str) -> None:
        """Open ``key``'s breaker now (dry-run simulation and tests)."""
        s = self._states.setdefault(key, _State())
        s.opened_at, s.probing = self._clock(), False
