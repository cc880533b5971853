"""The guard every route's handler is wrapped in (no aiohttp middleware): requests no route
takes, probes, keys and draining; and the whole reply's bytes, written without dumps_json's
read-back when the reply holds text alone."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.engine.router import Router
from router.providers._json import dumps_json
from router.server._anthropic_shapes import message_body
from router.server._openai_shapes import completion_body
from router.server.app import create_app
from router.server.calls import _reply_json
from router.server.proxy import Proxy, Settings
from router.state import make_store
from router.types import ChatResponse, ToolCall, Usage


def _proxy(keys: frozenset[str] = frozenset()) -> Proxy:
    router = Router.from_dict({"version": 1, "providers": {"fk": {"kind": "fake"}},
                               "models": {"fast": ["fk:m"]}})
    st = router.plan.state
    return Proxy(router, make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix),
                 Settings(keys=keys))


async def test_unmatched_requests_answer_in_the_api_shape_with_a_request_id() -> None:
    proxy = _proxy()
    async with TestClient(TestServer(create_app(proxy))) as client:
        for method, path, status, code in [("GET", "/nope", 404, "not_found"),
                                           ("GET", "/v1/chat/completions", 405,
                                            "method_not_allowed"),
                                           ("POST", "/healthz", 405, "method_not_allowed"),
                                           ("GET", "/v1/models/a/b", 404, "not_found")]:
            r = await client.request(method, path)
            assert r.status == status, path
            assert (await r.json())["error"]["code"] == code
            assert r.headers["x-router-request-id"].startswith("req_")
        r = await client.get("/v1/models/fast")  # a dynamic route still matches
        assert r.status == 200
    assert proxy.in_flight == 0


async def test_keys_and_draining_come_before_a_missing_route_but_not_for_probe_paths() -> None:
    proxy = _proxy(frozenset({"sk-proxy-0123456789"}))
    async with TestClient(TestServer(create_app(proxy))) as client:
        assert (await client.get("/nope")).status == 401
        assert (await client.post("/healthz")).status == 405  # a probe's path needs no key
        ok = {"Authorization": "Bearer sk-proxy-0123456789"}
        assert (await client.get("/nope", headers=ok)).status == 404
        proxy.draining = True
        r = await client.get("/nope", headers=ok)
        assert r.status == 503 and (await r.json())["error"]["code"] == "draining"
        assert (await client.post("/healthz")).status == 405


async def test_drain_waits_for_the_request_in_flight_then_for_none() -> None:
    proxy = _proxy()
    assert await proxy.drain(5.0) == 0  # nothing in flight: at once
    task = asyncio.current_task()
    assert task is not None
    gen = proxy.begin(task)
    assert proxy.in_flight == 1 and gen.users == 1

    async def end_soon() -> None:
        await asyncio.sleep(0.05)
        proxy.end(task, gen)

    ender = asyncio.ensure_future(end_soon())
    assert await proxy.drain(5.0) == 0
    await ender
    assert proxy.in_flight == 0 and gen.users == 0
    await proxy.aclose()


def _resp(text: str, **kw: Any) -> ChatResponse:
    return ChatResponse(text, kw.pop("tool_calls", []), "stop", kw.pop("usage", Usage(3, 4)),
                        "m", "fk:m", **kw)


@pytest.mark.parametrize("resp", [
    _resp("hello"),
    _resp("héllo wörld ✓"),
    _resp("line\u2028break"),
    _resp("lone \ud800 surrogate"),
    _resp("", tool_calls=[ToolCall("c1", "f", {"x": math.nan})]),
    _resp("t", provider_state={"v": math.inf}),
    _resp("t", usage=Usage(math.nan, 4)),  # type: ignore[arg-type]
    _resp("<b>&amp;</b>"),
], ids=["ascii", "unicode", "u2028", "surrogate", "nan-args", "inf-state", "nan-usage",
        "html"])
@pytest.mark.parametrize("shape", [completion_body, message_body])
def test_reply_bytes_are_dumps_jsons(resp: ChatResponse, shape: Any) -> None:
    body = shape(resp, "req_1")
    assert _reply_json(body, resp) == dumps_json(body, escape=True)


async def test_a_body_inflated_past_the_limit_is_413() -> None:
    router = Router.from_dict({"version": 1, "providers": {"fk": {"kind": "fake"}},
                               "models": {"fast": ["fk:m"]}})
    st = router.plan.state
    proxy = Proxy(router, make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix),
                  Settings(max_body_bytes=2000))
    small = gzip.compress(json.dumps({"model": "fast", "messages": [
        {"role": "user", "content": "hi"}]}).encode())
    big = gzip.compress(json.dumps({"model": "fast", "messages": [
        {"role": "user", "content": "x" * 5000}]}).encode())
    assert len(big) < 2000
    gz = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with TestClient(TestServer(create_app(proxy))) as client:
        r = await client.post("/v1/chat/completions", data=small, headers=gz)
        assert r.status == 200
        r = await client.post("/v1/chat/completions", data=big, headers=gz)
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "request_too_large"
