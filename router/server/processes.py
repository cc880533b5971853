"""How ``router serve`` runs as processes: the event loop (uvloop's when it is installed), and
``--workers N``: a small parent that starts N worker processes on one port and waits.

Each worker is a whole proxy (its own Router, pool and breakers) that binds the port with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers; budgets, rate limits
and (with ``share_breakers``) breakers are shared through the route file's state store. We
chose this over a pre-fork server (gunicorn's aiohttp worker) because it keeps one serving
path for one worker and for N (``router.server.run.serve``: its drain, hot reload and signal
handling unchanged), adds no dependency, and spreads load evenly where a shared accept socket
wakes the busiest worker first. Linux, the BSDs and macOS have ``SO_REUSEPORT``.

The parent binds the port first (without listening) so a port in use fails once, clearly,
and ``--port 0`` names one port for every worker. It gives the workers a private
``PROMETHEUS_MULTIPROC_DIR`` (removed at exit) so /metrics on any worker aggregates all of
them, forwards SIGTERM, SIGINT and SIGHUP, restarts a worker that dies after it started, and
exits when every worker has. Workers run in their own session: a terminal's Ctrl-C reaches
the parent only, which forwards it once. A worker whose parent dies (its stdin closes) drains
and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from router.errors import ConfigError
from router.obs import log
from router.obs.metrics import MULTIPROC_ENV, mark_worker_dead
from router.server.proxy import Settings

T = TypeVar("T")
_READY = b"ready\n"
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: The worker's entry point, run by ``python -c`` (a fresh interpreter: no state inherited).
_WORKER_CODE = "from router.server.processes import worker_main; raise SystemExit(worker_main())"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when uvloop is installed (``routeyard[uvloop]``), else None (asyncio's)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new event loop (uvloop's when installed)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)


# -- the parent ----------------------------------------------------------------------------

def unshared_state(path: Path) -> str | None:
    """Why route file ``path`` cannot be served by several workers (budgets or rate limits
    kept in memory would be per worker), or None. Raises ConfigError for a bad file, once,
    before any worker starts."""
    from router.config.validate import validate_file

    result = validate_file(path)
    if result.plan is None:
        raise ConfigError(f"{path}: errors in the route file", result.errors)
    plan = result.plan
    if plan.state.kind != "memory":
        return None
    limited = any(t.rate_limits for r in plan.routes.values() for t in r.targets)
    budgets = bool(plan.budgets) or any(r.budgets for r in plan.routes.values())
    if not (limited or budgets):
        return None
    what = "budgets" if budgets else "rate limits"
    return (f"{what} need a state store the workers share: set state: {{kind: redis, url: "
            f"...}} (or sqlite on one host) in {path}, or run one worker")



@dataclasses.dataclass
class _Worker:
    slot: int
    process: asyncio.subprocess.Process
    ready: bool = False


class Supervisor:
    """The parent of ``router serve --workers N``."""

    def __init__(self, path: Path, settings: Settings, workers: int, log_format: str,
                 announce: Callable[[str], None]) -> None:
        self.path = path
        self.settings = settings
        self.count = workers
        self.log_format = log_format
        self.announce = announce
        self.stopping = False
        self.failed = False
        self._workers: dict[int, _Worker] = {}
        self._metrics_dir = ""
        self._env: dict[str, str] = {}

    async def run(self) -> int:
        """Start the workers, wait for all of them to exit; 0 when they ended cleanly."""
        placeholders = reserve_port(self.settings.host, self.settings.port)
        port = placeholders[0].getsockname()[1]
        self.settings = dataclasses.replace(self.settings, port=port)
        self._metrics_dir = tempfile.mkdtemp(prefix="router-metrics-")
        self._env = {**os.environ, MULTIPROC_ENV: self._metrics_dir}
        log.emit("workers_starting", workers=self.count, port=self.settings.port,
                 metrics_dir=self._metrics_dir)
        loop = asyncio.get_running_loop()
        try:
            for sig in _FORWARDED:
                loop.add_signal_handler(sig, self._forward, sig)
            results = await asyncio.gather(*(self._keep(slot) for slot in range(self.count)))
        finally:
            for sig in _FORWARDED:
                loop.remove_signal_handler(sig)
            for sock in placeholders:
                sock.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        log.emit("workers_stopped", workers=self.count)
        return 1 if self.failed or any(results) else 0

    async def _keep(self, slot: int) -> int:
        """Run worker ``slot``, again after a crash, until the parent stops; its exit code."""
        code = 0
        while not self.stopping:
            worker = await self._start(slot)
            code = await worker.process.wait()
            mark_worker_dead(worker.process.pid, self._metrics_dir)
            if self.stopping:
                return code
            if not worker.ready:  # it could not start (port, store, file): no point retrying
                log.emit("worker_failed", level=logging.ERROR, pid=worker.process.pid,
                         exit_code=code)
                self.failed = True
                self._forward(signal.SIGTERM)
                return code
            log.emit("worker_exited", level=logging.WARNING, pid=worker.process.pid,
                     exit_code=code, restarting=True)
        return code

    async def _start(self, slot: int) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER_CODE, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=self._env, start_new_session=True)
        assert process.stdin is not None and process.stdout is not None
        worker = self._workers[slot] = _Worker(slot, process)
        if self.stopping:  # a signal came while it was starting
            process.send_signal(signal.SIGTERM)
        # The settings (access keys included) go through the pipe, never argv or the
        # environment; the pipe stays open: its end tells the worker the parent is gone.
        process.stdin.write(pickle.dumps((self.path, self.settings, self.log_format)))
        await process.stdin.drain()
        log.emit("worker_started", pid=process.pid, slot=slot)
        if await process.stdout.readline() == _READY:
            worker.ready = True
            self._announce_when_all_ready()
        return worker

    def _announce_when_all_ready(self) -> None:
        if len(self._workers) == self.count and all(w.ready for w in self._workers.values()):
            host = self.settings.host
            host = f"[{host}]" if ":" in host else host
            self.announce(f"http://{host}:{self.settings.port} ({self.count} workers)")

    def _forward(self, sig: int) -> None:
        if sig != signal.SIGHUP:
            self.stopping = True
        for w in self._workers.values():
            if w.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(sig)


def reserve_port(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to ``port`` on every address of ``host`` (as aiohttp binds them), with
    SO_REUSEPORT and not listening (they take no connections): the port is ours for the
    workers, and a port in use is an error now. Port 0: the first address picks one."""
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if held[0] is not sock:
                address = (address[0], held[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


# -- a worker ------------------------------------------------------------------------------

def worker_main() -> int:
    """A worker: read its settings from stdin, serve on the shared port until told to stop
    (a signal forwarded by the parent, or the parent gone)."""
    # pickle.load reads exactly the pickle: stdin stays open after it (see _parent_gone).
    path, settings, log_format = pickle.load(sys.stdin.buffer)
    log.configure_output(log_format)
    return run_async(_serve_worker(path, settings))


async def _serve_worker(path: Path, settings: Settings) -> int:
    from router.server.run import run_proxy

    orphaned = asyncio.get_running_loop().create_task(_parent_gone())
    try:
        return await run_proxy(path, settings, _ready, reuse_port=True)
    finally:
        orphaned.cancel()


def _ready(_url: str) -> None:
    """Tell the parent this worker listens (the parent announces the one URL)."""
    os.write(sys.stdout.fileno(), _READY)


async def _parent_gone() -> None:
    """Stop (as on SIGTERM) once stdin ends: the parent exited or was killed."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["Supervisor", "event_loop_factory", "reserve_port", "run_async", "unshared_state",
           "worker_main"]
