"""The proxy's state: the Router it serves, the state store it shares with it, its settings
(bind address, access keys, limits) and whether it is draining."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time only as values: `router serve --help` imports no engine
    from router.engine.router import Router
    from router.state.base import StateStore

#: Largest request body accepted by default (base64 images make chat bodies big).
DEFAULT_MAX_BODY = 32 * 1024 * 1024
#: How long in-flight calls and streams may run on after SIGTERM, by default.
DEFAULT_DRAIN = 30.0
#: How long requests cut at the end of the drain get to write their last error event.
_CUT_GRACE = 2.0


@dataclass(frozen=True)
class Settings:
    """How ``router serve`` runs: address, access keys, body limit, drain timeout."""

    host: str = "127.0.0.1"
    port: int = 8080
    keys: frozenset[str] = field(default_factory=frozenset, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY
    drain_timeout: float = DEFAULT_DRAIN


def keys_from_env(env: Mapping[str, str]) -> frozenset[str]:
    """The access keys of ``ROUTER_PROXY_KEYS`` (comma-separated; blanks ignored)."""
    return frozenset(k.strip() for k in env.get("ROUTER_PROXY_KEYS", "").split(",") if k.strip())


class KeyRing:
    """Access keys held as SHA-256 digests, compared in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(k) for k in keys)

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def allows(self, presented: Iterable[str]) -> bool:
        """Whether any presented key is one of the ring's."""
        found = False
        for key in presented:
            d = _digest(key)
            for mine in self._digests:  # no early exit: the time does not say which matched
                found |= hmac.compare_digest(d, mine)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Proxy:
    """One Router behind the HTTP API, with its store (for /readyz) and settings."""

    def __init__(self, router: Router, store: StateStore, settings: Settings,
                 file: Path | None = None) -> None:
        self.router = router
        self.store = store
        self.settings = settings
        self.file = file
        self.keys = KeyRing(settings.keys)
        self.draining = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self._closed = False

    def new_request_id(self) -> str:
        """A request id unique to this process (random prefix, counter)."""
        return f"req_{self._prefix}{next(self._ids):08x}"

    @property
    def in_flight(self) -> int:
        """Requests being answered right now."""
        return len(self._tasks)

    def enter(self, task: asyncio.Task[Any]) -> None:
        """A request began (its handler task)."""
        self._tasks.add(task)
        self._idle.clear()

    def leave(self, task: asyncio.Task[Any]) -> None:
        """A request ended."""
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def drain(self, timeout: float, hurry: asyncio.Event | None = None) -> int:
        """Wait up to ``timeout`` (or until ``hurry`` is set) for in-flight requests to end,
        then cancel those left (a stream then ends with its API's error event); returns how
        many were cut."""
        waits = [asyncio.ensure_future(self._idle.wait())]
        if hurry is not None:
            waits.append(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        left = list(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=_CUT_GRACE)
        return len(left)

    async def aclose(self) -> None:
        """Close the Router (its pool), then the store it was lent; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.router.aclose()
        finally:
            await self.store.aclose()


__all__ = ["DEFAULT_DRAIN", "DEFAULT_MAX_BODY", "KeyRing", "Proxy", "Settings",
           "keys_from_env"]
