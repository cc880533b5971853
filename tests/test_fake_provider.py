"""The scripted ``fake`` provider through the Router: each scripted outcome takes the same engine
path as a real provider's failure (classes, retries, Retry-After, timeouts, stream commitment,
attempt records); the script cycles."""

from __future__ import annotations

import time
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, RouteFailed, StreamInterruptedError
from tests.engine_helpers import MSG, collect, outcomes

TIMEOUTS = {"connect": "1s", "first_token": "50ms", "total": "1s", "idle": "1s"}


def fake_router(script: list[Any], *, attempts: int = 2, fallback: bool = False,
                text: str | None = None) -> Router:
    providers: dict[str, Any] = {"f": {"kind": "fake", "script": script}}
    if text is not None:
        providers["f"]["text"] = text
    chain = ["f:echo"]
    if fallback:
        providers["g"] = {"kind": "fake", "script": ["ok"], "text": "from g"}
        chain.append("g:echo")
    return Router.from_dict({
        "version": 1,
        "defaults": {"timeout": TIMEOUTS,
                     "retry": {"attempts": attempts, "initial": "1ms", "max": "5ms"}},
        "providers": providers,
        "models": {"r": chain},
    })


async def test_fake_ok_answers_with_its_text_and_one_ok_record() -> None:
    async with fake_router(["ok"], text="Hello from {target}.") as router:
        r = await router.chat("r", MSG)
    assert r.text == "Hello from f:echo."
    assert r.finish_reason == "stop"
    assert r.target == "f:echo"
    assert outcomes(r.attempts) == [("f:echo", "ok", None)]
    assert r.usage.input_tokens >= 1 and r.usage.output_tokens >= 1
    assert r.cost_usd == 0.0  # scripted calls are free


async def test_fake_rate_limit_waits_its_retry_after_then_retries() -> None:
    async with fake_router([{"outcome": "rate_limit", "retry_after": "60ms"}, "ok"]) as router:
        start = time.monotonic()
        r = await router.chat("r", MSG)
        elapsed = time.monotonic() - start
    assert 0.055 <= elapsed < 0.5, elapsed
    assert outcomes(r.attempts) == [("f:echo", "error", "rate_limit"), ("f:echo", "ok", None)]
    first = r.attempts[0]
    assert first.status == 429
    assert first.retry_in_ms == pytest.approx(60.0)
    assert first.retry_after_used


async def test_fake_server_error_is_retried_then_falls_back() -> None:
    async with fake_router(["server"], fallback=True) as router:
        r = await router.chat("r", MSG)
    assert r.text == "from g"
    assert outcomes(r.attempts) == [("f:echo", "error", "server")] * 2 + [
        ("g:echo", "ok", None)]
    assert r.attempts[0].status == 500


async def test_fake_auth_error_falls_back_without_retry() -> None:
    async with fake_router(["auth"], attempts=3, fallback=True) as router:
        r = await router.chat("r", MSG)
    assert outcomes(r.attempts) == [("f:echo", "error", "auth"), ("g:echo", "ok", None)]


async def test_fake_timeout_fires_the_first_token_timeout() -> None:
    async with fake_router(["timeout"], attempts=1) as router:
        start = time.monotonic()
        with pytest.raises(RouteFailed) as info:
            await router.chat("r", MSG)
        assert 0.045 <= time.monotonic() - start < 0.5
    e = info.value
    assert e.error_class is ErrorClass.TIMEOUT
    assert [(a.error_class, a.timeout_kind) for a in e.attempts] == [
        (ErrorClass.TIMEOUT, "first_token")]


async def test_fake_latency_longer_than_first_token_times_out() -> None:
    async with fake_router([{"outcome": "ok", "latency": "2s"}], attempts=1) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("r", MSG)
    assert info.value.attempts[0].timeout_kind == "first_token"


async def test_fake_stream_interrupted_fails_mid_stream_with_the_partial_text() -> None:
    async with fake_router(["stream_interrupted"], fallback=True,
                           text="one two three four five six") as router:
        received: list[str] = []
        with pytest.raises(StreamInterruptedError) as info:
            async for c in router.stream("r", MSG):
                received.append(c.delta)
    e = info.value
    assert received and e.partial_text == "".join(received) == "one two three"
    assert e.target == "f:echo"
    assert e.cause_class is ErrorClass.NETWORK


async def test_fake_stream_ok_streams_word_by_word_with_usage_last() -> None:
    async with fake_router(["ok"], text="a b c") as router:
        chunks = await collect(router.stream("r", MSG))
    assert [c.delta for c in chunks[:-1]] == ["a", " b", " c"]
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage is not None
    assert last.attempts is not None and outcomes(last.attempts) == [("f:echo", "ok", None)]


async def test_fake_stream_falls_back_before_the_first_chunk() -> None:
    async with fake_router(["server"], attempts=1, fallback=True) as router:
        chunks = await collect(router.stream("r", MSG))
    assert "".join(c.delta for c in chunks) == "from g"
    assert {c.target for c in chunks} == {"g:echo"}


async def test_fake_script_cycles() -> None:
    async with fake_router(["ok", "server"], attempts=1) as router:
        results: list[str] = []
        for _ in range(4):
            try:
                results.append((await router.chat("r", MSG)).attempts[0].outcome)
            except RouteFailed as e:
                results.append(e.error_class.value)
    assert results == ["ok", "server", "ok", "server"]


async def test_fake_outcome_with_a_status_override() -> None:
    async with fake_router([{"outcome": "server", "status": 502}], attempts=1) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("r", MSG)
    assert info.value.status == 502
