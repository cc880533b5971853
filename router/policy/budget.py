"""Budgets: before an attempt, reserve its worst-case cost on every budget it counts against;
after it, settle to the real cost, or release. A reservation that would pass a cap is refused,
and the target is skipped. The arithmetic and atomicity live in the state store.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from router.obs import log
from router.plan.routes import BudgetSpec
from router.state.base import BudgetKey, Refusal, StateStore, StoreError, to_micro

Op = Coroutine[object, object, None]

_WINDOW_FORMATS = {"minute": "%Y-%m-%dT%H:%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d",
                   "month": "%Y-%m"}


_windows: dict[str, tuple[float, float, str]] = {}  # per -> (start, end, id) of the last one


def window_bounds(per: str, now: float) -> tuple[str, float | None]:
    """The calendar (UTC) window containing ``now``: its id and the seconds until it ends
    (None for ``total``). The current window is cached until it ends."""
    if per == "total":
        return "total", None
    cached = _windows.get(per)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached[2], cached[1] - now
    window_id, ttl = _window_bounds(per, now)
    assert ttl is not None
    _windows[per] = (now - _elapsed(per, now), now + ttl, window_id)
    return window_id, ttl


def _elapsed(per: str, now: float) -> float:
    t = datetime.fromtimestamp(now, UTC)
    since_midnight = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    return {"minute": t.second + t.microsecond / 1e6,
            "hour": t.minute * 60 + t.second + t.microsecond / 1e6,
            "day": since_midnight,
            "month": (t.day - 1) * 86400 + since_midnight}[per]


def _window_bounds(per: str, now: float) -> tuple[str, float | None]:
    t = datetime.fromtimestamp(now, UTC)
    if per == "minute":
        start = t.replace(second=0, microsecond=0)
        end = start.timestamp() + 60
    elif per == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        end = start.timestamp() + 3600
    elif per == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start.timestamp() + 86400
    else:  # month
        days = calendar.monthrange(t.year, t.month)[1]
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.timestamp() + days * 86400
    return start.strftime(_WINDOW_FORMATS[per]), end - now


def budget_key(spec: BudgetSpec, now: float) -> BudgetKey:
    """The store key of ``spec`` in the window containing ``now``."""
    window, ttl = window_bounds(spec.per, now)
    return BudgetKey(f"budget|{spec.scope}|{spec.per}|{window}", to_micro(spec.usd), ttl)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation this call holds."""

    reservation_id: str
    keys: tuple[BudgetKey, ...]
    specs: tuple[BudgetSpec, ...]
    amount_micro: int
    output_cap: int | None = None  # the max_tokens the worst case assumed (sent if unset)


def describe_refusal(r: Refusal, specs: Sequence[BudgetSpec], keys: Sequence[BudgetKey]) -> str:
    """``budget alias:fast $5.00/hour: spent $4.91, held $0.05, this call would reserve $0.32
    ($0.28 over)``: what is spent, what other calls hold and this call's worst case."""
    spec = next((s for s, k in zip(specs, keys, strict=True) if k.key == r.key), None)
    if spec is None:
        name = r.key
    else:
        per = " total" if spec.per == "total" else f"/{spec.per}"
        name = f"{spec.scope} {_usd(to_micro(spec.usd))}{per}"
    over = r.spent_micro + r.reserved_micro + r.wanted_micro - r.cap_micro
    return (f"budget {name}: spent {_usd(r.spent_micro)}, held {_usd(r.reserved_micro)}, "
            f"this call would reserve {_usd(r.wanted_micro)} ({_usd(over)} over)")


def _usd(micro: int) -> str:
    """Dollars to the cent; below 10 cents to the micro-dollar, so that small amounts (a
    cheap model's call) do not all read $0.00."""
    if micro >= 100_000 or micro == 0:
        return f"${micro / 1e6:,.2f}"
    return "$" + f"{micro / 1e6:.6f}".rstrip("0")


class Budgets:
    """Reserve, settle and release against the store, under the store-error policy.

    Every hold ends, whatever happens to the call that took it: a cancellation while a
    reservation is in flight releases it once the store answers (a SQLite thread or a Redis
    script goes on after the caller stops waiting), and a settle or release that is cancelled
    goes on in a task of its own. ``drain()`` waits for those (Router.aclose does)."""

    def __init__(self, store: StateStore, *, fail_open: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.fail_open = fail_open
        self.clock = clock
        self._finishing: set[asyncio.Task[None]] = set()

    async def reserve(self, reservation_id: str, specs: Sequence[BudgetSpec], amount_usd: float,
                      hold_seconds: float, *, output_cap: int | None = None) -> Hold | str | None:
        """A Hold; or a refusal text (skip the target); or None when the store is down and the
        policy is fail_open (the call goes on unaccounted). Raises StoreError when the store
        is down and the policy is fail_closed."""
        now = self.clock()
        keys = tuple(budget_key(s, now) for s in specs)
        amount = to_micro(amount_usd)
        try:
            refusal = await self._reserve(reservation_id, keys, amount, hold_seconds)
        except StoreError as e:
            log.emit("store_error", operation="reserve", error=e.message,
                     policy="fail_open" if self.fail_open else "fail_closed")
            if self.fail_open:
                return None
            raise
        if refusal is not None:
            return describe_refusal(refusal, specs, keys)
        return Hold(reservation_id, keys, tuple(specs), amount, output_cap)

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        await self._survive(self._settle(hold, actual_usd))

    async def release(self, hold: Hold) -> None:
        await self._survive(self._release(hold.reservation_id))

    async def drain(self) -> None:
        """Wait until every settle or release still running after a cancellation is done."""
        while self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------
    async def _reserve(self, rid: str, keys: Sequence[BudgetKey], amount: int,
                       hold_seconds: float) -> Refusal | None:
        op = self.store.reserve(rid, keys, amount, hold_seconds)
        if not self.store.suspends:
            return await op  # runs to its end without a suspension point: nothing to undo
        task = asyncio.ensure_future(op)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller is gone, the reservation may still land: release it when it does.
            finishing = self._spawn(self._undo(task, rid))
            # Cancelled again meanwhile: it finishes anyway, and we are raising regardless.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(finishing)
            raise

    async def _undo(self, task: asyncio.Future[Refusal | None], rid: str) -> None:
        try:
            refusal = await task
        except StoreError:
            return  # it failed: nothing is held
        if refusal is None:
            await self._release(rid)

    async def _survive(self, op: Op) -> None:
        """Run ``op`` to its end even if the caller is cancelled meanwhile (which still
        propagates to the caller)."""
        if not self.store.suspends:
            await op
            return
        await asyncio.shield(self._spawn(op))

    def _spawn(self, op: Op) -> asyncio.Task[None]:
        task = asyncio.ensure_future(op)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return task

    async def _settle(self, hold: Hold, actual_usd: float) -> None:
        try:
            await self.store.settle(hold.reservation_id, to_micro(actual_usd))
            await self._warn(hold)
        except StoreError as e:
            log.emit("store_error", operation="settle", error=e.message)

    async def _release(self, reservation_id: str) -> None:
        try:
            await self.store.release(reservation_id)
        except StoreError as e:
            log.emit("store_error", operation="release", error=e.message)

    async def _warn(self, hold: Hold) -> None:
        for spec, key in zip(hold.specs, hold.keys, strict=True):
            if spec.warn_at is None:
                continue
            usage = await self.store.usage(key.key)
            if usage.spent_micro >= spec.warn_at * key.cap_micro and await self.store.first_time(
                    key.key + "|warned", key.ttl):
                log.emit("budget_warning", level=30, scope=spec.scope, per=spec.per,
                         spent_usd=usage.spent_micro / 1e6, cap_usd=spec.usd,
                         warn_at=spec.warn_at)
