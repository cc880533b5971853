"""``GET /metrics`` of ``router serve``: Prometheus text from prometheus-client, with labels
bounded (aliases and targets of the plan, else ``other``), attempts, tokens by type, cost,
budgets read from the store, breakers, in-flight requests and the router's own overhead; and
no secret in it. One proxy process (access keys on) serves the module; a loopback OpenAI
upstream reports cached and reasoning tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from router.obs.metrics import Metrics, Vocabulary
from router.types import AttemptRecord
from tests.servers.openai import OpenAIServer, completion, json_reply, usage
from tests.servers.proxy import GatedUpstream, ProxyProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROXY_KEY = "proxy-key-Zq81vXw3metrics"
PROVIDER_KEY = "sk-provider-Jt55pLm2secretvalue"
AUTH = {"Authorization": f"Bearer {PROXY_KEY}"}
USER = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def route_file(upstream: OpenAIServer, gated: GatedUpstream) -> dict[str, Any]:
    return {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}},
        "providers": {
            "fk": {"kind": "fake", "text": "hello",
                   "models": {"m1": {"price": {"input": 1, "output": 1}}}},
            "bad": {"kind": "fake", "script": ["server"]},
            "brk": {"kind": "fake", "script": ["server"],
                    "breaker": {"failures": 2, "cooldown": "10m"}},
            "up": {"kind": "openai", "base_url": upstream.base_url,
                   "api_key": "${METRICS_TEST_KEY}",
                   "models": {"gpt-4o-mini": {"price": {"input": 1, "output": 1}}}},
            "gated": {"kind": "openai-compatible", "base_url": gated.base_url,
                      "models": {"gated-model": {"price": {"input": 1, "output": 1}}}},
        },
        "models": {"fast": ["fk:m1"], "chain": ["bad:m", "fk:m1"], "brk": ["brk:m", "fk:m1"],
                   "cached": ["up:gpt-4o-mini"], "gated": ["gated:gated-model"]},
        "budgets": [{"scope": "global", "usd": 100, "per": "day"}],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as server:
        server.default = json_reply(completion(
            "hi", usage_=usage(100, 20, cached=40, reasoning=7)))
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gated() -> AsyncIterator[GatedUpstream]:
    async with GatedUpstream() as g:
        yield g


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(upstream: OpenAIServer, gated: GatedUpstream,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProxyProcess]:
    path = tmp_path_factory.mktemp("metrics") / "routes.yaml"
    path.write_text(yaml.safe_dump(route_file(upstream, gated)))
    env = {"ROUTER_PROXY_KEYS": PROXY_KEY, "METRICS_TEST_KEY": PROVIDER_KEY}
    async with ProxyProcess(path, env=env) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="module")
async def http(proxy: ProxyProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=proxy.base_url, headers=AUTH) as session:
        yield session


async def chat(http: aiohttp.ClientSession, model: str, **extra: Any) -> int:
    async with http.post(CHAT, json={"model": model, "messages": USER, **extra}) as r:
        await r.read()
        return r.status


async def scrape_text(http: aiohttp.ClientSession) -> str:
    async with http.get("/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return await r.text()


async def scrape(http: aiohttp.ClientSession) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(await scrape_text(http)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def label_values(samples: Samples, label: str) -> set[str]:
    return {v for (_, ls), _ in samples.items() for k, v in ls if k == label}


async def until(http: aiohttp.ClientSession, check: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``check`` holds (a stream's request is recorded just after its last
    byte went out)."""
    async with asyncio.timeout(10):
        while True:
            samples = await scrape(http)
            if check(samples):
                return samples
            await asyncio.sleep(0.02)


# -- the endpoint ------------------------------------------------------------------------------

async def test_metrics_needs_the_access_key_when_keys_are_set(proxy: ProxyProcess) -> None:
    async with aiohttp.ClientSession() as s, s.get(proxy.base_url + "/metrics") as r:
        assert r.status == 401


async def test_metrics_is_prometheus_text(http: aiohttp.ClientSession) -> None:
    samples = await scrape(http)
    assert ("router_state_store_up", frozenset()) in samples
    assert value(samples, "router_in_flight_requests") == 0  # the scrape is not counted


# -- requests and attempts ---------------------------------------------------------------------

async def test_a_request_is_counted_by_alias_target_and_outcome(
        http: aiohttp.ClientSession) -> None:
    before = value(await scrape(http), "router_requests_total", alias="fast", outcome="ok")
    assert await chat(http, "fast") == 200
    samples = await scrape(http)
    labels = {"endpoint": CHAT, "alias": "fast", "target": "fk:m1", "outcome": "ok",
              "error_class": "none"}
    assert value(samples, "router_requests_total", **labels) == before + 1
    assert value(samples, "router_request_duration_seconds_count", alias="fast") >= 1
    assert value(samples, "router_overhead_seconds_count", endpoint=CHAT) >= 1


async def test_made_up_model_names_are_other(http: aiohttp.ClientSession) -> None:
    for i in range(5):
        await chat(http, f"no-such-model-{i}")
    assert await chat(http, "fk:made-up-model") == 200  # provider:model, not a plan target
    samples = await scrape(http)
    aliases = label_values(samples, "alias")
    assert not any(a.startswith("no-such-model") or a.startswith("fk:") for a in aliases)
    assert value(samples, "router_requests_total", alias="other",
                 error_class="model_not_found") >= 5
    assert "fk:made-up-model" not in label_values(samples, "target")
    assert value(samples, "router_attempts_total", target="other", outcome="ok") >= 1


async def test_a_fallback_counts_each_attempt(http: aiohttp.ClientSession) -> None:
    assert await chat(http, "chain") == 200
    samples = await scrape(http)
    assert value(samples, "router_attempts_total", alias="chain", target="bad:m",
                 outcome="error", error_class="server") >= 1
    assert value(samples, "router_attempts_total", alias="chain", target="fk:m1",
                 outcome="ok") >= 1
    assert value(samples, "router_attempt_duration_seconds_count", target="bad:m") >= 1
    assert ("router_breaker_state", frozenset({("target", "bad:m")})) in samples


async def test_a_failed_call_is_an_error_with_its_class(http: aiohttp.ClientSession) -> None:
    async with http.post(CHAT, json={"model": "bad:m", "messages": USER}) as r:
        assert r.status == 502
    samples = await scrape(http)
    assert value(samples, "router_requests_total", outcome="error",
                 error_class="server") >= 1


async def test_an_open_breaker_shows_and_its_skips_are_counted(
        http: aiohttp.ClientSession) -> None:
    for _ in range(3):  # two failures open it; the third call skips it
        assert await chat(http, "brk") == 200
    samples = await scrape(http)
    assert value(samples, "router_breaker_state", target="brk:m") == 2
    assert value(samples, "router_breaker_state", target="fk:m1") == 0
    assert value(samples, "router_attempts_total", alias="brk", target="brk:m",
                 outcome="skipped", reason="breaker_open") >= 1


async def test_the_messages_api_is_counted_under_its_endpoint(
        http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/messages", json={"model": "fast", "max_tokens": 20,
                                               "messages": USER}) as r:
        assert r.status == 200
    samples = await scrape(http)
    assert value(samples, "router_requests_total", endpoint="/v1/messages", alias="fast",
                 outcome="ok") >= 1


# -- tokens, cost, budgets ---------------------------------------------------------------------

async def test_tokens_by_type_and_cost(http: aiohttp.ClientSession) -> None:
    assert await chat(http, "cached") == 200
    samples = await scrape(http)
    labels = {"alias": "cached", "target": "up:gpt-4o-mini"}
    tokens = {t: value(samples, "router_tokens_total", type=t, **labels)
              for t in ("input", "output", "cached", "reasoning")}
    assert tokens == {"input": 100, "output": 20, "cached": 40, "reasoning": 7}
    assert value(samples, "router_cost_usd_total", **labels) > 0


async def test_budget_spend_and_remaining_come_from_the_store(
        http: aiohttp.ClientSession) -> None:
    assert await chat(http, "fast") == 200
    samples = await scrape(http)
    scope = {"scope": "global", "per": "day"}
    spent = value(samples, "router_budget_spent_usd", **scope)
    assert spent > 0 and value(samples, "router_budget_cap_usd", **scope) == 100
    remaining = value(samples, "router_budget_remaining_usd", **scope)
    held = value(samples, "router_budget_reserved_usd", **scope)
    assert remaining == pytest.approx(100 - spent - held)
    assert value(samples, "router_state_store_up") == 1


async def test_budgets_are_left_out_when_the_store_does_not_answer(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("down") / "routes.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "providers": {"fk": {"kind": "fake"}}, "models": {"fast": ["fk:m"]},
        "state": {"kind": "redis", "url": "redis://127.0.0.1:9/0"},  # nothing listens
        "budgets": [{"scope": "global", "usd": 1, "per": "day"}]}))
    async with ProxyProcess(path) as p, aiohttp.ClientSession(base_url=p.base_url) as s:
        samples = await scrape(s)
    assert value(samples, "router_state_store_up") == 0
    assert not any(name.startswith("router_budget_") for name, _ in samples)


# -- streams and in-flight ---------------------------------------------------------------------

async def test_an_open_stream_is_in_flight_and_has_a_first_token_time(
        http: aiohttp.ClientSession, gated: GatedUpstream) -> None:
    gated.gate.clear()
    async with http.post(CHAT, json={"model": "gated", "messages": USER,
                                     "stream": True}) as r:
        assert r.status == 200
        await r.content.readuntil(b"\n\n")
        samples = await scrape(http)
        assert value(samples, "router_in_flight_requests") == 1
        gated.gate.set()
        assert (await r.read()).endswith(b"data: [DONE]\n\n")
    samples = await until(http, lambda s: value(
        s, "router_time_to_first_token_seconds_count", alias="gated") >= 1)
    assert value(samples, "router_upstream_time_to_first_token_seconds_count",
                 target="gated:gated-model") >= 1
    await until(http, lambda s: value(s, "router_in_flight_requests") == 0)


# -- secrets -----------------------------------------------------------------------------------

async def test_no_key_ever_appears_in_metrics(http: aiohttp.ClientSession) -> None:
    await chat(http, PROXY_KEY)  # a key as a model name: an unknown model
    await chat(http, PROVIDER_KEY)
    async with http.post(CHAT, json={"model": "fast", "messages": USER},
                         headers={"x-router-tag": f"team={PROVIDER_KEY}"}) as r:
        await r.read()
    await chat(http, "cached")  # the provider key goes upstream on this one
    text = await scrape_text(http)
    assert PROXY_KEY not in text and PROVIDER_KEY not in text
    assert "req_" not in text  # nor a request id


# -- in-process: the label guards --------------------------------------------------------------

async def test_free_form_labels_fold_into_other_past_the_limit() -> None:
    m = Metrics()
    for i in range(200):
        m.observe_request(f"/path/{i}", "a", "t", "error", f"code_{i}", 0.01)
    text = m.render([]).decode()
    assert "/path/199" not in text and "code_199" not in text
    assert 'endpoint="other"' in text and 'error_class="other"' in text


async def test_attempt_labels_are_bounded_by_the_plan() -> None:
    m = Metrics()
    vocab = Vocabulary(frozenset({"fast"}), frozenset({"p:m"}))
    m.observe_attempts(vocab, [
        AttemptRecord("req_1", "made-up", "p:other-model", 1, "ok", latency_ms=5.0,
                      input_tokens=3, output_tokens=2, cost_usd=0.5),
        AttemptRecord("req_1", "fast", "p:m", 1, "skipped", reason="budget")])
    text = m.render(None).decode()
    assert "made-up" not in text and "p:other-model" not in text and "req_1" not in text
    assert 'router_attempts_total{alias="other",error_class="none",outcome="ok",' in text
    assert 'reason="budget",target="p:m"' in text
    assert "router_state_store_up 0.0" in text
