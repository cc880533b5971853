"""JSON read and written by orjson where it agrees with stdlib json, and by stdlib json where
it might not: loads_json gives json.loads' values (ints stay ints, NaN stays NaN) and its
errors, message and position included; dumps_json writes json.dumps' JSON, byte for byte but
for a float's exponent (1e-6 for 1e-06), and raises its errors; the proxy reads request bodies
with its own settings unchanged."""

from __future__ import annotations

import enum
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from router.providers._json import dumps_json, loads_json
from router.server.inbound import _loads, _loads_stdlib


def _canon(v: Any) -> Any:
    """``v`` with its types spelled out: 1 and 1.0 differ, and NaN equals NaN."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, list):
        return ("list", [_canon(x) for x in v])
    if isinstance(v, dict):
        return ("dict", [(k, _canon(x)) for k, x in v.items()])
    raise AssertionError(f"not a JSON value: {v!r}")


def _outcome(f: Any, *args: Any) -> Any:
    try:
        value = f(*args)
    except (ValueError, RecursionError, TypeError) as e:
        return type(e), str(e)
    return _canon(value) if not isinstance(value, bytes) else value


_EDGE_FLOATS = [0.0, -0.0, 1e-06, 1e-7, 1.5e-5, 1e16, 1e22, 1e100, 5e-324, 1.7976931348623157e308,
                0.1, 123456789.123, math.nan, math.inf, -math.inf, 2.0 ** 63, 2.0 ** 64]
_EDGE_INTS = [0, -1, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, -2 ** 63,
              -2 ** 63 - 1, 10 ** 30, -10 ** 30]
_leaves = (st.none() | st.booleans() | st.integers() | st.sampled_from(_EDGE_INTS)
           | st.floats() | st.sampled_from(_EDGE_FLOATS) | st.text()
           | st.sampled_from(["\ud800", "a\udfffb", "\u2028", "\x85", "\x00\x1f\x7f", "é😀",
                             '"\\/']))
values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


@st.composite
def json_texts(draw: st.DrawFn) -> str | bytes:
    """JSON as json.dumps writes it (NaN and lone surrogates included), in any spacing,
    as text or bytes, whole or damaged."""
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()),
                      indent=draw(st.sampled_from([None, 0, 2, "\t"])),
                      separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])))
    text = draw(st.sampled_from(["", " ", "\n", "\ufeff", "\x0b"])) + text + draw(
        st.sampled_from(["", " \r\n", "x", "{}", "\x00", "\u3000"]))
    damage = draw(st.sampled_from(["none", "cut", "insert", "drop"]))
    if damage != "none" and text:
        at = draw(st.integers(0, len(text) - 1))
        if damage == "cut":
            text = text[:at]
        elif damage == "insert":
            text = text[:at] + draw(st.sampled_from(list(',:[]{}"\\0e-.9 \x01NaN'))) + text[at:]
        else:
            text = text[:at] + text[at + 1:]
    form = draw(st.sampled_from(["str", "utf-8", "utf-16", "utf-16-le", "utf-32", "bytearray"]))
    if form == "str":
        return text
    raw = text.encode("utf-8" if form == "bytearray" else form, "surrogatepass")
    return bytearray(raw) if form == "bytearray" else raw


@settings(max_examples=1000, deadline=None)
@given(json_texts())
@example('{"a": 18446744073709551616}')
@example("[-9223372036854775809, 9223372036854775808]")
@example("1" * 5000)
@example('{"a": 1e400, "b": -1e400, "c": 1e-400}')
@example('{"a": NaN, "b": Infinity, "c": -Infinity}')
@example('"\\ud800"')
@example(b'\xef\xbb\xbf{"a": 1}')
@example(b'{"a": "\xed\xa0\x80"}')
@example(b"1\x00")
@example('{"a": 0.1000000000000000055511151231257827021181583404541015625}')
def test_loads_json_reads_as_json_loads(text: str | bytes) -> None:
    assert _outcome(loads_json, text) == _outcome(json.loads, text)


def _read_or_error(f: Any, text: str | bytes) -> str:
    try:
        f(text)
    except (ValueError, RecursionError) as e:
        return type(e).__name__
    return "read"


@pytest.mark.parametrize("depth", [100, 490, 600, 990, 1000, 1020, 1030, 3000])
@pytest.mark.parametrize("level", ["[", '{"a":'])
def test_deep_json_reads_or_fails_as_json_loads_does(depth: int, level: str) -> None:
    # orjson reads 1024 levels, json.loads about (recursion limit - stack depth).
    text = level * depth + "1" + ("]" if level == "[" else "}") * depth
    for data in (text, text.encode()):
        assert _read_or_error(loads_json, data) == _read_or_error(json.loads, data)


@settings(max_examples=300, deadline=None)
@given(json_texts().map(lambda t: t if isinstance(t, str) else t.decode("utf-8", "replace")))
@example('{"a": NaN}')
@example('{"a": -Infinity}')
@example("\ufeff{}")
@example('{"a": 123456789012345678901234567890}')
def test_the_proxy_reads_a_body_as_before(text: str) -> None:
    assert _outcome(_loads, text) == _outcome(_loads_stdlib, text)


class Color(enum.Enum):
    RED = 1


class Size(enum.IntEnum):
    BIG = 2


class Label(enum.StrEnum):
    A = "a"


class Count(int):
    def __repr__(self) -> str:
        return "Count()"


class Text(str):
    pass


# (A UUID or a plain Enum is the documented difference: see the test after these.)
_odd = st.sampled_from([Size.BIG, Label.A, Count(3), Text("t"), (1, "x"),
                        float("nan"), b"bytes", {1: "int key"},
                        {None: 1, True: 2, 1.5: 3}, {(1,): "tuple key"}, object()])
_writable = st.recursive(_leaves | _odd, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=6), inner, max_size=4)
                         | st.tuples(inner, inner), max_leaves=20)


def _stdlib_dumps(value: Any, ascii: bool) -> Any:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii).encode()


def _same_json(ours: bytes, theirs: bytes) -> None:
    """Equal JSON: the same bytes, or the same value with a float's exponent spelled shorter."""
    if ours != theirs:
        assert b"e-0" in theirs
        assert _canon(json.loads(ours)) == _canon(json.loads(theirs))


@settings(max_examples=500, deadline=None)
@given(_writable)
@example({"model": "m", "messages": [{"role": "user", "content": "é"}], "max_tokens": 5,
          "temperature": 0.2})
@example({"a": float("inf")})
@example({"a": [1e-06, 1e16, -0.0]})
@example({"a": "\ud800"})
def test_dumps_json_writes_as_json_dumps(value: Any) -> None:
    ours, theirs = _outcome(dumps_json, value), _outcome(_stdlib_dumps, value, False)
    if isinstance(theirs, bytes) and isinstance(ours, bytes):
        _same_json(ours, theirs)
    else:
        assert ours == theirs


@settings(max_examples=500, deadline=None)
@given(_writable)
@example({"a": "\u2028 \u2029 \x85"})
@example({"a": "\ud800"})
@example({"a": "é😀"})
def test_escaped_dumps_json_writes_json_dumps_ascii_json(value: Any) -> None:
    ours = _outcome(lambda v: dumps_json(v, escape=True), value)
    theirs = _outcome(_stdlib_dumps, value, True)
    if not (isinstance(theirs, bytes) and isinstance(ours, bytes)):
        assert ours == theirs
        return
    for line_break in ("\x85", "\u2028", "\u2029"):
        assert line_break.encode() not in ours
    assert _canon(json.loads(ours)) == _canon(json.loads(theirs))  # text in UTF-8, DEL raw


def test_a_uuid_or_a_plain_enum_is_written_where_json_dumps_refuses_it() -> None:
    # Unless the JSON holds a null (then it must read back as the value, and does not).
    written = b'["00000000-0000-0000-0000-000000000007",1]'
    assert dumps_json([uuid.UUID(int=7), Color.RED]) == written
    with pytest.raises(TypeError):
        dumps_json([uuid.UUID(int=7), None])


def test_a_request_body_is_stdlib_json_byte_for_byte() -> None:
    body = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Réponds en une phrase.\n"},
        {"role": "user", "content": 'Say "hi" 😀', "name": None}],
        "max_tokens": 256, "temperature": 0.2, "top_p": 1, "stream": True,
        "stop": ["\x00", "\u2028"]}
    assert dumps_json(body) == _stdlib_dumps(body, False)
