"""``router serve`` at the HTTP level, with a raw aiohttp client: malformed input (bad JSON,
invalid UTF-8, wrong types, bodies over the limit), error bodies in each API's shape, the
streaming contract (a failure after the first chunk ends with an error event and no
terminator; a client that disconnects cancels the upstream call), call options from headers,
explain and the probes, slow clients (a head or body trickled past its limit). One proxy
process (no access keys, loopback) serves the module; another, with half-second head and body
limits, the slow-client tests."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from tests.servers.proxy import GatedUpstream, ProxyProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BODY = 64 * 1024
USER = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def route_file(gated: GatedUpstream) -> dict[str, Any]:
    return {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}},
        "providers": {
            "fk": {"kind": "fake", "text": "hello from {target}",
                   "models": {"m1": {"price": {"input": 1, "output": 1}}}},
            "cut": {"kind": "fake", "script": ["stream_interrupted"],
                    "text": "one two three four five six seven eight"},
            "slow": {"kind": "fake", "latency": "30s"},
            "gated": {"kind": "openai-compatible", "base_url": gated.base_url},
            "rl": {"kind": "fake", "rate_limit": {"rpm": 1, "mode": "skip"}},
            "down": {"kind": "fake", "script": ["server"]},
        },
        "models": {"fast": ["fk:m1"], "cut": ["cut:m"], "slow": ["slow:m"],
                   "gated": ["gated:gated-model"], "limited": ["rl:m"],
                   "flaky": ["down:m", "fk:m1"]},
        "budgets": [{"scope": "tag:team=blocked", "usd": 0.0000001, "per": "day"}],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gated() -> AsyncIterator[GatedUpstream]:
    async with GatedUpstream() as g:
        yield g


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(gated: GatedUpstream,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProxyProcess]:
    path = tmp_path_factory.mktemp("proxy") / "routes.yaml"
    path.write_text(yaml.safe_dump(route_file(gated)))
    async with ProxyProcess(path, args=("--max-body-bytes", str(MAX_BODY),
                                        "--log-format", "json")) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="module")
async def http(proxy: ProxyProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=proxy.base_url) as session:
        yield session


async def post(http: aiohttp.ClientSession, path: str, data: Any,
               headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    async with http.post(path, data=body, headers=headers or {}) as r:
        return r.status, await r.json(content_type=None), r.headers


async def sse(http: aiohttp.ClientSession, path: str, data: Any) -> tuple[int, str]:
    async with http.post(path, json=data) as r:
        return r.status, (await r.read()).decode()


# -- malformed input --------------------------------------------------------------------------

async def test_bad_json_is_400_in_openai_shape(http: aiohttp.ClientSession) -> None:
    status, body, headers = await post(http, CHAT, b'{"model": "fast", "messages": [')
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in body["error"]["message"]
    assert headers["x-router-request-id"].startswith("req_")


async def test_invalid_utf8_is_400(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, CHAT, b'{"model": "fast", "x": "\xff\xfe"}')
    assert status == 400 and "UTF-8" in body["error"]["message"]


async def test_deeply_nested_json_is_400(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, CHAT, b'{"model": "fast", "x": ' + b"[" * 50_000)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_body_that_is_not_an_object_is_400(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, MESSAGES, [1, 2])
    assert status == 400 and body["error"]["message"].endswith("must be a JSON object")


async def test_anthropic_wrong_type_names_the_param(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, MESSAGES, {"model": "fast", "max_tokens": "many",
                                                  "messages": USER})
    assert status == 400 and body["error"]["message"].startswith("max_tokens")


async def test_nan_is_refused(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(
        http, CHAT, b'{"model": "fast", "messages": [], "temperature": NaN}')
    assert status == 400 and "NaN" in body["error"]["message"]


@pytest.mark.parametrize(("change", "param"), [
    ({"model": 5}, "model"),
    ({"messages": "hi"}, "messages"),
    ({"stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"max_tokens": -3}, "max_tokens"),
    ({"n": 0}, "n"),
    ({"timeout": 5}, "timeout"),
])
async def test_wrong_types_name_the_param(http: aiohttp.ClientSession, change: dict[str, Any],
                                          param: str) -> None:
    status, body, _ = await post(http, CHAT, {"model": "fast", "messages": USER, **change})
    assert status == 400 and body["error"]["param"] == param


async def test_anthropic_malformed_block_names_its_path(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, MESSAGES, {"model": "fast", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "audio"}]}]})
    assert status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("messages.0.content.1.type")


async def test_anthropic_thinking_block_without_signature_names_its_path(
        http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, MESSAGES, {"model": "fast", "max_tokens": 5, "messages": [
        *USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
        {"role": "user", "content": "go on"}]})
    assert status == 400
    assert body["error"]["message"].startswith("messages.1.content.0.signature")


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
async def test_body_over_limit_is_413(http: aiohttp.ClientSession, path: str) -> None:
    big = {"model": "fast", "messages": [{"role": "user", "content": "x" * (MAX_BODY + 1)}]}
    status, body, _ = await post(http, path, big)
    assert status == 413
    assert (body["error"]["type"] == "request_too_large" if path == MESSAGES
            else body["error"]["code"] == "request_too_large")


async def test_chunked_body_over_limit_is_413(http: aiohttp.ClientSession) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    async with http.post(CHAT, data=pieces()) as r:
        assert r.status == 413


async def test_unknown_path_and_wrong_method(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/nothing-here") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    async with http.get(CHAT) as r:
        assert r.status == 405 and "error" in await r.json()


# -- the streaming contract -------------------------------------------------------------------

async def test_failed_openai_stream_ends_with_error_and_no_done(
        http: aiohttp.ClientSession) -> None:
    status, text = await sse(http, CHAT, {"model": "cut", "messages": USER, "stream": True})
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert status == 200 and "[DONE]" not in events
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "one"
    last = json.loads(events[-1])
    assert last["error"]["code"] == "stream_interrupted"


async def test_failed_anthropic_stream_ends_with_error_event(
        http: aiohttp.ClientSession) -> None:
    status, text = await sse(http, MESSAGES, {"model": "cut", "max_tokens": 50,
                                              "messages": USER, "stream": True})
    names = [line[7:] for line in text.split("\n") if line.startswith("event: ")]
    assert status == 200 and names[:2] == ["message_start", "ping"]
    assert names[-1] == "error" and "message_stop" not in names
    last = json.loads(text.strip().split("\n")[-1][6:])
    assert last["type"] == "error" and last["error"]["type"] == "api_error"


async def test_stream_failing_before_first_chunk_is_an_error_reply(
        http: aiohttp.ClientSession) -> None:
    status, body, headers = await post(http, CHAT, {"model": "nope", "messages": USER,
                                                    "stream": True})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert headers["Content-Type"].startswith("application/json")


async def test_stream_reply_names_target(http: aiohttp.ClientSession) -> None:
    async with http.post(CHAT, json={"model": "fast", "messages": USER, "stream": True}) as r:
        assert r.headers["x-router-target"] == "fk:m1"
        assert r.headers["x-router-alias"] == "fast"
        assert r.headers["x-router-attempts"] == "1"
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert (await r.read()).endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
async def test_stream_reply_counts_attempts_up_to_the_streaming_one(
        http: aiohttp.ClientSession, path: str) -> None:
    body = {"model": "flaky", "messages": USER, "stream": True, "max_tokens": 20}
    async with http.post(path, json=body) as r:
        assert r.headers["x-router-target"] == "fk:m1"
        assert r.headers["x-router-attempts"] == "2"  # down:m failed, then fk:m1 streamed
        await r.read()


async def test_client_disconnect_cancels_upstream(proxy: ProxyProcess,
                                                  gated: GatedUpstream) -> None:
    gated.gate.clear()
    async with aiohttp.ClientSession(base_url=proxy.base_url) as session:
        r = await session.post(CHAT, json={"model": "gated", "messages": USER,
                                           "stream": True})
        assert r.status == 200
        first = await r.content.readuntil(b"\n\n")
        assert b'"role":"assistant"' in first
        await asyncio.wait_for(gated.started.wait(), 10)
        r.close()  # the client goes away mid-stream
    await asyncio.wait_for(gated.cancelled.wait(), 10)  # the proxy closed the upstream call
    assert not gated.finished.is_set()


# -- call options from headers ----------------------------------------------------------------

async def test_tag_header_counts_against_tag_budget(http: aiohttp.ClientSession) -> None:
    status, _, _ = await post(http, CHAT, {"model": "fast", "messages": USER},
                              {"x-router-tag": "team=search"})
    assert status == 200
    status, body, headers = await post(http, CHAT, {"model": "fast", "messages": USER},
                                       {"x-router-tag": "env=prod, team=blocked"})
    assert status == 429 and body["error"]["code"] == "budget_exceeded"
    assert int(headers["Retry-After"]) > 0


async def test_local_rate_limit_is_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    assert (await post(http, CHAT, {"model": "limited", "messages": USER}))[0] == 200
    status, body, headers = await post(http, MESSAGES, {"model": "limited", "max_tokens": 5,
                                                        "messages": USER})
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    assert int(headers["Retry-After"]) > 0


async def test_timeout_header_bounds_the_call(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, CHAT, {"model": "slow", "messages": USER},
                                 {"x-router-timeout": "300ms"})
    assert status == 504 and body["error"]["type"] == "timeout_error"


@pytest.mark.parametrize(("header", "value"), [
    ("x-router-tag", "no-equals-sign"), ("x-router-timeout", "soon"),
    ("x-router-timeout", "0")])
async def test_bad_call_option_headers_are_400(http: aiohttp.ClientSession, header: str,
                                               value: str) -> None:
    status, body, _ = await post(http, CHAT, {"model": "fast", "messages": USER},
                                 {header: value})
    assert status == 400 and body["error"]["param"] == header


# -- explain and probes -----------------------------------------------------------------------

async def test_explain_returns_the_dry_run_decision(http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, "/v1/router/explain", {
        "model": "fast", "messages": USER, "simulate": {"fk:m1": "rate_limit"}})
    assert status == 200 and body["alias"] == "fast" and body["targets"] == ["fk:m1"]
    assert body["events"][0]["outcome"] == "rate_limit" and body["answered_by"] is None


async def test_explain_of_unknown_model_is_404(http: aiohttp.ClientSession) -> None:
    status, _, _ = await post(http, "/v1/router/explain", {"model": "nope", "messages": USER})
    assert status == 404


async def test_probes(http: aiohttp.ClientSession) -> None:
    async with http.get("/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "up"
    async with http.get("/readyz") as r:
        body = await r.json()
        assert r.status == 200 and body["status"] == "ready"
        assert body["store"] == {"kind": "memory", "ok": True}
        assert body["plan"]["aliases"] == 6


# -- slow clients (slow-loris) ----------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strict(gated: GatedUpstream,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProxyProcess]:
    """A proxy that gives a request head and a body half a second each."""
    path = tmp_path_factory.mktemp("strict") / "routes.yaml"
    path.write_text(yaml.safe_dump(route_file(gated)))
    async with ProxyProcess(path, args=("--header-timeout", "0.5s",
                                        "--body-timeout", "0.5s")) as p:
        yield p


async def _connect(proxy: ProxyProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = proxy.base_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def test_partial_head_is_disconnected(strict: ProxyProcess) -> None:
    reader, writer = await _connect(strict)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, nothing answered
    writer.close()
    async with aiohttp.ClientSession(base_url=strict.base_url) as http:
        assert (await post(http, CHAT, {"model": "fast", "messages": USER}))[0] == 200


async def test_trickled_head_is_disconnected(strict: ProxyProcess) -> None:
    reader, writer = await _connect(strict)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    async with asyncio.timeout(30):
        # One header line every 50 ms: never a whole head, each byte well inside the limit.
        for n in itertools.count():
            try:
                writer.write(f"x-slow-{n}: {n}\r\n".encode())
                await writer.drain()
                data = await asyncio.wait_for(reader.read(1), 0.05)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            assert data == b""  # closed without an answer
            break
    writer.close()


async def test_trickled_body_is_408_and_closed(strict: ProxyProcess) -> None:
    reader, writer = await _connect(strict)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\"")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)  # read to EOF: the proxy closes
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "request_timeout"


# -- the request's log line ---------------------------------------------------------------------

async def _log_events(proxy: ProxyProcess, rid: str) -> list[dict[str, Any]]:
    """The proxy's JSON log events of request ``rid`` (its lines are written in batches)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while True:
        events = [json.loads(line) for line in proxy.log().splitlines()
                  if line.startswith("{") and f'"{rid}"' in line]
        if any(e["event"] == "proxy_request" for e in events) or loop.time() > end:
            return events
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True])
async def test_one_line_per_request_carries_attempts_and_cost(
        proxy: ProxyProcess, http: aiohttp.ClientSession, stream: bool) -> None:
    body = {"model": "flaky", "messages": USER, "max_tokens": 20, "stream": stream}
    async with http.post(CHAT, json=body) as r:
        assert r.status == 200
        rid = r.headers["x-router-request-id"]
        await r.read()
    events = await _log_events(proxy, rid)
    names = [e["event"] for e in events]
    assert names == ["attempt_failed", "attempt_ok", "proxy_request"]  # no route_done
    line = events[-1]
    assert (line["status"], line["alias"], line["target"], line["attempts"]) == (
        200, "flaky", "fk:m1", 2)
    ok = events[1]
    assert line["cost_usd"] == pytest.approx(ok["cost_usd"]) and line["cost_usd"] > 0
