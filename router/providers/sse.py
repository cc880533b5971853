"""Incremental, pure decoders for streamed bodies: Server-Sent Events and NDJSON.

Feed them bytes in pieces of any size (a split may fall inside a UTF-8 character or between
``\\r`` and ``\\n``); they return whole events or objects. No sockets, no asyncio: a provider
reads bytes from the network and feeds them here, and tests feed them directly.

Each decoder scans every byte once: a partial line stays in the buffer and the next search
starts where the previous one stopped, so a long line fed byte by byte is not re-scanned.

Each decoder holds at most about its cap (``max_event_bytes`` / ``max_line_bytes``) of one
event or line: more raises ``ServerError`` ("reply larger than N bytes") at once, so a server
that never ends an event cannot make us buffer without bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from router.errors import ServerError
from router.providers._json import loads_json

__all__ = ["MAX_EVENT_BYTES", "Malformed", "NDJSONDecoder", "SSEDecoder", "ServerSentEvent"]

MAX_EVENT_BYTES = 1 << 20  # 1 MiB: far above any real event (a whole tool call's JSON included)

_EOL = re.compile(rb"[\r\n]")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched SSE event: ``data`` lines joined with ``\\n``; ``id`` is the last event id."""

    event: str | None = None
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return loads_json(self.data)


@dataclass(frozen=True, slots=True)
class Malformed:
    """Stands for a stream event or line that is not JSON, where a lenient reader skips it
    (the template counts it). ``excerpt``: its first characters, for an error message only."""

    excerpt: str


class _LineSplitter:
    """Splits a byte stream into lines ending in ``\\n``, ``\\r\\n`` or ``\\r``, incrementally."""

    __slots__ = ("_buf", "_scan", "_skip_lf")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already searched for a line end
        self._skip_lf = False  # the last line ended with "\r": a "\n" right after belongs to it

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        buf = self._buf
        buf += data
        if self._skip_lf and buf[:1] == b"\n":
            del buf[:1]
        self._skip_lf = False
        lines: list[bytes] = []
        start = 0
        match = _EOL.search(buf, self._scan)
        while match is not None:
            end = match.start()
            lines.append(bytes(buf[start:end]))
            if buf[end] == 0x0D:  # "\r": swallow a following "\n", even one not yet received
                if end + 1 == len(buf):
                    self._skip_lf = True
                    start = end + 1
                    break
                start = end + 2 if buf[end + 1] == 0x0A else end + 1
            else:
                start = end + 1
            match = _EOL.search(buf, start)
        if start:
            del buf[:start]
        self._scan = len(buf)
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held back."""
        return len(self._buf)

    def flush(self) -> bytes | None:
        """The unterminated last line, if any (end of stream)."""
        if not self._buf:
            return None
        rest = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return rest


class SSEDecoder:
    """Turns bytes into ``ServerSentEvent`` s, following the WHATWG event-stream rules.

    Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
    An event is dispatched at a blank line when it has at least one ``data`` line (as the spec
    says); ``:`` lines are comments; unknown fields are ignored; a bad ``retry`` is ignored.
    """

    __slots__ = ("_data", "_event", "_last_id", "_lines", "_max", "_retry", "_size", "_started")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._lines = _LineSplitter()
        self._max = max_event_bytes
        self._size = 0  # bytes of the data lines of the event being built
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None  # kept across events, as the spec says
        self._retry: int | None = None
        self._started = False

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode a piece of the stream; return the events it completed (often none)."""
        events: list[ServerSentEvent] = []
        for raw in self._lines.feed(data):
            if self._started and raw[:6] == b"data: ":
                # The common line, as _decode_line reads it (a "data" field, one space off).
                self._data.append(raw[6:].decode("utf-8", errors="replace"))
                self._size += len(raw)
                event = None
            elif self._started and not raw:  # a blank line: dispatch
                event = self._dispatch()
            else:
                event = self._decode_line(raw)
            if event is not None:
                events.append(event)
            elif self._size > self._max:
                raise _too_large(self._max)
        if self._lines.pending + self._size > self._max:
            raise _too_large(self._max)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: decode an unterminated last line and dispatch a pending event.

        The spec discards an event not closed by a blank line; we dispatch it, as openai-python
        does, because some OpenAI-compatible servers omit the final blank line. Callers detect
        truncation from the payload (e.g. no ``[DONE]``), not from the framing.
        """
        events: list[ServerSentEvent] = []
        rest = self._lines.flush()
        if rest is not None:
            self._decode_line(rest)
        event = self._decode_line(b"")
        if event is not None:
            events.append(event)
        return events

    def _decode_line(self, raw: bytes) -> ServerSentEvent | None:
        # Lines end in ASCII bytes, so a complete line never splits a UTF-8 character.
        line = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(raw)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = None
            return None
        event = ServerSentEvent(
            event=self._event or None,
            data="\n".join(self._data),
            id=self._last_id,
            retry=self._retry,
        )
        self._data = []
        self._size = 0
        self._event = None
        self._retry = None
        return event


class NDJSONDecoder:
    """Turns newline-delimited JSON bytes into parsed values (blank lines are skipped).

    A line that is not JSON raises ``ValueError`` naming its line number and a short excerpt;
    with ``lenient``, a complete line that is not JSON gives a ``Malformed`` in its place
    instead (an unterminated last line still raises: the stream was cut inside it).
    """

    __slots__ = ("_lenient", "_line_no", "_lines", "_max")

    def __init__(self, *, max_line_bytes: int = MAX_EVENT_BYTES, lenient: bool = False) -> None:
        self._lines = _LineSplitter()
        self._line_no = 0
        self._max = max_line_bytes
        self._lenient = lenient

    def feed(self, data: bytes) -> list[Any]:
        """Decode a piece of the stream; return the values of the lines it completed."""
        out: list[Any] = []
        for raw in self._lines.feed(data):
            if len(raw) > self._max:
                raise _too_large(self._max)
            self._parse(raw, out)
        if self._lines.pending > self._max:
            raise _too_large(self._max)
        return out

    def flush(self) -> list[Any]:
        """End of stream: parse an unterminated last line."""
        out: list[Any] = []
        rest = self._lines.flush()
        if rest is not None:
            self._parse(rest, out, last=True)
        return out

    def _parse(self, raw: bytes, out: list[Any], last: bool = False) -> None:
        self._line_no += 1
        if not raw.strip():
            return
        try:
            out.append(loads_json(raw))
        except ValueError as e:
            excerpt = raw[:80].decode("utf-8", errors="replace")
            if self._lenient and not last:
                out.append(Malformed(excerpt))
                return
            raise ValueError(
                f"NDJSON line {self._line_no} is not valid JSON ({e}): {excerpt!r}"
            ) from e


def _too_large(limit: int) -> ServerError:
    return ServerError(f"reply larger than {limit} bytes in one stream event")
