"""Hot reload of the route file and the key file, on SIGHUP and when either changes.

Each file is polled about once a second (its device, inode, size and modification time: an
editor's rename, a ``cp`` over it and a Kubernetes ConfigMap's symlink swap all change one of
them). Polling needs no new dependency and no platform watcher, and a second's delay is
nothing next to a deploy; one ``stat`` a second costs nothing either.

A new route file is validated first. If it has errors the old plan stays in force, the
diagnostics (``file:line:col: error[E...] ...``) are logged and /readyz shows them until a
good file comes. If it is good, a new Router takes new requests (the same state store when
the file's ``state:`` did not change, so budgets, rate limits and shared breakers go on), and
the old Router finishes the calls and streams that began on it, then closes
(router.server.generation). A bad key file likewise keeps the old keys.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from router.config.validate import validate_file
from router.diagnostics import sort_key
from router.engine.router import Router
from router.errors import ConfigError
from router.obs import log
from router.server.keys import KeyFileError, load_key_file
from router.server.proxy import Proxy
from router.state import make_store
from router.state.base import StateStore

#: Seconds between two looks at the files.
POLL_INTERVAL = 1.0

Signature = tuple[int, int, int, int] | None


def signature(path: Path) -> Signature:
    """What changes when the file does (None: it cannot be read now)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class Reloader:
    """Watches the proxy's route file and key file; ``poke`` (SIGHUP) reloads both now."""

    def __init__(self, proxy: Proxy, interval: float = POLL_INTERVAL) -> None:
        self.proxy = proxy
        self.interval = interval
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        keys_file = proxy.settings.keys_file
        self._routes = signature(proxy.file) if proxy.file is not None else None
        self._keys = signature(keys_file) if keys_file is not None else None

    def poke(self) -> None:
        """Reload both files at once, changed or not (SIGHUP)."""
        self._wake.set()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            forced = False
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
                forced = True
                self._wake.clear()
            except TimeoutError:
                pass
            await self.check(forced)

    async def check(self, forced: bool = False) -> None:
        """Reload each file that changed since the last look (every file when ``forced``)."""
        async with self._lock:
            proxy = self.proxy
            if proxy.file is not None:
                now = signature(proxy.file)
                if forced or now != self._routes:
                    self._routes = now
                    await self.reload_routes(proxy.file)
            keys_file = proxy.settings.keys_file
            if keys_file is not None:
                now = signature(keys_file)
                if forced or now != self._keys:
                    self._keys = now
                    self.reload_keys(keys_file)

    async def reload_routes(self, path: Path) -> bool:
        """Validate ``path`` and put its plan in force; False (old plan kept) on errors."""
        try:
            router, store = await self._open(path)
        except ConfigError as e:
            errors = [d.format_text() for d in sorted(e.diagnostics, key=sort_key)] or [str(e)]
            self._failed("routes", path, errors)
            return False
        except Exception as e:  # never let a reload take the proxy down
            self._failed("routes", path, [f"{path}: {type(e).__name__}: {e}"])
            return False
        gen = self.proxy.swap(router, store)
        self.proxy.reload_errors.pop("routes", None)
        log.emit("routes_reloaded", file=str(path), aliases=len(router.plan.routes),
                 generation=gen.number)
        return True

    async def _open(self, path: Path) -> tuple[Router, StateStore]:
        result = validate_file(path)
        if result.plan is None:
            raise ConfigError(f"{path}: errors in the route file", result.errors)
        old = self.proxy.generation
        st = result.plan.state
        if st == old.router.plan.state:
            return Router.from_result(result, store=old.store, call_events=False), old.store
        store = make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix)
        try:
            return Router.from_result(result, store=store, call_events=False), store
        except BaseException:
            await store.aclose()
            raise

    def reload_keys(self, path: Path) -> bool:
        """Load ``path``'s keys in place of the old ones; False (old keys kept) on errors."""
        try:
            keys = load_key_file(path)
        except KeyFileError as e:
            self._failed("keys", path, [str(e)])
            return False
        self.proxy.set_file_keys(keys)
        self.proxy.reload_errors.pop("keys", None)
        log.emit("keys_reloaded", file=str(path), keys=len(keys))
        return True

    def _failed(self, what: str, path: Path, errors: list[str]) -> None:
        self.proxy.reload_errors[what] = errors
        log.emit(f"{what}_reload_failed", level=logging.WARNING, file=str(path), errors=errors,
                 kept="the previous " + ("plan" if what == "routes" else "keys"))


__all__ = ["POLL_INTERVAL", "Reloader", "signature"]
