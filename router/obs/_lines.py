"""Where the CLI's rendered events go: ``LineHandler``, a stream handler that can write its
lines in batches, and ``JsonLines``, which renders an event as the same JSON line structlog's
chain (``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``, ``JSONRenderer``) would,
without building a LogRecord and running the chain: a proxy logs a few events per request,
and that chain cost more CPU than the rest of its work.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import json
import logging
from typing import Any, TextIO

#: How long a batched line may wait for the write (``router serve``'s logs).
FLUSH_DELAY = 0.05
#: Lines held before they are written at once, however soon.
_MAX_HELD = 512
_UTC = datetime.UTC


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that, when ``batched``, holds the lines of a request's events (those
    with a ``request_id``, below WARNING) and writes them together: on a short timer of the
    running event loop, when many are held, before any other line, on ``flush()`` and at
    exit. Any other event (a reload, a worker, a failure) is written at once, so it is in the
    output as soon as its effect can be seen. Unbatched it writes and flushes each line."""

    def __init__(self, stream: TextIO, *, batched: bool = False) -> None:
        super().__init__(stream)
        self.batched = batched
        self._held: list[str] = []
        atexit.register(self._flush_at_exit)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = record.msg  # structlog's event dict (wrap_for_formatter)
            self.add(self.format(record), can_wait(record.levelno, event)
                     if isinstance(event, dict) else False)
        except Exception:
            self.handleError(record)

    def add(self, line: str, may_wait: bool) -> None:
        """Write ``line`` (a rendered event), now or (``may_wait``) with the next batch."""
        with self.lock:  # type: ignore[union-attr]  # made by createLock in __init__
            lines = self._held
            lines.append(line)
            if not (may_wait and self.batched) or len(lines) >= _MAX_HELD:
                self._write()
            elif len(lines) == 1:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    self._write()
                else:
                    loop.call_later(FLUSH_DELAY, self.flush_quietly)

    def failed(self, what: str) -> None:
        """Rendering or writing ``what`` failed: said as logging says it (on stderr, with
        the traceback), never raised to the code that logged."""
        self.handleError(logging.makeLogRecord({"msg": what}))

    def flush_quietly(self) -> None:
        """``flush``, a failure reported as ``failed`` (a timer's or a shutdown's)."""
        try:
            self.flush()
        except Exception:
            self.failed("batched lines")

    def flush(self) -> None:
        """Write the held lines (and flush the stream)."""
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _write(self) -> None:
        held, self._held = self._held, []
        stream = self.stream
        if held:
            stream.write("\n".join(held) + "\n")
        if hasattr(stream, "flush"):
            stream.flush()

    def _flush_at_exit(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # a stream closed first: nothing to do
            self.flush()

    def close(self) -> None:
        self._flush_at_exit()
        atexit.unregister(self._flush_at_exit)
        super().close()


def can_wait(level: int, fields: dict[str, Any]) -> bool:
    """Whether an event may wait for the next batch: a request's, below WARNING."""
    return level < logging.WARNING and "request_id" in fields


def _fallback(obj: Any) -> Any:
    """structlog's JSONRenderer's default: an object's ``__structlog__()``, else its repr."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


_LEVEL_NAMES = {logging.CRITICAL: "critical", logging.ERROR: "error",
                logging.WARNING: "warning", logging.INFO: "info", logging.DEBUG: "debug"}


class JsonLines:
    """Events rendered straight to JSON lines on ``handler``: the fields in the order given,
    then ``event``, ``level`` and ``timestamp`` (ISO 8601, UTC, ``Z``), as the structlog
    chain of ``configure_output("json")`` renders them."""

    def __init__(self, handler: LineHandler) -> None:
        import structlog

        self.handler = handler
        self._encode = json.JSONEncoder(default=_fallback).encode
        self._config = structlog.get_config

    def structlog_processors(self) -> object:
        """structlog's processor chain in force (``configure_output`` checks it is its own)."""
        return self._config()["processors"]

    def write(self, event: str, level: int, fields: dict[str, Any]) -> None:
        """Render one event (its fields already scrubbed) and hand it to the handler."""
        fields["event"] = event
        fields["level"] = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
        fields["timestamp"] = (datetime.datetime.now(tz=_UTC).isoformat()
                               .replace("+00:00", "Z"))
        try:
            self.handler.add(self._encode(fields), can_wait(level, fields))
        except Exception:  # as a logging handler does: the caller goes on
            self.handler.failed(event)


__all__ = ["FLUSH_DELAY", "JsonLines", "LineHandler", "can_wait"]
