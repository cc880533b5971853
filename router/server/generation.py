"""One loaded route file: its Router and the state store it was lent, with the requests
using it. A reload puts a new Generation in force; the old one serves the requests (and open
streams) that began on it, and is closed once the last of them ends."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time only as values: `router serve --help` imports no engine
    from router.engine.router import Router
    from router.state.base import StateStore


class Generation:
    """A Router in force (or retiring), counting the requests that use it."""

    def __init__(self, router: Router, store: StateStore, number: int = 1) -> None:
        self.router = router
        self.store = store
        self.number = number
        self.users = 0  # requests using it (Proxy.begin counts them in)
        self.retired = False
        self.owns_store = True  # False once a newer generation took the same store over
        self._closed = asyncio.Event()
        self._closing = False

    def leave(self) -> bool:
        """A request ended; True when that was a retired generation's last."""
        self.users -= 1
        return self.retired and self.users == 0

    def retire(self, *, keep_store: bool) -> bool:
        """No new requests; ``keep_store``: a newer generation uses the store. True when
        nothing runs on it any more (close it now)."""
        self.retired = True
        self.owns_store = not keep_store
        return self.users == 0

    async def aclose(self) -> None:
        """Close the Router (its pool), then the store when still ours; safe to call twice."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await self.router.aclose()
        finally:
            try:
                if self.owns_store:
                    await self.store.aclose()
            finally:
                self._closed.set()


__all__ = ["Generation"]
