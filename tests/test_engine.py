"""Router.chat end to end: success, retries, fallback by error class, deadlines, per-target
timeouts and resource ownership, against the loopback OpenAI server (real status codes,
headers and error bodies). Providers are openai-compatible at /<name>/v1 of one server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from router import Router
from router.errors import ErrorClass, LlmError, RouteFailed
from router.providers.base import HttpPool
from tests.engine_helpers import (
    KEY,
    MSG,
    Factory,
    TrickleServer,
    chat_path,
    free_port,
    hits,
    json_pieces,
    make_router,
    outcomes,
    provider,
    route_file,
    target,
)
from tests.servers.openai import (
    ERRORS,
    OpenAIServer,
    RecordedRequest,
    Reply,
    completion,
    error_body,
    error_reply,
    json_reply,
    tool_call,
    usage,
)


def stamp(times: list[float], reply: Reply) -> Callable[[RecordedRequest], Reply]:
    """A script entry that notes when the request arrived, then answers ``reply``."""
    def script(_: RecordedRequest) -> Reply:
        times.append(time.monotonic())
        return reply
    return script


# -- success ---------------------------------------------------------------------------------


async def test_chat_returns_text_usage_and_finish_reason(router_for: Factory,
                                                         openai_server: OpenAIServer) -> None:
    openai_server.enqueue(json_reply(completion("Bonjour", usage_=usage(21, 3))),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    r = await router.chat("r", MSG)
    assert r.text == "Bonjour"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (21, 3)
    assert r.finish_reason == "stop"


async def test_chat_sets_target_and_one_ok_attempt_record(router_for: Factory,
                                                          openai_server: OpenAIServer) -> None:
    openai_server.enqueue(json_reply(completion("x", usage_=usage(7, 2))), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    r = await router.chat("r", MSG, request_id="rid-1")
    assert r.target == "a:m"
    assert [(a.target, a.outcome, a.attempt) for a in r.attempts] == [("a:m", "ok", 1)]
    rec = r.attempts[0]
    assert (rec.request_id, rec.alias) == ("rid-1", "r")
    assert (rec.input_tokens, rec.output_tokens) == (7, 2)
    assert rec.latency_ms is not None and rec.latency_ms >= 0
    assert hits(openai_server, "b") == 0


async def test_chat_returns_parsed_tool_calls(router_for: Factory,
                                              openai_server: OpenAIServer) -> None:
    openai_server.enqueue(json_reply(completion(
        None, tool_calls=[tool_call("call_1", "get_weather", '{"city": "Paris"}')],
        finish_reason="tool_calls")), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    r = await router.chat("r", MSG, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
    assert r.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_weather", {"city": "Paris"})]


async def test_cost_is_none_for_an_unpriced_model(router_for: Factory) -> None:
    router = router_for({"r": [target("a", "my-local-model")]})
    r = await router.chat("r", MSG)
    assert r.cost_usd is None
    assert r.attempts[0].cost_usd is None


async def test_cost_uses_the_price_override_of_the_route_file(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(json_reply(completion("x", usage_=usage(1000, 500))),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]}, providers={
        "a": {"models": {"m": {"price": {"input": 2.0, "output": 10.0}}}}})
    r = await router.chat("r", MSG)
    assert r.cost_usd == pytest.approx((1000 * 2.0 + 500 * 10.0) / 1e6)
    assert r.attempts[0].cost_usd == pytest.approx(r.cost_usd)


# -- retries and fallback by error class ----------------------------------------------------


async def test_rate_limit_waits_retry_after_then_succeeds(router_for: Factory,
                                                          openai_server: OpenAIServer) -> None:
    times: list[float] = []
    openai_server.enqueue(
        stamp(times, error_reply("rate_limit_exceeded", headers={"retry-after-ms": "80"})),
        stamp(times, json_reply(completion("ok"))), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    r = await router.chat("r", MSG)
    assert r.text == "ok"
    gap = times[1] - times[0]
    assert 0.075 <= gap < 0.5, gap  # the backoff alone would be ~1 ms
    first = r.attempts[0]
    assert first.error_class is ErrorClass.RATE_LIMIT and first.status == 429
    assert first.retry_in_ms == pytest.approx(80.0)
    assert first.retry_after_used


async def test_server_error_is_retried_up_to_attempts_then_falls_back(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(*[error_reply("server_error")] * 3, path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert hits(openai_server, "a") == 3
    assert hits(openai_server, "b") == 1
    assert outcomes(r.attempts) == [("a:m", "error", "server")] * 3 + [("b:m", "ok", None)]
    assert [a.attempt for a in r.attempts] == [1, 2, 3, 4]


@pytest.mark.parametrize("error", ["invalid_api_key", "unsupported_country_region_territory",
                                   "model_not_found", "insufficient_quota"])
async def test_auth_permission_not_found_and_quota_fall_back_without_retry(
        router_for: Factory, openai_server: OpenAIServer, error: str) -> None:
    openai_server.enqueue(error_reply(error), error_reply(error), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert hits(openai_server, "a") == 1
    assert r.attempts[0].status == ERRORS[error][0]
    assert r.attempts[0].retry_in_ms is None


async def test_invalid_request_fails_at_once_without_fallback(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("invalid_request"), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG)
    e = info.value
    assert e.error_class is ErrorClass.INVALID_REQUEST
    assert e.status == 400 and e.target == "a:m"
    assert outcomes(e.attempts) == [("a:m", "error", "invalid_request")]
    assert hits(openai_server, "a") == 1
    assert hits(openai_server, "b") == 0


async def test_every_target_failing_raises_route_failed_with_every_attempt(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(*[error_reply("server_error")] * 2, path=chat_path("a"))
    openai_server.enqueue(*[error_reply("overloaded")] * 2, path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]})
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG)
    e = info.value
    assert outcomes(e.attempts) == [("a:m", "error", "server")] * 2 + [
        ("b:m", "error", "overloaded")] * 2
    assert e.error_class is ErrorClass.OVERLOADED  # the last real attempt's class
    assert e.status == 503 and e.target == "b:m"
    assert isinstance(e, LlmError) and e.last_error is not None


async def test_context_window_falls_back_to_a_window_that_fits_and_skips_smaller_ones(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    # The error says the prompt is 130512 tokens: "small" (100k) cannot take it, "big" can.
    openai_server.enqueue(error_reply("context_length_exceeded"), path=chat_path("a"))
    router = router_for(
        {"r": [target("a"), target("small"), target("big")]},
        providers={"a": {"models": {"m": {"context_window": 128_000}}},
                   "small": {"models": {"m": {"context_window": 100_000}}},
                   "big": {"models": {"m": {"context_window": 1_000_000}}}})
    r = await router.chat("r", MSG)
    assert r.target == "big:m"
    assert outcomes(r.attempts) == [("a:m", "error", "context_window"),
                                    ("small:m", "skipped", "context_window"),
                                    ("big:m", "ok", None)]
    assert hits(openai_server, "a") == 1
    assert hits(openai_server, "small") == 0


async def test_should_retry_false_prevents_the_retry_of_a_server_error(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("server_error", headers={"x-should-retry": "false"}),
                          path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert hits(openai_server, "a") == 1
    assert outcomes(r.attempts)[0] == ("a:m", "error", "server")


async def test_retry_after_above_max_retry_after_falls_back_instead_of_waiting(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("rate_limit_exceeded", headers={"retry-after": "30"}),
                          path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]},
                        retry={"attempts": 3, "max_retry_after": "1s"})
    start = time.monotonic()
    r = await router.chat("r", MSG)
    assert time.monotonic() - start < 0.5
    assert r.target == "b:m"
    assert hits(openai_server, "a") == 1
    assert r.attempts[0].retry_in_ms is None


async def test_route_on_server_fail_stops_the_route_at_the_first_server_error(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    router = router_for({"r": {"chain": [target("a"), target("b")], "on": {"server": "fail"}}},
                        retry={"attempts": 3})
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG)
    assert info.value.error_class is ErrorClass.SERVER
    assert hits(openai_server, "a") == 1
    assert hits(openai_server, "b") == 0


async def test_route_on_auth_retry_retries_auth_errors(router_for: Factory,
                                                       openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("invalid_api_key"), json_reply(completion("second try")),
                          path=chat_path("a"))
    router = router_for({"r": {"chain": [target("a"), target("b")], "on": {"auth": "retry"}}},
                        retry={"attempts": 2})
    r = await router.chat("r", MSG)
    assert r.text == "second try"
    assert outcomes(r.attempts) == [("a:m", "error", "auth"), ("a:m", "ok", None)]
    assert hits(openai_server, "b") == 0


async def test_error_rule_reclassifies_a_400_as_context_window(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    # A vLLM-style 400 that the built-in table reads as invalid_request (fail now).
    openai_server.enqueue(json_reply(
        {"error": {"message": "Input is too long for this model: 9000 > 8192", "type":
                   "BadRequestError", "code": 400}}, status=400), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, errors=[
        {"provider": "a", "status": 400, "match": "input is too long", "class": "context_window"}])
    r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert outcomes(r.attempts) == [("a:m", "error", "context_window"), ("b:m", "ok", None)]


async def test_without_an_error_rule_the_same_400_fails_now(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(json_reply(
        {"error": {"message": "Input is too long for this model: 9000 > 8192", "type":
                   "BadRequestError", "code": 400}}, status=400), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG)
    assert info.value.error_class is ErrorClass.INVALID_REQUEST
    assert hits(openai_server, "b") == 0


# -- the call's deadline ----------------------------------------------------------------------


async def test_call_timeout_bounds_retries_and_fallbacks_together(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(json=completion("late"), first_byte_delay=10),
                          Reply(json=completion("late"), first_byte_delay=10),
                          path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    start = time.monotonic()
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.28 <= elapsed < 0.6, elapsed
    e = info.value
    assert e.error_class is ErrorClass.TIMEOUT
    assert hits(openai_server, "b") == 0
    for rec in e.attempts:
        if rec.target == "b:m":
            assert (rec.outcome, rec.reason) == ("skipped", "deadline")
    assert e.attempts[0].timeout_kind == "deadline"


async def test_route_deadline_bounds_the_call(router_for: Factory,
                                              openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(json=completion("late"), first_byte_delay=10),
                          Reply(json=completion("late"), first_byte_delay=10),
                          path=chat_path("a"))
    router = router_for({"r": {"chain": [target("a"), target("b")], "deadline": "300ms"}},
                        retry={"attempts": 3})
    start = time.monotonic()
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG)
    assert 0.28 <= time.monotonic() - start < 0.6
    assert info.value.error_class is ErrorClass.TIMEOUT
    assert hits(openai_server, "b") == 0


async def test_call_timeout_leaves_time_for_a_fast_fallback(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    # a fails fast (401), b answers well within the call's timeout
    openai_server.enqueue(error_reply("invalid_api_key"), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    r = await router.chat("r", MSG, timeout=2.0)
    assert r.target == "b:m"


# -- per-target timeouts ------------------------------------------------------------------------


async def test_unreachable_target_is_a_network_error_and_falls_back(
        openai_server: OpenAIServer) -> None:
    data = route_file(openai_server.port, {"r": ["dead:m", "b:m"]}, names=["b"])
    data["providers"]["dead"] = {**provider(openai_server.port, "dead"),
                                 "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    async with Router.from_dict(data) as router:
        r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert outcomes(r.attempts) == [("dead:m", "error", "network")] * 2 + [("b:m", "ok", None)]
    assert r.attempts[0].status is None


async def test_first_token_timeout_fails_the_attempt_with_kind_first_token(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(json=completion("late"), first_byte_delay=10),
                          path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1},
                        timeout={"first_token": "100ms"})
    start = time.monotonic()
    r = await router.chat("r", MSG)
    assert time.monotonic() - start < 0.6
    assert r.target == "b:m"
    first = r.attempts[0]
    assert (first.outcome, first.error_class, first.timeout_kind) == (
        "error", ErrorClass.TIMEOUT, "first_token")


async def test_headers_held_back_past_first_token_is_a_first_token_timeout(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(json=completion("late"), delay=10), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1},
                        timeout={"first_token": "100ms"})
    r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert r.attempts[0].timeout_kind == "first_token"


async def test_body_trickling_past_total_is_a_total_timeout() -> None:
    # Each piece comes within idle and first_token, the whole body takes ~8 x 40 ms > 150 ms.
    async with TrickleServer(json_pieces(completion("slow"), 8), gap=0.04) as slow, \
            OpenAIServer() as fast:
        data = route_file(fast.port, {"r": ["slow:m", "b:m"]}, names=["b"], retry={
            "attempts": 1}, timeout={"connect": "100ms", "first_token": "100ms",
                                     "idle": "100ms", "total": "150ms"})
        data["providers"]["slow"] = {**provider(slow.port, "slow")}
        async with Router.from_dict(data) as router:
            start = time.monotonic()
            r = await router.chat("r", MSG)
            assert time.monotonic() - start < 0.5
    assert r.target == "b:m"
    first = r.attempts[0]
    assert (first.target, first.error_class, first.timeout_kind) == (
        "slow:m", ErrorClass.TIMEOUT, "total")


async def test_a_total_timeout_is_retried_like_any_timeout() -> None:
    async with TrickleServer(json_pieces(completion("slow"), 8), gap=0.04) as slow:
        data = route_file(slow.port, {"r": ["slow:m"]}, names=["slow"], retry={"attempts": 2},
                          timeout={"connect": "100ms", "first_token": "100ms",
                                   "idle": "100ms", "total": "120ms"})
        async with Router.from_dict(data) as router:
            with pytest.raises(RouteFailed) as info:
                await router.chat("r", MSG)
    assert slow.requests == 2
    assert info.value.error_class is ErrorClass.TIMEOUT


# -- resources --------------------------------------------------------------------------------


async def test_leaving_async_with_closes_the_pool_and_its_connections(
        openai_server: OpenAIServer) -> None:
    async with make_router(openai_server, {"r": [target("a")]}) as router:
        await router.chat("r", MSG)
        assert openai_server.open_connections == 1  # kept alive in the pool
    assert await openai_server.wait_connections(0) == 0
    with pytest.raises(RuntimeError):
        await router.chat("r", MSG)


async def test_aclose_twice_is_fine(openai_server: OpenAIServer) -> None:
    router = make_router(openai_server, {"r": [target("a")]})
    await router.chat("r", MSG)
    await router.aclose()
    await router.aclose()
    assert await openai_server.wait_connections(0) == 0


async def test_router_does_not_close_a_session_it_does_not_own(
        openai_server: OpenAIServer) -> None:
    async with aiohttp.ClientSession() as session:
        pool = HttpPool(session=session)
        data = route_file(openai_server.port, {"r": [target("a")]}, names=["a"])
        async with Router.from_dict(data, http=pool) as router:
            await router.chat("r", MSG)
        assert not session.closed
        async with session.get(f"http://127.0.0.1:{openai_server.port}/ping") as resp:
            assert resp.status == 200


async def test_router_does_not_close_a_pool_it_was_given(openai_server: OpenAIServer) -> None:
    data = route_file(openai_server.port, {"r": [target("a")]}, names=["a"])
    async with HttpPool() as pool:
        async with Router.from_dict(data, http=pool) as first:
            await first.chat("r", MSG)
        assert not pool.closed
        async with Router.from_dict(data, http=pool) as second:  # the pool is still usable
            r = await second.chat("r", MSG)
        assert r.text == "Hello!"
    assert await openai_server.wait_connections(0) == 0


async def test_api_key_is_sent_as_bearer_token(router_for: Factory,
                                               openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a")]})
    await router.chat("r", MSG)
    assert openai_server.requests[0].headers["Authorization"] == f"Bearer {KEY}"


async def test_route_failed_error_body_is_the_providers_message(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("invalid_request"), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    with pytest.raises(RouteFailed) as info:
        await router.chat("r", MSG)
    assert error_body("invalid_request")["error"]["message"] in str(info.value)


async def test_concurrent_calls_share_one_router(router_for: Factory) -> None:
    router = router_for({"r": [target("a")]})
    results = await asyncio.gather(*(router.chat("r", MSG) for _ in range(10)))
    assert [r.text for r in results] == ["Hello!"] * 10
    assert len({r.request_id for r in results}) == 10


async def test_retry_after_beyond_the_call_deadline_falls_back_at_once(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("rate_limit_exceeded", headers={"retry-after": "5"}),
                          path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    start = time.monotonic()
    r = await router.chat("r", MSG, timeout=1.0)
    assert time.monotonic() - start < 0.5
    assert r.target == "b:m"
    assert hits(openai_server, "a") == 1
