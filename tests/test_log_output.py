"""The CLI's log output (router.obs.log.configure_output): JSON lines rendered without
structlog's chain read the same as through it, a test's capture_logs still sees every event,
and while ``router serve`` serves, a request's events wait for the next batch while any other
event goes out at once, after the held ones."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from router.obs import log

SECRET = "sk-logtest-0123456789abcdef"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """JSON lines of the ``router`` logger into a StringIO; the logger, structlog's
    configuration and the secret registry are restored after."""
    std = logging.getLogger("router")
    saved = (std.level, list(std.handlers), std.propagate)
    config = structlog.get_config()
    stream = io.StringIO()
    log.configure_output("json", stream=stream)
    log.add_secrets([SECRET])
    yield stream
    log.batch_lines(False)
    log.remove_secrets([SECRET])
    std.setLevel(saved[0])
    std.handlers[:] = saved[1]
    std.propagate = saved[2]
    structlog.configure(**config)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def emit_sample() -> None:
    log.emit("proxy_request", request_id="req_1", status=200, alias=None, latency_ms=1.5,
             path=f"/v1/chat?key={SECRET}", addresses=["a:1"], odd=Opaque(), ok=True)


def test_json_line_has_the_fields_in_order_then_event_level_timestamp(
        out: io.StringIO) -> None:
    emit_sample()
    (line,) = lines(out)
    assert list(line) == ["request_id", "status", "latency_ms", "path", "addresses", "odd",
                          "ok", "event", "level", "timestamp"]
    assert line["path"] == "/v1/chat?key=***"  # scrubbed; the None alias dropped
    assert (line["odd"], line["ok"], line["level"]) == ("<opaque>", True, "info")
    assert STAMP.match(str(line["timestamp"]))


def test_json_line_reads_the_same_as_through_structlog(out: io.StringIO) -> None:
    # A second handler: the setup is no longer configure_output's alone, so the event goes
    # through structlog's chain, rendered by the same formatter to both handlers.
    std = logging.getLogger("router")
    other = io.StringIO()
    second = logging.StreamHandler(other)
    second.setFormatter(std.handlers[0].formatter)
    emit_sample()
    std.addHandler(second)
    emit_sample()
    fast, chain = (json.loads(x) for x in out.getvalue().splitlines())
    (through,) = lines(other)
    assert chain == through
    for a in (fast, chain):
        del a["timestamp"]
    assert list(fast.items()) == list(chain.items())


def test_capture_logs_after_configure_output_sees_the_events(out: io.StringIO) -> None:
    with capture_logs() as captured:
        log.emit("route_done", request_id="req_1", target="a:m")
    assert [(e["event"], e["target"]) for e in captured] == [("route_done", "a:m")]
    assert out.getvalue() == ""
    log.emit("route_done", request_id="req_2")  # configure_output's setup is back
    assert [e["request_id"] for e in lines(out)] == ["req_2"]


async def test_request_events_wait_for_the_batch_others_go_at_once(out: io.StringIO) -> None:
    log.batch_lines(True)
    log.emit("proxy_request", request_id="req_1")
    log.emit("attempt_ok", request_id="req_2")
    assert out.getvalue() == ""
    log.emit("routes_reloaded", generation=2)  # no request id: at once, after the held
    assert [e["event"] for e in lines(out)] == ["proxy_request", "attempt_ok",
                                                "routes_reloaded"]
    log.emit("proxy_request", request_id="req_3")
    log.emit("attempt_failed", level=log.WARNING, request_id="req_4")
    assert [e.get("request_id") for e in lines(out)][-2:] == ["req_3", "req_4"]
    log.emit("proxy_request", request_id="req_5")
    log.batch_lines(False)  # writes what it held
    assert lines(out)[-1]["request_id"] == "req_5"


def test_without_a_running_loop_a_batched_line_goes_at_once(out: io.StringIO) -> None:
    log.batch_lines(True)
    log.emit("proxy_request", request_id="req_1")
    assert [e["request_id"] for e in lines(out)] == ["req_1"]


async def test_console_lines_are_batched_alike(out: io.StringIO) -> None:
    stream = io.StringIO()
    log.configure_output("console", stream=stream)
    log.batch_lines(True)
    log.emit("proxy_request", request_id="req_1", status=200)
    assert stream.getvalue() == ""
    log.batch_lines(False)
    assert "proxy_request" in stream.getvalue() and "status=200" in stream.getvalue()


def test_each_value_is_scrubbed_as_alone(out: io.StringIO) -> None:
    # The values are searched joined; a short secret is still hidden only as a whole token,
    # and a value next to another never makes one.
    log.add_secrets(["k3y"])
    try:
        log.emit("proxy_request", request_id="req_1", a="k3y", b="monk3ys", c="k3", d="y",
                 e=f"x {SECRET}")
    finally:
        log.remove_secrets(["k3y"])
    (line,) = lines(out)
    assert [line[k] for k in "abcde"] == ["***", "monk3ys", "k3", "y", "x ***"]


def test_a_stream_that_fails_never_raises_to_the_caller(out: io.StringIO,
                                                        capsys: pytest.CaptureFixture[str],
                                                        ) -> None:
    out.close()
    log.emit("proxy_request", request_id="req_1")  # no exception
    assert "proxy_request" in capsys.readouterr().err  # logging's own error report
