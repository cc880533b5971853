"""Standard error for commands that also stream to standard output.

``HeldStream`` passes lines through until the answer starts on stdout, then keeps them until
it is done, so a log line never lands in the middle of streamed text on a terminal.
``Reporter`` writes the command's own lines (summary, errors) as human text or, with
``--log-format json``, as JSON lines like the log events, so stderr is one format only.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


class HeldStream:
    """A text stream that writes through to ``target`` except while held."""

    def __init__(self, target: TextIO | None = None) -> None:
        self._target = target
        self._held: list[str] | None = None

    @property
    def target(self) -> TextIO:
        # Looked up late: tests and callers may replace sys.stderr after construction.
        return self._target if self._target is not None else sys.stderr

    def write(self, text: str) -> int:
        if self._held is not None:
            self._held.append(text)
        else:
            self.target.write(text)
        return len(text)

    def flush(self) -> None:
        if self._held is None:
            self.target.flush()

    def hold(self) -> None:
        """Keep what is written from now on, until ``release``."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Write what was kept, in order, and write through again; safe to call twice."""
        held, self._held = self._held, None
        if held:
            self.target.write("".join(held))
        self.target.flush()


class Reporter:
    """The command's own stderr lines, in the format of the log events."""

    def __init__(self, fmt: str, stream: HeldStream | TextIO) -> None:
        self.json = fmt == "json"
        self._stream = stream

    def line(self, event: str, text: str, level: str = "info", **fields: Any) -> None:
        """``text`` for humans, or ``{"event": event, **fields}`` as one JSON line."""
        if self.json:
            record = {"event": event, "level": level, **fields,
                      "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            text = json.dumps(record, ensure_ascii=False, default=str)
        self._stream.write(text + "\n")
        self._stream.flush()

    def error(self, event: str, message: str, **fields: Any) -> None:
        """A failure: ``router: MESSAGE`` (the first line is the one that matters)."""
        self.line(event, f"router: {message}", level="error", message=message, **fields)


__all__ = ["HeldStream", "Reporter"]
