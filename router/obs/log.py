"""Router's events: structlog events sent through the stdlib logger ``router``.

As a library router prints nothing by default: when the ``router`` logger is not enabled for
INFO, an event costs one ``isEnabledFor`` check. Applications choose level, handlers and
rendering; the CLI picks console or JSON output with ``configure_output``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from router.obs import redact as _redact
from router.obs._lines import JsonLines, LineHandler

if TYPE_CHECKING:
    import structlog

_std = logging.getLogger("router")
# A library prints nothing unless the application asks: without this, Python's last-resort
# handler would print route_failed (a WARNING) to stderr of every application.
_std.addHandler(logging.NullHandler())
#: The level of events an application at WARNING must see (a call that failed in the end).
WARNING = logging.WARNING
_log: structlog.stdlib.BoundLogger | None = None  # made on the first enabled event
#: The JSON lines of ``configure_output("json")``, written without structlog's chain while
#: its configuration (the processors and the one handler) is still in force.
_json: JsonLines | None = None
_json_processors: object = None
#: structlog's live configuration object, read per event where ``structlog.get_config()``
#: would build a dict (set with ``_json``).
_structlog_config: Any = None


def _logger() -> structlog.stdlib.BoundLogger:
    global _log
    if _log is None:
        import structlog  # imported on first use: `import router` does not pay for it

        _log = structlog.wrap_logger(_std, wrapper_class=structlog.stdlib.BoundLogger)
    return _log


def add_secrets(values: Iterable[str]) -> None:
    """Register values (API keys, header values) that must never appear in an event or an
    error message (``router.obs.redact``'s registry)."""
    _redact.add_secrets(values)


def remove_secrets(values: Iterable[str]) -> None:
    """Undo one ``add_secrets(values)`` (when a Router closes)."""
    _redact.remove_secrets(values)


def _scrub(value: Any) -> Any:
    return _redact.redact(value) if isinstance(value, str) else value


def enabled(level: int = logging.INFO) -> bool:
    return _std.isEnabledFor(level)


def emit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with key-values (None values dropped, secrets scrubbed)."""
    emit_fields(event, fields, level)


def emit_fields(event: str, fields: dict[str, Any], level: int = logging.INFO) -> None:
    """``emit(event, level, **fields)`` for a dict the caller hands over (it may be changed):
    no repacking of the key-values (a record's ``as_dict()``, once per attempt)."""
    if not _std.isEnabledFor(level):
        return
    lines = _json
    if lines is not None:
        # configure_output("json")'s setup still stands (a test's capture_logs or an
        # application's own structlog or logging setup since then takes the events)?
        handlers = _std.handlers
        if (len(handlers) == 1 and handlers[0] is lines.handler
                and _structlog_config.default_processors is _json_processors):
            lines.write(event, level, fields)  # drops the None values, scrubs
            return
    clean = {k: v for k, v in fields.items() if v is not None}
    # One search over the string values joined (NUL is no token character: a secret found
    # in one value is found there too) instead of a redaction pass over each.
    texts = [v for v in clean.values() if isinstance(v, str)]
    if texts and _redact.holds_secret("\0".join(texts)):
        clean = {k: _scrub(v) for k, v in clean.items()}
    _logger().log(level, event, **clean)


def batch_lines(on: bool) -> None:
    """Write ``configure_output``'s lines in batches, on a short timer of the running loop
    (``router serve`` while it serves: one write a batch, not a flush per event; warnings
    and errors still at once), or (``on`` False) write what is held and each line again."""
    for handler in _std.handlers:
        if isinstance(handler, LineHandler):
            handler.batched = on
            if not on:
                handler.flush_quietly()


def configure_output(fmt: Literal["console", "json"] = "console", level: int = logging.INFO,
                     stream: Any = None) -> None:
    """Render router's events to ``stream`` (stderr) as console lines or JSON lines (CLI use);
    each line is written at once until ``batch_lines(True)``."""
    global _json, _json_processors, _structlog_config
    import structlog
    from structlog import _config

    processors: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(processors=processors, logger_factory=structlog.stdlib.LoggerFactory(),
                        cache_logger_on_first_use=False)
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    handler = LineHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    for old in _std.handlers:
        if isinstance(old, LineHandler):
            old.close()  # its held lines are written first
    _std.handlers[:] = [handler]
    _std.setLevel(level)
    _std.propagate = False
    _json = JsonLines(handler) if fmt == "json" else None
    _json_processors = processors
    # structlog's own object, read per event where get_config() would build a dict (2-3k
    # CPU instructions, a tenth of an event's line)
    _structlog_config = _config._CONFIG  # noqa: SLF001
