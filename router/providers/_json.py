"""JSON off the wire: ``json.loads``' value and errors, without its three Python-level layers
(``loads`` -> ``decode`` -> ``raw_decode``) on every reply and every stream event."""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from typing import Any

__all__ = ["loads_json"]

# json.loads' own decoder settings. (typeshed types make_scanner's argument as a scanner.)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder())  # type: ignore[arg-type]
_WS = " \t\n\r"  # JSON's whitespace (RFC 8259), what json.loads skips around a value


def loads_json(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``: the same value, or the same ValueError (JSONDecodeError)."""
    if not isinstance(data, str):
        if data[:1] != b"{" or data[1:2] == b"\x00":
            return json.loads(data)  # not an object, or UTF-16/32: json.loads detects it
        data = data.decode("utf-8", "surrogatepass")  # what json.loads does for UTF-8
    elif data[:1] in _WS:  # leading whitespace, or empty
        return json.loads(data)
    try:
        value, end = _scan(data, 0)
    except StopIteration as e:
        raise json.JSONDecodeError("Expecting value", data, e.value) from None
    if end != len(data):
        rest = data[end:].lstrip(_WS)
        if rest:
            raise json.JSONDecodeError("Extra data", data, len(data) - len(rest))
    return value
