"""Where the CLI's rendered events go: ``LineHandler``, a stream handler that can write its
lines in batches, and ``JsonLines``, which renders an event as one compact JSON line with the
fields, keys and values structlog's chain (``add_log_level``, ``TimeStamper(fmt="iso",
utc=True)``, ``JSONRenderer``) would give, without building a LogRecord and running the chain:
a proxy logs a few events per request, and that chain cost more CPU than the rest of its work.

A line is rendered by orjson when every value is a plain ``str``, ``int``, ``bool`` or
``float``: those it renders as ``json`` does, byte for byte, except a float below 1e-4 (orjson
writes ``4.8e-6`` and ``0.00001``, repr ``4.8e-06`` and ``1e-05``), which goes in as repr's
digits. Any other value (a list, an enum, an object) and any line orjson would write otherwise
(non-ASCII text, DEL, NaN) is rendered by ``json`` with the same compact separators, so the
bytes never depend on which renderer made them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from router.obs import redact as _redact
from router.secret import secret_values as _secret_values

#: How long a batched line may wait for the write (``router serve``'s logs).
FLUSH_DELAY = 0.05
#: Lines held before they are written at once, however soon.
_MAX_HELD = 512
_UTC = datetime.UTC
_WARNING = logging.WARNING
# Floats that orjson and repr write alike: 0.0 and 1e-4 <= |x| < inf. (Bound once, as are
# the callables below: a global or attribute lookup per event is a cost worth saving.)
_TINY = 1e-4
_MINUS_TINY = -_TINY
_INF = float("inf")
_MINUS_INF = -_INF
_Fragment = orjson.Fragment
_float_repr = float.__repr__
_dumps = orjson.dumps
_OPT_UTC_Z = orjson.OPT_UTC_Z
_now = datetime.datetime.now


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
        lock = self.lock
        lock.acquire()  # type: ignore[union-attr]  # made by createLock in __init__
        try:
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
        finally:
            lock.release()  # type: ignore[union-attr]

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
#: ``json``'s rendering with the separators of orjson's (what the orjson path must equal).
_encode: Callable[[Any], str] = json.JSONEncoder(default=_fallback, separators=(",", ":")).encode


class JsonLines:
    """Events rendered straight to JSON lines on ``handler``: the fields in the order given
    (None values dropped, configured secrets scrubbed), then ``event``, ``level`` and
    ``timestamp`` (ISO 8601, UTC, ``Z``), as the structlog chain of
    ``configure_output("json")`` renders them."""

    def __init__(self, handler: LineHandler) -> None:
        self.handler = handler

    def write(self, event: str, level: int, fields: dict[str, Any]) -> None:
        """Render one event and hand it to the handler. ``fields`` is the caller's own dict
        (it is changed): None values are dropped here and string values scrubbed."""
        # One pass over the values, the commonest kinds first (each test costs, per event).
        texts = []
        drop: list[str] | None = None
        tiny: list[tuple[str, float]] | None = None
        plain = True  # every value is one orjson renders as json does
        for key, value in fields.items():
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif kind is int or kind is bool:
                pass
            elif kind is float:
                if not _TINY <= value < _INF:
                    if _MINUS_TINY < value < _TINY:
                        if value:  # 0.0 and -0.0 are written alike
                            tiny = [(key, value)] if tiny is None else [*tiny, (key, value)]
                            fields[key] = _Fragment(_float_repr(value))
                    elif not _MINUS_INF < value <= _MINUS_TINY:
                        plain = False  # NaN, Infinity: json's own words
            elif value is None:
                drop = [key] if drop is None else [*drop, key]
            else:
                plain = False
                if isinstance(value, str):
                    texts.append(value)
        if drop is not None:
            for key in drop:
                del fields[key]
        # One search over the string values joined (NUL is no token character: a secret found
        # in one value is found there too) instead of a redaction pass over each.
        # A secret is in the text only if one of the values is a substring: a few fast
        # substring searches decide most events without the pattern's (costlier) search.
        if texts:
            joined = "\0".join(texts)
            for secret in _secret_values():
                if secret in joined:
                    if _redact.holds_secret(joined):
                        for key, value in fields.items():
                            if isinstance(value, str):
                                fields[key] = _redact.redact(value)
                    break
        may_wait = level < _WARNING and "request_id" in fields
        fields["event"] = event
        fields["level"] = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
        now = _now(_UTC)
        line = None
        try:
            if plain:
                fields["timestamp"] = now
                try:
                    out = _dumps(fields, option=_OPT_UTC_Z)
                except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits
                    pass
                else:
                    # json escapes what is not ASCII, and DEL; orjson writes them as they are
                    if out.isascii() and 127 not in out:
                        line = out.decode()
            if line is None:
                if tiny is not None:
                    fields.update(tiny)
                fields["timestamp"] = now.isoformat().replace("+00:00", "Z")
                line = _encode(fields)
            self.handler.add(line, may_wait)
        except Exception:  # as a logging handler does: the caller goes on
            self.handler.failed(event)


__all__ = ["FLUSH_DELAY", "JsonLines", "LineHandler", "can_wait"]
