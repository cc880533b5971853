"""router.obs.metrics records into plain accumulators and flushes them into prometheus-client:
what a scrape shows is what prometheus-client's own ``inc`` and ``observe`` would show for
the same figures (names, labels, help, buckets, values), in one process and in multiprocess
mode (the flush adds to a histogram child's bucket values and sum, private to
prometheus-client: these tests catch a change there). The server flushes before each scrape
and on a timer, and once more at shutdown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from router.errors import ErrorClass
from router.obs.metrics import Metrics, Vocabulary
from router.server import observe
from router.types import AttemptRecord, Usage

CHAT = "/v1/chat/completions"
VOCAB = Vocabulary(frozenset({"fast"}), frozenset({"p:m", "q:m"}))
# On bucket bounds, between them, past the last, zero; dyadic, so every sum is exact
# whichever order it is added in.
SECONDS = (0.0, 0.25, 0.375, 0.5, 1.0, 2.5, 3.0, 64.0, 300.0, 512.0)
TTFT = (0.25, 0.5, 0.75, 8.0, 128.0)
OVERHEAD = (0.0, 0.25, 0.5, 1.0, 2.0)


def record_fast(m: Metrics) -> None:
    """A mix of figures through the recording API (flushed in the middle and by render)."""
    for i, s in enumerate(SECONDS):
        outcome, error = ("ok", None) if i % 3 else ("error", "upstream_failed")
        m.enter()
        series = m.request_series(VOCAB, CHAT, "fast", "p:m", outcome, error)
        series.observe(s)
        m.observe_attempts(VOCAB, [
            AttemptRecord("r", "fast", "q:m", 1, "error", error_class=ErrorClass.SERVER,
                          latency_ms=s * 1000, retry_in_ms=250.0),
            AttemptRecord("r", "fast", "p:m", 2, "ok", latency_ms=s * 1000,
                          ttft_ms=TTFT[i % len(TTFT)] * 1000, input_tokens=10 + i,
                          output_tokens=i, cost_usd=0.125),
            AttemptRecord("r", "fast", "p:m", 1, "skipped", reason="breaker_open")])
        series.observe_usage_detail(Usage(10, i, cached_tokens=4, reasoning_tokens=i % 2))
        series.observe_overhead(OVERHEAD[i % len(OVERHEAD)] - (0.5 if i == 3 else 0.0))
        series.observe_first_token(TTFT[i % len(TTFT)])
        if i == 4:
            m.flush()
        if i % 4:
            m.leave()


def record_reference(m: Metrics) -> None:
    """The same figures, straight into prometheus-client, one ``inc``/``observe`` each."""
    in_flight = 0
    for i, s in enumerate(SECONDS):
        outcome, error = ("ok", "none") if i % 3 else ("error", "upstream_failed")
        in_flight += 1
        m.requests.labels(CHAT, "fast", "p:m", outcome, error).inc()
        m.request_seconds.labels(CHAT, "fast", outcome).observe(s)
        m.attempts.labels("fast", "q:m", "error", "server", "none").inc()
        m.attempt_seconds.labels("q:m", "error").observe(s)
        m.attempts.labels("fast", "p:m", "ok", "none", "none").inc()
        m.attempt_seconds.labels("p:m", "ok").observe(s)
        m.upstream_ttft_seconds.labels("p:m").observe(TTFT[i % len(TTFT)])
        m.tokens.labels("fast", "p:m", "input").inc(10 + i)
        if i:
            m.tokens.labels("fast", "p:m", "output").inc(i)
        m.cost.labels("fast", "p:m").inc(0.125)
        m.attempts.labels("fast", "p:m", "skipped", "none", "breaker_open").inc()
        m.tokens.labels("fast", "p:m", "cached").inc(4)
        if i % 2:
            m.tokens.labels("fast", "p:m", "reasoning").inc(1)
        m.overhead_seconds.labels(CHAT).observe(
            max(0.0, OVERHEAD[i % len(OVERHEAD)] - (0.5 if i == 3 else 0.0)))
        m.first_token_seconds.labels("fast").observe(TTFT[i % len(TTFT)])
        if i % 4:
            in_flight -= 1
    m.in_flight.set(in_flight)


def without_created(text: str) -> str:
    """Scrape text less the ``_created`` timestamps (when each series was made)."""
    return "\n".join(line for line in text.splitlines() if "_created" not in line)


def test_a_flushed_scrape_is_what_prometheus_clients_own_observe_gives() -> None:
    fast, reference = Metrics(), Metrics()
    record_fast(fast)
    record_reference(reference)
    got = without_created(fast.render([]).decode())
    assert got == without_created(reference.render([], flush=False).decode())
    assert 'router_attempt_duration_seconds_bucket{le="+Inf",outcome="ok",target="p:m"} 10.0' \
        in got
    assert "router_in_flight_requests 3.0" in got
    assert "router_time_to_first_token_seconds_sum" in got


def test_figures_reach_prometheus_client_at_a_flush() -> None:
    m = Metrics()
    m.observe_request(CHAT, "fast", "p:m", "ok", None, 0.5)
    child = m.requests.labels(CHAT, "fast", "p:m", "ok", "none")
    assert child._value.get() == 0  # noqa: SLF001 - recorded, not flushed yet
    m.flush()
    assert child._value.get() == 1  # noqa: SLF001
    m.flush()  # nothing new: nothing added twice
    assert child._value.get() == 1  # noqa: SLF001


def test_series_that_saw_nothing_show_nothing() -> None:
    m = Metrics()
    m.observe_attempts(VOCAB, [AttemptRecord("r", "fast", "p:m", 1, "ok", latency_ms=5.0)])
    text = m.render(None).decode()
    assert "router_attempt_duration_seconds_count{outcome=\"ok\",target=\"p:m\"} 1.0" in text
    assert "router_upstream_time_to_first_token_seconds_count{" not in text  # no stream
    assert "router_tokens_total{" not in text and "router_cost_usd_total{" not in text


def test_made_up_names_share_the_other_series() -> None:
    m = Metrics()
    for i in range(100):
        m.request_series(VOCAB, CHAT, f"made-up-{i}", f"p:made-up-{i}", "error",
                         "model_not_found").observe(0.01)
    text = m.render(None).decode()
    assert "made-up" not in text
    assert ('router_requests_total{alias="other",endpoint="/v1/chat/completions",'
            'error_class="model_not_found",outcome="error",target="other"} 100.0') in text


def test_a_new_plan_maps_names_its_own_way() -> None:
    m = Metrics()
    before = Vocabulary(frozenset(), frozenset())
    after = Vocabulary(frozenset({"fast"}), frozenset({"p:m"}))
    m.request_series(before, CHAT, "fast", "p:m", "ok", None).observe(0.1)
    m.request_series(after, CHAT, "fast", "p:m", "ok", None).observe(0.1)
    text = m.render(None).decode()
    assert 'alias="other"' in text and 'alias="fast"' in text


async def test_the_server_flushes_on_a_timer_and_at_shutdown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "FLUSH_SECONDS", 0.02)
    app = web.Application()
    observe.install(app)
    runner = web.AppRunner(app)
    await runner.setup()  # on_startup: the timer starts
    m = app[observe.OBSERVER].metrics
    child = m.requests.labels(CHAT, "fast", "p:m", "ok", "none")
    m.observe_request(CHAT, "fast", "p:m", "ok", None, 0.5)
    for _ in range(100):
        if child._value.get() == 1:  # noqa: SLF001
            break
        await asyncio.sleep(0.01)
    assert child._value.get() == 1  # noqa: SLF001
    monkeypatch.setattr(observe, "FLUSH_SECONDS", 3600)
    await asyncio.sleep(0.05)  # the timer now sleeps an hour
    m.observe_request(CHAT, "fast", "p:m", "ok", None, 0.5)
    await runner.cleanup()  # on_cleanup: the last flush
    assert child._value.get() == 2  # noqa: SLF001


# -- multiprocess mode: the flush writes the workers' files as observe would ----------------

_WORKER = textwrap.dedent("""
    import sys
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    sys.path.insert(0, {tests!r})
    from test_obs_metrics import Metrics, record_fast, record_reference
    m = Metrics()
    (record_fast if sys.argv[1] == "fast" else record_reference)(m)
    m.flush() if sys.argv[1] == "fast" else None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    sys.stdout.write(generate_latest(registry).decode())
""")


def scrape_in_multiprocess_mode(kind: str, directory: Path) -> str:
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    code = _WORKER.format(tests=str(Path(__file__).parent))
    return subprocess.run([sys.executable, "-c", code, kind], env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def parsed(text: str) -> dict[tuple[str, str, str], dict[tuple[str, str], float]]:
    """Families (name, type, help) and their samples, whatever order the files gave."""
    return {(f.name, f.type, f.documentation): {
        (s.name, str(sorted(s.labels.items()))): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)}


def test_multiprocess_files_hold_what_observe_would_write(tmp_path: Path) -> None:
    got = parsed(scrape_in_multiprocess_mode("fast", tmp_path / "fast"))
    assert got == parsed(scrape_in_multiprocess_mode("reference", tmp_path / "reference"))
    [buckets] = [v for (name, _, _), v in got.items()
                 if name == "router_request_duration_seconds"]
    assert buckets[("router_request_duration_seconds_bucket", str(sorted(
        {"alias": "fast", "endpoint": CHAT, "outcome": "ok", "le": "+Inf"}.items())))] == 6


async def ok(_: web.Request) -> web.Response:
    return web.Response()


async def test_unmatched_paths_are_one_endpoint_and_not_kept() -> None:
    app = web.Application()
    app.router.add_get("/v1/models/{model}", ok)
    observer = observe.Observer()
    names = []
    for path in ("/v1/models/a", "/v1/models/b", "/no/such/1", "/no/such/2"):
        request = make_mocked_request("GET", path, app=app)
        request._match_info = await app.router.resolve(request)  # noqa: SLF001
        names.append(observer.endpoint(request))
    assert names == ["/v1/models/{model}"] * 2 + ["unmatched"] * 2
    assert len(observer.endpoints) == 1  # a 404's route is new each time
