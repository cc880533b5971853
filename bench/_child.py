"""How a bench and its helper processes (bench/_server.py, bench/_forwarder.py) meet.

The child listens on 127.0.0.1, port 0, prints ``PORT <n>`` on stdout and serves until its
stdin closes, so it never outlives the bench that started it (even one that dies).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextmanager
def child_process(script: str, *args: str,
                  prefix: Sequence[str] = ()) -> Iterator[tuple[int, int]]:
    """Start ``bench/<script> ARGS`` (under ``prefix``, e.g. valgrind's command); yield
    (port, pid). Closing its stdin stops it."""
    proc = subprocess.Popen([*prefix, sys.executable, str(HERE / script), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"bench/{script} did not start: {line!r}")
        yield int(line.split()[1]), proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30 if prefix else 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def until_stdin_closes(port: int) -> None:
    """In the child: tell the parent ``port``, then return once the parent closes our stdin."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    def wait_stdin() -> None:  # the parent closes our stdin (or dies): time to go
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_stdin, daemon=True).start()
    await stop.wait()
