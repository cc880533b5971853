"""JSON on the wire, read and written by orjson (a fifth of stdlib json's CPU) with stdlib json's
exact values, errors and JSON: wherever the two could disagree, stdlib json answers.

Reading: orjson refuses what stdlib json reads its own way (NaN and Infinity, 1e400, lone
surrogates, a BOM, UTF-16/32 bytes), and stdlib json then gives today's value or error. Two
things orjson reads without complaint but otherwise are looked for in the text: an integer
beyond 64 bits (orjson makes it a float; any such literal has a run of 19 digits) and nesting
deep enough for stdlib json's RecursionError (orjson goes to 1024 levels).

Writing: orjson refuses what stdlib json writes its own way (integers beyond 64 bits, non-str
keys, subclasses of str, int, float, dict and list, dataclasses, datetimes), and stdlib json
writes it or raises. orjson writes NaN and Infinity as null: JSON with a null is used only if
it reads back as the value. Left: a float with a one-digit negative exponent is spelled
``1e-6`` where stdlib json writes ``1e-06`` (the same number), and a UUID or a plain Enum
(which the Router's call checks refuse) is written where stdlib json raises TypeError.
"""

from __future__ import annotations

import json
import json.scanner
import sys
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps_json", "loads_json"]

# json.loads' own decoder settings. (typeshed types make_scanner's argument as a scanner.)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder())  # type: ignore[arg-type]
_WS = " \t\n\r"  # JSON's whitespace (RFC 8259), what json.loads skips around a value
_WS_BOM = _WS + "\ufeff"  # json.loads refuses a text starting with a BOM in its own words

#: Digits as "0", brackets opening an array or object as "[", the rest as " ": a text's
#: shape, searched for a run of 19 digits and counted for its brackets.
_SHAPE = bytes(48 if 48 <= b <= 57 else 91 if b in b"[{" else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19  # -9223372036854775809 and 18446744073709551616 have 19 and 20 digits


def _loads_stdlib(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``, without its three Python-level layers (``loads`` -> ``decode``
    -> ``raw_decode``)."""
    if not isinstance(data, str):
        if data[:1] != b"{" or data[1:2] == b"\x00":
            return json.loads(data)  # not an object, or UTF-16/32: json.loads detects it
        data = data.decode("utf-8", "surrogatepass")  # what json.loads does for UTF-8
    elif data[:1] in _WS_BOM:  # leading whitespace or BOM, or empty
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


def loads_json(data: str | bytes | bytearray,
               stdlib: Callable[[Any], Any] = _loads_stdlib) -> Any:
    """``json.loads(data)``: the same value, or the same ValueError (JSONDecodeError).
    ``stdlib`` reads the texts orjson refuses or might read otherwise (a caller reading
    json.loads' way with other settings passes its own)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return stdlib(data)  # its value (NaN, 1e400...) or its error
    shape = (data.encode() if isinstance(data, str) else data).translate(_SHAPE)
    if _LONG_NUMBER in shape:  # perhaps an integer orjson made a float
        return stdlib(data)
    # json.loads fails at (recursion limit - stack depth) levels: for a caller within half
    # the limit, at more than limit / 2 levels, which takes more brackets and twice the bytes.
    limit = sys.getrecursionlimit()
    if len(shape) >= limit and 2 * shape.count(b"[") >= limit:
        return stdlib(data)
    return value


#: What stdlib json writes its own way or refuses, refused by orjson too (then stdlib answers).
_STRICT = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
           | orjson.OPT_PASSTHROUGH_DATETIME)


#: UTF-8 of U+0085, U+2028 and U+2029: line breaks to str.splitlines, which ``escape`` keeps
#: escaped (a client splitting SSE lines with it would cut an event there).
_LINE_BREAKS = (b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9")


def dumps_json(value: Any, *, escape: bool = False) -> bytes:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()``: the same
    JSON (a float such as 1e-06 spelled 1e-6), or the same error. With ``escape``, the JSON
    value of ``json.dumps(value, separators=(",", ":")).encode()``, text in UTF-8 but for what
    that cannot carry or should not (a lone surrogate; U+0085, U+2028, U+2029), where that
    ASCII JSON is written instead."""
    try:
        out = orjson.dumps(value, option=_STRICT)
    except orjson.JSONEncodeError:
        pass
    else:  # NaN and Infinity are written as null: then orjson's JSON must read back as value
        if (b"null" not in out or orjson.loads(out) == value) and not (
                escape and not out.isascii() and any(b in out for b in _LINE_BREAKS)):
            return out
    return json.dumps(value, separators=(",", ":"), ensure_ascii=escape).encode()
