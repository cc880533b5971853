"""Connection slots: how many requests may be in flight to one origin (scheme, host, port) at
once. Pure asyncio; ``router.providers.http`` keeps one ``Slots`` per origin and limit.

Our own accounting instead of aiohttp's connector limits, so that (1) one origin's slow replies
never hold slots another origin needs (no global cap), and (2) the time a request spends
waiting for a slot is known and kept out of its timeouts: every clock starts at the grant.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math

__all__ = ["Slots"]


class Slots:
    """A FIFO counting limit with a cheap fast path: ``try_acquire`` takes a free slot without
    allocating anything; only a request that must wait creates a future (and a timer)."""

    __slots__ = ("_waiters", "in_use", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a connection limit must be at least 1, not {limit}")
        self.limit = limit
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot right now."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued before us (FIFO)."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return True
        return False

    async def acquire(self, timeout: float) -> None:
        """Wait for a slot, at most ``timeout`` seconds (raises ``TimeoutError`` after)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(timeout if math.isfinite(timeout) else None):
                await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as we gave up: pass it on
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):  # release() may have dropped it
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give a slot back: straight to the first waiter (so nobody can barge in), else free."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.in_use -= 1
