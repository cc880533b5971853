"""Running the proxy: build the Router and its store from a route file, listen, and on
SIGTERM (or SIGINT) drain: stop accepting, let in-flight calls and streams finish up to the
drain timeout (a second signal ends it at once), then close the Router's connections and the
store."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from router.config.validate import validate_file
from router.engine.router import Router
from router.errors import ConfigError
from router.obs import log
from router.server.app import create_app
from router.server.keys import KeyFileError, load_key_file
from router.server.proxy import Proxy, Settings
from router.server.reload import Reloader
from router.state import make_store

#: Net new container objects before the collector's youngest pass (Python's default: 700).
_GC_YOUNG = 10_000
#: How long the runner's cleanup waits for a connection after the drain (its handler done).
_CLOSE_TIMEOUT = 1.0


async def open_proxy(path: Path, settings: Settings) -> Proxy:
    """The Proxy of route file ``path``: a Router sharing one state store with /readyz.
    Raises ConfigError listing the file's errors, KeyFileError for a bad key file."""
    file_keys = load_key_file(settings.keys_file) if settings.keys_file is not None else []
    result = validate_file(path)
    if result.plan is None:
        raise ConfigError(f"{path}: errors in the route file", result.errors)
    st = result.plan.state
    store = make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix)
    try:
        router = Router.from_result(result, store=store, call_events=False)
    except BaseException:
        await store.aclose()
        raise
    log.add_secrets(settings.keys)  # an access key never appears in a log line
    proxy = Proxy(router, store, settings, path)
    proxy.set_file_keys(file_keys)
    return proxy


async def run_proxy(path: Path, settings: Settings, announce: Callable[[str], None], *,
                    reuse_port: bool = False) -> int:
    """Open the proxy of route file ``path`` and serve it until it is stopped (``serve``):
    0; 2 for a bad key file, 1 when the address cannot be bound, each said in one line on
    stderr."""
    try:
        proxy = await open_proxy(path, settings)
    except KeyFileError as e:
        print(f"router serve: {e}", file=sys.stderr)
        return 2
    try:
        await serve(proxy, announce, reuse_port=reuse_port)
    except OSError as e:
        print(settings.cannot_listen(e), file=sys.stderr)
        return 1
    return 0


async def serve(proxy: Proxy, announce: Callable[[str], None], *,
                reuse_port: bool = False) -> None:
    """Serve ``proxy`` until SIGTERM or SIGINT, then drain; ``announce`` gets each URL the
    proxy listens on (``reuse_port``: beside other workers, SO_REUSEPORT). The proxy is
    closed on return, whatever happened."""
    settings = proxy.settings
    runner = await _runner(proxy)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloader = Reloader(proxy)
    watch = loop.create_task(reloader.run())
    try:
        await web.TCPSite(runner, settings.host, settings.port,
                          reuse_port=reuse_port or None).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reloader.poke)
        for host, port, *_ in runner.addresses:
            announce(f"http://{_bracketed(host)}:{port}")
        log.emit("proxy_started", addresses=[f"{a[0]}:{a[1]}" for a in runner.addresses],
                 file=str(proxy.file), aliases=len(proxy.router.plan.routes),
                 access_keys=proxy.keys.required,
                 loop=type(loop).__module__.partition(".")[0])  # uvloop or asyncio
        _steady()
        await stop.wait()
        log.batch_lines(False)
        stop.clear()  # a second signal ends the drain at once
        watch.cancel()
        await _drain(runner, proxy, stop)
    finally:
        log.batch_lines(False)
        watch.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stop listening, drain, then close the proxy (on_cleanup)
        log.emit("proxy_stopped")


async def _runner(proxy: Proxy) -> web.AppRunner:
    """The proxy's runner, set up (the proxy is closed if that fails)."""
    # The drain happens before the runner's cleanup (Proxy.drain), which then only closes
    # connections: its own shutdown would not let a cut stream say so.
    # aiohttp's keep-alive timer runs from a connection's start (and from each reply) until
    # a whole request head has come: as the header timeout, it disconnects a slow-loris
    # client (and an idle kept-alive connection; clients' pools expire theirs sooner, 5 s).
    runner = web.AppRunner(create_app(proxy), handler_cancellation=True, access_log=None,
                           shutdown_timeout=_CLOSE_TIMEOUT, handle_signals=False,
                           keepalive_timeout=proxy.settings.header_timeout)
    try:
        await runner.setup()
    except BaseException:
        await proxy.aclose()
        raise
    return runner


async def _drain(runner: web.AppRunner, proxy: Proxy, hurry: asyncio.Event) -> None:
    proxy.draining = True
    log.emit("proxy_draining", in_flight=proxy.in_flight,
             drain_timeout_s=proxy.settings.drain_timeout)
    for site in list(runner.sites):
        await site.stop()  # no new connections; kept-alive ones get 503 while draining
    cut = await proxy.drain(proxy.settings.drain_timeout, hurry)
    if cut:
        log.emit("proxy_drain_cut", level=logging.WARNING, requests=cut)


def _steady() -> None:
    """Set the process up to serve many requests: the heap built so far (modules, the plan)
    is frozen, so the collector's full passes no longer walk it (tens of ms each, several a
    minute under load), and its youngest pass waits for more new objects (64 requests in
    flight cross the default 700 in every few calls; a request leaves no cycles behind, so
    those passes found nothing); a request's events are written a batch at a time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
    log.batch_lines(True)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["open_proxy", "run_proxy", "serve"]
