"""The state store interface: budgets (reserve / settle / release), local rate limits and shared
circuit-breaker state, behind one small protocol with memory, SQLite and Redis implementations.

Budget arithmetic is in micro-dollars (integers) so that every store adds and compares exactly.
A budget key names one cap in one window (``scope|window_id``); a reservation holds an amount on
several keys at once, all or nothing, until it is settled (to the real cost), released, or
expires (a process that died while holding it).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Literal, Self

from router.errors import StoreUnavailableError

OnStoreError = Literal["fail_closed", "fail_open"]

MICRO = 1_000_000  # micro-dollars per dollar


def to_micro(usd: float) -> int:
    """US dollars as integer micro-dollars, rounded up (a reservation never under-counts)."""
    micro = usd * MICRO
    whole = int(micro)
    return whole + 1 if micro > whole else whole


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """One cap in one window: ``key`` is ``scope|window_id``; ``ttl`` is the seconds until the
    window ends (the store lets the spend expire then; None for ``total``)."""

    key: str
    cap_micro: int
    ttl: float | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was refused: the first key whose cap it would pass."""

    key: str
    cap_micro: int
    spent_micro: int
    reserved_micro: int
    wanted_micro: int


@dataclass(frozen=True, slots=True)
class Usage:
    """Spend and open reservations of one budget key, now."""

    spent_micro: int
    reserved_micro: int


class StoreError(StoreUnavailableError):
    """The state store could not be reached or answered wrongly (policy: on_store_error).

    An LlmError of class ``store_unavailable``: one that reaches a caller (a budget report, a
    dry-run reading the store) is a classified error like any other, never a bare exception."""


class StateStore(abc.ABC):
    """Budgets, rate limits and breaker state; each method is atomic across processes for the
    stores that are shared (sqlite, redis)."""

    kind: str = "abstract"
    #: Whether an operation may suspend (await I/O or a thread). A store whose operations
    #: never suspend (memory) cannot be interrupted half-way by a cancellation, so callers
    #: need no task to finish what they started.
    suspends: ClassVar[bool] = True

    @abc.abstractmethod
    async def reserve(self, reservation_id: str, keys: Sequence[BudgetKey], amount_micro: int,
                      hold_seconds: float) -> Refusal | None:
        """Hold ``amount_micro`` on every key, or on none: None when held, else the Refusal of
        the first key whose spent + reserved + amount would pass its cap. The hold expires
        after ``hold_seconds`` unless settled or released first."""

    @abc.abstractmethod
    async def settle(self, reservation_id: str, actual_micro: int) -> None:
        """Turn the hold into spend of ``actual_micro`` on every key it held (may exceed the
        hold when the provider reported more than the worst case; the spend is what it is)."""

    @abc.abstractmethod
    async def release(self, reservation_id: str) -> None:
        """Drop the hold; nothing is spent."""

    @abc.abstractmethod
    async def usage(self, key: str) -> Usage:
        """Spend and live reservations of one key (expired holds are not counted)."""

    @abc.abstractmethod
    async def add_spend(self, key: BudgetKey, amount_micro: int) -> int:
        """Add spend without a reservation (a call that was not under this budget when it
        started); returns the new spend."""

    @abc.abstractmethod
    async def first_time(self, key: str, ttl: float | None) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds (warn_at, once a window)."""

    @abc.abstractmethod
    async def rate_acquire(self, key: str, limit: int, amount: int, window: float) -> float:
        """Take ``amount`` units (1 request, or N tokens) from a sliding ``window`` (seconds)
        whose capacity is ``limit``: 0.0 when taken, else the seconds until it would fit (and
        nothing is taken)."""

    @abc.abstractmethod
    async def breaker_get(self, key: str) -> tuple[int, float | None]:
        """Shared breaker state of a target: (consecutive failures, opened_at epoch or None)."""

    @abc.abstractmethod
    async def breaker_put(self, key: str, failures: int, opened_at: float | None,
                          ttl: float) -> None:
        """Store a target's shared breaker state (expires after ``ttl`` seconds unused)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
