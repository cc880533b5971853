"""configure_output("json")'s lines rendered by orjson are byte for byte what ``json`` renders
with the same (compact) separators, for every kind of value: a float below 1e-4 as repr writes
it (4.8e-06), NaN and Infinity, non-ASCII text, DEL and control characters escaped, big ints,
lists, enums and objects as structlog renders them; None values dropped, secrets scrubbed, the
timestamp ISO 8601 UTC with microseconds and ``Z``."""

from __future__ import annotations

import enum
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from router.obs import _lines, log

SECRET = "sk-fastlines-0123456789abcdef"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Color(enum.Enum):
    RED = 1


class Tag(str):
    pass


class Loud:
    def __structlog__(self) -> str:
        return "LOUD"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """configure_output("json")'s lines, set up in the test's call (pytest hooks its capture
    handlers on the non-propagating loggers as the call starts: set up in a fixture, the
    setup would no longer be configure_output's alone and events would take structlog's
    chain); the logger, structlog and the secret registry are restored after."""
    std = logging.getLogger("router")
    saved = (std.level, list(std.handlers), std.propagate)
    config = structlog.get_config()
    stream = io.StringIO()
    log.add_secrets([SECRET])
    yield stream
    log.remove_secrets([SECRET])
    std.setLevel(saved[0])
    std.handlers[:] = saved[1]
    std.propagate = saved[2]
    structlog.configure(**config)


def json_to(stream: io.StringIO) -> None:
    log.configure_output("json", stream=stream)
    # the lines are configure_output's own (not structlog's chain)
    (handler,) = logging.getLogger("router").handlers
    assert isinstance(handler, _lines.LineHandler)


def take(stream: io.StringIO) -> str:
    (line,) = stream.getvalue().splitlines()
    stream.seek(0)
    stream.truncate()
    return line


def structlog_default(obj: object) -> object:
    """structlog's JSONRenderer's default: an object's ``__structlog__()``, else its repr."""
    render = getattr(obj, "__structlog__", None)
    return render() if render is not None else repr(obj)


def expected(fields: dict[str, Any], line: str, event: str = "e") -> str:
    """``json``'s rendering of the event, with the line's own timestamp."""
    stamp = json.loads(line)["timestamp"]
    assert STAMP.match(stamp) or re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", stamp)
    kept = {k: v for k, v in fields.items() if v is not None}
    return json.dumps({**kept, "event": event, "level": "info", "timestamp": stamp},
                      separators=(",", ":"), default=structlog_default)


def test_a_proxy_request_line_is_json_compact_with_repr_floats(out: io.StringIO) -> None:
    json_to(out)
    fields = {"request_id": "req_cf87fa9e0000f4a7", "alias": "one",
              "target": "up:gpt-4o-mini", "attempt": 1, "outcome": "ok", "latency_ms": 1.62,
              "input_tokens": 12, "output_tokens": 5, "cost_usd": 4.8e-06}
    log.emit("attempt_ok", **fields)
    line = take(out)
    assert line == expected(fields, line, "attempt_ok")
    assert '"cost_usd":4.8e-06,"event":"attempt_ok","level":"info","timestamp":"' in line


@pytest.mark.parametrize("value", [
    4.8e-06, 1e-05, 3.6765525791526276e-05, -2.5e-07, 9.99e-05, 1e-4, 0.0, -0.0, 1e16, 1e22,
    -1.5, 5e-324, 1.7976931348623157e308, float("nan"), float("inf"), float("-inf"),
    2**63, 2**64, -(2**70), True, False, 0,
    "plain", "é ü 日本", "del\x7f", "ctl\x00\x1f\n\t", 'quote"back\\slash', "",
    ["a", 1, None, 1e-06], {"k": [1.5, None]}, ("t", 2), Color.RED, Tag("tagged"), Loud(),
    b"bytes",
], ids=repr)
def test_every_kind_of_value_renders_as_json_does(out: io.StringIO, value: object) -> None:
    json_to(out)
    fields = {"request_id": "req_1", "value": value, "after": 1}
    log.emit("e", **fields)
    line = take(out)
    assert line == expected(fields, line)


def test_none_values_are_dropped_and_the_order_kept(out: io.StringIO) -> None:
    json_to(out)
    log.emit("e", a=None, b=1, c=None, d="x", e=None)
    line = take(out)
    assert list(json.loads(line)) == ["b", "d", "event", "level", "timestamp"]


def test_secrets_never_appear_in_any_kind_of_string_value(out: io.StringIO) -> None:
    json_to(out)
    log.emit("e", request_id="req_1", a=SECRET, b=f"key={SECRET}&x", c=Tag(SECRET),
             d=f'"{SECRET}"\n', cost_usd=1e-06)
    line = take(out)
    assert SECRET not in line
    got = json.loads(line)
    assert [got[k] for k in "abcd"] == ["***", "key=***&x", "***", '"***"\n']
    assert got["cost_usd"] == 1e-06 and '"cost_usd":1e-06' in line


def test_the_timestamp_is_utc_with_microseconds(out: io.StringIO) -> None:
    json_to(out)
    log.emit("e")
    assert STAMP.match(json.loads(take(out))["timestamp"])


def test_a_value_that_fails_to_render_is_reported_not_raised(
        out: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    json_to(out)

    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    log.emit("bad_event", value=Bad())  # no exception
    assert out.getvalue() == ""
    assert "bad_event" in capsys.readouterr().err


scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.floats(min_value=-1e-3, max_value=1e-3))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1), scalars, max_size=6))
def test_any_scalar_fields_render_as_json_does(fields: dict[str, Any]) -> None:
    fields = {k: v for k, v in fields.items() if k not in ("event", "level", "timestamp")}
    stream = io.StringIO()
    lines = _lines.JsonLines(_lines.LineHandler(stream))
    lines.write("e", logging.INFO, dict(fields))
    line = stream.getvalue().rstrip("\n")
    assert line == expected(fields, line)


def test_a_line_reads_the_same_as_through_structlog(out: io.StringIO) -> None:
    json_to(out)
    fields = {"request_id": "req_1", "status": 200, "alias": None, "cost_usd": 4.8e-06,
              "path": f"/v1?key={SECRET}", "addresses": ["a:1"], "odd": Loud()}
    log.emit("proxy_request", **fields)
    fast = json.loads(take(out))
    std = logging.getLogger("router")
    other = io.StringIO()
    second = logging.StreamHandler(other)
    second.setFormatter(std.handlers[0].formatter)
    std.addHandler(second)  # no longer configure_output's setup alone: structlog's chain
    log.emit("proxy_request", **fields)
    chain = json.loads(other.getvalue())
    for a in (fast, chain):
        del a["timestamp"]
    assert list(fast.items()) == list(chain.items())


def test_a_short_secret_inside_a_word_is_kept_and_alone_is_hidden(out: io.StringIO) -> None:
    # the substring pre-check finds "abc" in both; the pattern decides (whole values only)
    log.add_secrets(["abc"])
    try:
        json_to(out)
        log.emit("e", a="xabcx", b="k abc")
        got = json.loads(take(out))
        assert [got["a"], got["b"]] == ["xabcx", "k ***"]
    finally:
        log.remove_secrets(["abc"])


def test_a_records_line_is_its_fields_in_order_without_none_false_or_zero(
        out: io.StringIO) -> None:
    from router.types import AttemptRecord, ErrorClass

    def reference(rec: AttemptRecord) -> dict[str, Any]:
        kept = {n: getattr(rec, n) for n in rec.__slots__}
        kept = {n: v.value if isinstance(v, ErrorClass) else v for n, v in kept.items()
                if v is not None and v is not False}
        if not rec.malformed_events:
            del kept["malformed_events"]
        return kept

    records = [
        AttemptRecord("r", "a", "p:m", 1, "ok", latency_ms=1.5, input_tokens=3,
                      output_tokens=0, cost_usd=4.8e-06),
        AttemptRecord("r", "a", "p:m", 2, "error", error_class=ErrorClass.SERVER,
                      reason="x", detail=SECRET, status=500, latency_ms=2.0, ttft_ms=1.0,
                      retry_in_ms=10.0, retry_after_used=True, timeout_kind="read",
                      malformed_events=2),
        AttemptRecord("r", "a", "p:m", 1, "skipped", reason="breaker_open"),
    ]
    json_to(out)
    for rec in records:
        fields = rec.as_dict()
        assert fields == reference(rec) and list(fields) == list(reference(rec))
        log.emit_fields("attempt_ok", rec.as_dict())
        line = take(out)
        assert SECRET not in line
        assert line == expected({k: "***" if v == SECRET else v for k, v in fields.items()},
                                line,
                                "attempt_ok")
