"""The failure scenarios of issue 11, each against a loopback OpenAI-shaped provider that fails on
purpose: what the caller received, and what the upstream saw (how many requests, the gaps
between them). Providers ``a`` (the primary) and ``b`` (the fallback) share one scripted server,
told apart by path. Waits are bounded below (a retry never comes early); the few upper bounds
are generous. (Mid-stream cuts, stalls and replays are tests/test_stream_recovery.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, RouteFailed
from router.types import ChatChunk
from tests.engine_helpers import MSG, Clock, chat_path, hits, route_file
from tests.servers.base import RecordedRequest, gaps
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    completion,
    error_reply,
    json_reply,
    text_events,
    usage,
)

FOREVER = 3600.0  # a server wait that ends only when the server closes
CHAIN = {"r": ["a:m", "b:m"]}


def requests_to(server: OpenAIServer, name: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == chat_path(name)]


def router_for(server: OpenAIServer, models: dict[str, Any] = CHAIN, *,
               clock: Callable[[], float] | None = None, **kw: Any) -> Router:
    return Router.from_dict(route_file(server.port, models, names=("a", "b"), **kw),
                            clock=clock)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


def answer(text: str, model: str = "served-model") -> Reply:
    return json_reply(completion(text, model=model, usage_=usage(40, 7)))


# -- rate limits ------------------------------------------------------------------------------


async def test_429_with_retry_after_waits_for_it(server: OpenAIServer) -> None:
    server.enqueue(error_reply("rate_limit_exceeded", headers={"Retry-After": "1"}),
                   answer("after the wait"), path=chat_path("a"))
    async with router_for(server) as router:
        r = await router.chat("r", MSG)
    assert r.text == "after the wait" and r.target == "a:m"
    sent = requests_to(server, "a")
    assert len(sent) == 2 and hits(server, "b") == 0
    assert gaps(sent)[0] >= 0.95  # waited the second the server asked for
    first = r.attempts[0]
    assert (first.error_class, first.retry_after_used, first.retry_in_ms) == (
        ErrorClass.RATE_LIMIT, True, 1000.0)


async def test_persistent_429_without_retry_after_backs_off_then_falls_back(
        server: OpenAIServer) -> None:
    server.answer_always(error_reply("rate_limit_exceeded"), path=chat_path("a"))
    server.enqueue(answer("from b"), path=chat_path("b"))
    retry = {"attempts": 3, "initial": "100ms", "max": "1s", "jitter": "none"}
    async with router_for(server, retry=retry) as router:
        r = await router.chat("r", MSG)
    assert r.text == "from b" and r.target == "b:m"
    sent = requests_to(server, "a")
    assert len(sent) == 3  # the retry budget, never more
    waits = gaps(sent)
    assert waits[0] >= 0.095 and waits[1] >= 0.195  # exponential backoff: 100 ms, 200 ms
    assert [(a.target, a.error_class, a.retry_after_used) for a in r.attempts] == [
        ("a:m", ErrorClass.RATE_LIMIT, False), ("a:m", ErrorClass.RATE_LIMIT, False),
        ("a:m", ErrorClass.RATE_LIMIT, False), ("b:m", None, False)]


# -- server errors ----------------------------------------------------------------------------


async def test_a_500_once_retries_the_same_target(server: OpenAIServer) -> None:
    server.enqueue(error_reply("server_error"), answer("second try"), path=chat_path("a"))
    async with router_for(server) as router:
        r = await router.chat("r", MSG)
    assert r.text == "second try" and r.target == "a:m"
    assert hits(server, "a") == 2 and hits(server, "b") == 0
    assert [(a.target, a.outcome, a.error_class) for a in r.attempts] == [
        ("a:m", "error", ErrorClass.SERVER), ("a:m", "ok", None)]


async def test_a_persistent_503_falls_back_within_the_retry_budget(
        server: OpenAIServer) -> None:
    server.answer_always(error_reply("overloaded"), path=chat_path("a"))
    server.enqueue(answer("from b"), path=chat_path("b"))
    async with router_for(server, retry={"attempts": 2}) as router:
        r = await router.chat("r", MSG)
    assert r.text == "from b" and r.target == "b:m"
    assert hits(server, "a") == 2 and hits(server, "b") == 1
    assert [a.error_class for a in r.attempts[:2]] == [ErrorClass.OVERLOADED] * 2


# -- the connection ---------------------------------------------------------------------------


async def test_a_reset_before_headers_is_retried(server: OpenAIServer) -> None:
    server.enqueue(Reply(drop=True), answer("on a new connection"), path=chat_path("a"))
    async with router_for(server) as router:
        r = await router.chat("r", MSG)
    assert r.text == "on a new connection" and r.target == "a:m"
    assert hits(server, "a") == 2 and hits(server, "b") == 0
    assert r.attempts[0].error_class is ErrorClass.NETWORK


async def test_a_provider_that_keeps_resetting_falls_back(server: OpenAIServer) -> None:
    server.answer_always(Reply(drop=True), path=chat_path("a"))
    server.enqueue(answer("from b"), path=chat_path("b"))
    async with router_for(server) as router:
        r = await router.chat("r", MSG)
    assert r.target == "b:m" and hits(server, "a") == 2  # the retry budget
    assert [a.error_class for a in r.attempts[:2]] == [ErrorClass.NETWORK] * 2


async def test_no_response_at_all_falls_back_after_one_first_token_timeout(
        server: OpenAIServer) -> None:
    server.answer_always(Reply(json=completion("never"), delay=FOREVER), path=chat_path("a"))
    server.enqueue(answer("from b"), path=chat_path("b"))
    async with router_for(server, timeout={"first_token": "200ms"}) as router:
        r = await router.chat("r", MSG)
    assert r.text == "from b" and r.target == "b:m"
    assert hits(server, "a") == 1  # a silent provider is not asked again while b is there
    first = r.attempts[0]
    assert (first.error_class, first.timeout_kind) == (ErrorClass.TIMEOUT, "first_token")
    assert 150 <= (first.latency_ms or 0) < 2000


async def test_a_silent_stream_falls_back_after_one_first_token_timeout(
        server: OpenAIServer) -> None:
    server.answer_always(Reply(events=text_events(["never"]), first_byte_delay=FOREVER),
                         path=chat_path("a"))
    server.enqueue(Reply(events=text_events(["from ", "b"])), path=chat_path("b"))
    async with router_for(server, timeout={"first_token": "200ms"}) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "from b" and chunks[-1].target == "b:m"
    assert hits(server, "a") == 1


async def test_the_last_target_of_a_chain_retries_a_first_token_timeout(
        server: OpenAIServer) -> None:
    server.enqueue(Reply(json=completion("late"), delay=FOREVER), answer("second try"),
                   path=chat_path("a"))
    async with router_for(server, {"solo": ["a:m"]},
                          timeout={"first_token": "200ms"}) as router:
        r = await router.chat("solo", MSG)
    assert r.text == "second try" and hits(server, "a") == 2


@pytest.mark.parametrize(("chain", "action", "asked"), [
    (["a:m", "b:m"], "fail", 1),  # stop at once instead of trying b
    (["a:m"], "fallback", 1),  # the last target is not retried either
])
async def test_on_overrides_what_a_first_token_timeout_does(
        server: OpenAIServer, chain: list[str], action: str, asked: int) -> None:
    server.answer_always(Reply(json=completion("never"), delay=FOREVER), path=chat_path("a"))
    models = {"r": {"chain": chain, "on": {"timeout": action}}}
    async with router_for(server, models, timeout={"first_token": "200ms"}) as router:
        with pytest.raises(RouteFailed) as caught:
            await router.chat("r", MSG)
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert hits(server, "a") == asked and hits(server, "b") == 0


async def test_a_first_token_after_a_long_delay_falls_back_at_the_adaptive_limit(
        server: OpenAIServer) -> None:
    # No first_token anywhere: the adaptive limit (base 200 ms here, for a short prompt on an
    # ordinary model) applies; the server would send its first event after 20 s.
    server.answer_always(Reply(events=text_events(["late"]), first_byte_delay=20.0),
                         path=chat_path("a"))
    server.enqueue(Reply(events=text_events(["from ", "b"])), path=chat_path("b"))
    doc = route_file(server.port, CHAIN, names=("a", "b"))
    doc["defaults"]["timeout"] = {"connect": "1s", "first_token_base": "200ms", "total": "30s",
                                  "idle": "1s"}
    began = time.monotonic()
    async with Router.from_dict(doc) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "from b"
    assert hits(server, "a") == 1
    first = chunks[-1].attempts[0]  # type: ignore[index]
    assert (first.error_class, first.timeout_kind) == (ErrorClass.TIMEOUT, "first_token")
    assert 150 <= (first.latency_ms or 0) < 5000
    assert time.monotonic() - began < 15  # nowhere near the 20 s the server would take


# -- the end of a stream ----------------------------------------------------------------------


async def test_no_done_after_finish_reason_is_done_at_once_with_usage(
        server: OpenAIServer) -> None:
    # finish_reason and usage arrive, then neither [DONE] nor the end of the body: the
    # connection stays open. The answer is whole; it is not held until the idle timeout.
    events = text_events(["all ", "here"], usage_=usage(21, 2))
    server.enqueue(Reply(events=events, done=False, stall_after=len(events)),
                   path=chat_path("a"))
    began = time.monotonic()
    async with router_for(server, timeout={"idle": "30s", "total": "60s"}) as router:
        chunks = [c async for c in router.stream("r", MSG)]
        elapsed = time.monotonic() - began
        assert await server.wait_connections(0, timeout=5.0) == 0  # freed, not pooled open
    assert "".join(c.delta for c in chunks) == "all here"
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (21, 2)
    assert final.attempts is not None and [a.outcome for a in final.attempts] == ["ok"]
    assert elapsed < 10  # far below the 30 s idle timeout it would have waited
    assert hits(server, "a") == 1 and hits(server, "b") == 0


async def test_no_done_and_the_body_ends_is_a_whole_answer(server: OpenAIServer) -> None:
    server.enqueue(Reply(events=text_events(["ok"]), done=False), path=chat_path("a"))
    async with router_for(server) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "ok" and chunks[-1].usage is not None


async def test_finish_reason_without_usage_still_waits_for_done(server: OpenAIServer) -> None:
    # Without usage, only [DONE] (or the end of the body) says nothing more is coming.
    events = text_events(["x"])[:-1]  # no usage chunk
    server.enqueue(Reply(events=events), path=chat_path("a"))
    async with router_for(server) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "x" and chunks[-1].finish_reason == "stop"


# -- errors that are about the request ------------------------------------------------------


async def test_a_400_context_length_goes_to_the_next_target_without_a_retry(
        server: OpenAIServer) -> None:
    server.enqueue(error_reply("context_length_exceeded"), path=chat_path("a"))
    server.enqueue(answer("bigger window"), path=chat_path("b"))
    async with router_for(server, retry={"attempts": 3}) as router:
        r = await router.chat("r", MSG)
    assert r.text == "bigger window" and r.target == "b:m"
    assert hits(server, "a") == 1 and hits(server, "b") == 1
    assert r.attempts[0].error_class is ErrorClass.CONTEXT_WINDOW


async def test_a_400_content_filter_is_propagated_without_a_retry(server: OpenAIServer) -> None:
    server.enqueue(error_reply("content_policy_violation"), path=chat_path("a"))
    async with router_for(server, retry={"attempts": 3}) as router:
        with pytest.raises(RouteFailed) as caught:
            await router.chat("r", MSG)
    err = caught.value
    assert err.error_class is ErrorClass.CONTENT_POLICY and err.status == 400
    assert err.last_error is not None
    assert "safety system" in (err.last_error.provider_message or "")
    assert hits(server, "a") == 1 and hits(server, "b") == 0
    assert len(err.attempts) == 1


# -- a primary that is down for a while --------------------------------------------------------


async def test_a_primary_down_for_60s_is_probed_and_back_within_one_cooldown(
        server: OpenAIServer) -> None:
    clock = Clock()
    start = clock.now
    asked: list[float] = []  # when (on the test's clock) the primary was sent a request

    def primary(_: RecordedRequest) -> Reply:
        asked.append(clock.now - start)
        return answer("from a") if clock.now - start >= 60 else error_reply("overloaded")

    server.answer_always(primary, path=chat_path("a"))
    server.answer_always(answer("from b"), path=chat_path("b"))
    served: list[tuple[float, str]] = []
    async with router_for(server, clock=clock, retry={"attempts": 1},
                          breaker={"failures": 3, "cooldown": "30s"}) as router:
        for _ in range(20):  # one call every 5 s of the test's clock: 100 s in all
            r = await router.chat("r", MSG)
            served.append((clock.now - start, r.target))
            clock.now += 5
    assert len(served) == 20  # every call was answered
    back = next(t for t, target in served if target == "a:m")
    assert 60 <= back <= 60 + 30  # on the primary again within one cooldown of its recovery
    assert all(target == ("b:m" if t < back else "a:m") for t, target in served)
    # Three failures opened the breaker; while open the primary got one probe per cooldown
    # (a failed probe opens it again), then every call once a probe was answered.
    assert [t for t in asked if t < back] == [0, 5, 10, 40]
    assert [t for t in asked if t >= back] == [t for t, _ in served if t >= back]
    assert [a.outcome for a in r.attempts] == ["ok"]  # the last call went straight to it


# -- fallback accounting -----------------------------------------------------------------------


async def test_the_answer_names_the_model_that_served_with_its_usage_and_cost(
        server: OpenAIServer) -> None:
    server.answer_always(error_reply("server_error"), path=chat_path("a"))
    server.enqueue(answer("from b", model="b-model-2025"), path=chat_path("b"))
    price = {"price": {"input": 1.0, "output": 2.0}}
    async with router_for(server, retry={"attempts": 1},
                          providers={"b": {"models": {"m": price}}}) as router:
        r = await router.chat("r", MSG)
    assert (r.target, r.model) == ("b:m", "b-model-2025")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (40, 7)
    assert r.cost_usd == pytest.approx((40 * 1.0 + 7 * 2.0) / 1e6)
    a_rec, b_rec = r.attempts
    assert (a_rec.target, a_rec.outcome, a_rec.input_tokens, a_rec.cost_usd) == (
        "a:m", "error", None, None)
    assert (b_rec.target, b_rec.outcome, b_rec.input_tokens, b_rec.output_tokens) == (
        "b:m", "ok", 40, 7)
    assert b_rec.cost_usd == pytest.approx(r.cost_usd)


async def test_a_streamed_fallback_names_the_target_that_served_with_its_usage(
        server: OpenAIServer) -> None:
    server.answer_always(error_reply("server_error"), path=chat_path("a"))
    server.enqueue(Reply(events=text_events(["b ", "said"], usage_=usage(30, 2))),
                   path=chat_path("b"))
    async with router_for(server, retry={"attempts": 1}) as router:
        chunks: list[ChatChunk] = [c async for c in router.stream("r", MSG)]
    final = chunks[-1]
    assert {c.target for c in chunks} == {"b:m"}
    assert final.usage is not None and final.usage.input_tokens == 30
    assert final.attempts is not None
    assert [(a.target, a.outcome) for a in final.attempts] == [("a:m", "error"),
                                                               ("b:m", "ok")]
    assert final.attempts[1].output_tokens == 2
