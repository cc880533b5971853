"""The proxy's state: the Router it serves, the state store it shares with it, its settings
(bind address, access keys, limits) and whether it is draining."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.obs import log
from router.server.generation import Generation
from router.server.keys import AccessKey, KeyRing, env_keys

if TYPE_CHECKING:  # at run time only as values: `router serve --help` imports no engine
    from router.engine.router import Router
    from router.state.base import StateStore

#: Largest request body accepted by default (base64 images make chat bodies big).
DEFAULT_MAX_BODY = 32 * 1024 * 1024
#: How long in-flight calls and streams may run on after SIGTERM, by default.
DEFAULT_DRAIN = 30.0
#: How long requests cut at the end of the drain get to write their last error event.
_CUT_GRACE = 2.0
#: How long a client may take to send a request head (from connecting, or from the previous
#: reply on a kept-alive connection), and then its body, by default.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """How ``router serve`` runs: address, access keys (``ROUTER_PROXY_KEYS``'s and a key
    file), body limit, drain timeout, how long a request head and body may take."""

    host: str = "127.0.0.1"
    port: int = 8080
    keys: frozenset[str] = field(default_factory=frozenset, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY
    drain_timeout: float = DEFAULT_DRAIN
    keys_file: Path | None = None
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    def cannot_listen(self, e: OSError) -> str:
        """The one line saying the address cannot be bound (``e`` from binding it)."""
        return f"router serve: cannot listen on {self.host}:{self.port}: {e.strerror or e}"


def keys_from_env(env: Mapping[str, str]) -> frozenset[str]:
    """The access keys of ``ROUTER_PROXY_KEYS`` (comma-separated; blanks ignored)."""
    return frozenset(k.strip() for k in env.get("ROUTER_PROXY_KEYS", "").split(",") if k.strip())


class Proxy:
    """One Router behind the HTTP API, with its store (for /readyz) and settings."""

    def __init__(self, router: Router, store: StateStore, settings: Settings,
                 file: Path | None = None) -> None:
        self.generation = Generation(router, store)
        self.settings = settings
        self.file = file
        self._env_keys = env_keys(settings.keys)
        self.keys = KeyRing(self._env_keys,
                            required=bool(settings.keys) or settings.keys_file is not None)
        #: The last reload's failure (file:line:col diagnostics) while the old plan serves.
        self.reload_errors: dict[str, list[str]] = {}
        self._retiring: set[Generation] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self.draining = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Future[None] | None = None  # a drain waiting for the last request
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def router(self) -> Router:
        """The Router in force (a request keeps the one it began with: ``lease``)."""
        return self.generation.router

    @property
    def store(self) -> StateStore:
        """The state store in force."""
        return self.generation.store

    def swap(self, router: Router, store: StateStore) -> Generation:
        """Put ``router`` in force (reload); the old generation closes when its requests
        end (its store too, unless ``store`` is the same)."""
        old = self.generation
        self.generation = Generation(router, store, old.number + 1)
        if old.retire(keep_store=store is old.store):
            self._close_later(old)
        else:
            self._retiring.add(old)
        return self.generation

    def set_file_keys(self, keys: list[AccessKey]) -> None:
        """The key file's keys (loaded or reloaded), beside ``ROUTER_PROXY_KEYS``'s."""
        self.keys = KeyRing([*self._env_keys, *keys], required=self.keys.required)

    def _close_later(self, gen: Generation) -> None:
        self._retiring.discard(gen)
        log.emit("plan_retired", generation=gen.number)
        task = asyncio.get_running_loop().create_task(gen.aclose())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def new_request_id(self) -> str:
        """A request id unique to this process (random prefix, counter)."""
        return f"req_{self._prefix}{next(self._ids):08x}"

    @property
    def in_flight(self) -> int:
        """Requests being answered right now."""
        return len(self._tasks)

    def begin(self, task: asyncio.Task[Any]) -> Generation:
        """A request began (its handler task): the generation in force, which it keeps to
        its end (a stream's too), counted as used until ``end``."""
        self._tasks.add(task)
        gen = self.generation
        gen.users += 1
        return gen

    def end(self, task: asyncio.Task[Any], gen: Generation) -> None:
        """A request on ``gen`` ended: a retired generation's last one closes it."""
        if gen.leave():
            self._close_later(gen)
        tasks = self._tasks
        tasks.discard(task)
        if not tasks and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def drain(self, timeout: float, hurry: asyncio.Event | None = None) -> int:
        """Wait up to ``timeout`` (or until ``hurry`` is set) for in-flight requests to end,
        then cancel those left (a stream then ends with its API's error event); returns how
        many were cut."""
        idle = self._idle = asyncio.get_running_loop().create_future()
        if not self._tasks:
            idle.set_result(None)
        waits: list[asyncio.Future[Any]] = [idle]
        if hurry is not None:
            waits.append(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._idle = None
            for w in waits:
                w.cancel()
        left = list(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=_CUT_GRACE)
        return len(left)

    async def aclose(self) -> None:
        """Close the Router in force (its pool) and any retiring one, then the stores they
        were lent; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            for gen in list(self._retiring):  # after the drain: nothing runs on them
                self._close_later(gen)
            if self._closers:
                await asyncio.gather(*self._closers, return_exceptions=True)
        finally:
            await self.generation.aclose()


__all__ = ["DEFAULT_BODY_TIMEOUT", "DEFAULT_DRAIN", "DEFAULT_HEADER_TIMEOUT",
           "DEFAULT_MAX_BODY", "KeyRing", "Proxy", "Settings", "keys_from_env"]
