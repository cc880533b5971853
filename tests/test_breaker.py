"""The circuit breaker: the state machine alone (a fake clock), then through the Router against
the loopback server (the server counts what reaches it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, RouteFailed, StreamInterruptedError
from router.plan.routes import BreakerPolicy
from router.policy.breaker import Breakers
from tests.engine_helpers import MSG, Clock, Factory, chat_path, collect, hits, target
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    completion,
    error_reply,
    json_reply,
    text_events,
)

POLICY = BreakerPolicy(enabled=True, failures=3, cooldown=10.0)
COOLDOWN = 0.05
BREAKER = {"failures": 2, "cooldown": "50ms"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breakers(clock: Clock) -> Breakers:
    return Breakers(clock=clock)


def fail(b: Breakers, n: int = 1, *, retryable: bool = True, key: str = "p:m") -> list[bool]:
    return [b.record_failure(key, POLICY, retryable=retryable) for _ in range(n)]


# -- the state machine -------------------------------------------------------------------------


def test_breaker_opens_after_n_consecutive_retryable_failures(breakers: Breakers) -> None:
    assert fail(breakers, 3) == [False, False, True]
    assert not breakers.allows("p:m", POLICY)
    assert breakers.state("p:m", POLICY) == "open"


def test_success_resets_the_count_of_consecutive_failures(breakers: Breakers) -> None:
    fail(breakers, 2)
    breakers.record_success("p:m")
    assert fail(breakers, 2) == [False, False]
    assert breakers.allows("p:m", POLICY)


def test_non_retryable_failures_do_not_count(breakers: Breakers) -> None:
    assert fail(breakers, 10, retryable=False) == [False] * 10
    assert breakers.allows("p:m", POLICY)
    assert breakers.state("p:m", POLICY) == "closed"


def test_breakers_are_per_target(breakers: Breakers) -> None:
    fail(breakers, 3, key="p:a")
    assert not breakers.allows("p:a", POLICY)
    assert breakers.allows("p:b", POLICY)


def test_after_the_cooldown_exactly_one_caller_is_let_through(breakers: Breakers,
                                                              clock: Clock) -> None:
    fail(breakers, 3)
    clock.now += 10.0
    assert breakers.state("p:m", POLICY) == "half_open"
    assert [breakers.allows("p:m", POLICY) for _ in range(3)] == [True, False, False]


def test_a_successful_probe_closes_the_breaker(breakers: Breakers, clock: Clock) -> None:
    fail(breakers, 3)
    clock.now += 10.0
    assert breakers.allows("p:m", POLICY)
    breakers.record_success("p:m")
    assert breakers.state("p:m", POLICY) == "closed"
    assert [breakers.allows("p:m", POLICY) for _ in range(3)] == [True] * 3


def test_a_failed_probe_reopens_for_a_full_cooldown(breakers: Breakers, clock: Clock) -> None:
    fail(breakers, 3)
    clock.now += 10.0
    assert breakers.allows("p:m", POLICY)
    assert fail(breakers) == [True]
    assert not breakers.allows("p:m", POLICY)
    clock.now += 9.9
    assert not breakers.allows("p:m", POLICY)
    clock.now += 0.1
    assert breakers.allows("p:m", POLICY)


def test_a_released_probe_frees_the_half_open_slot(breakers: Breakers, clock: Clock) -> None:
    fail(breakers, 3)
    clock.now += 10.0
    assert breakers.allows("p:m", POLICY)
    breakers.release_probe("p:m")
    assert breakers.allows("p:m", POLICY)


def test_a_non_retryable_probe_failure_frees_the_slot_without_reopening(
        breakers: Breakers, clock: Clock) -> None:
    fail(breakers, 3)
    clock.now += 10.0
    assert breakers.allows("p:m", POLICY)
    assert fail(breakers, retryable=False) == [False]
    assert breakers.state("p:m", POLICY) == "half_open"
    assert breakers.allows("p:m", POLICY)  # the next caller probes


def test_a_disabled_breaker_always_allows(breakers: Breakers) -> None:
    off = BreakerPolicy(enabled=False, failures=1, cooldown=10.0)
    assert [breakers.record_failure("p:m", off, retryable=True) for _ in range(5)] == [False] * 5
    assert breakers.allows("p:m", off)


# -- through the Router ----------------------------------------------------------------------------


@pytest.fixture
def router_for(router_for: Factory) -> Factory:
    """The shared router_for (conftest.py) with a quick breaker and one attempt per target."""
    def make(models: dict[str, Any], **kw: Any) -> Router:
        kw.setdefault("breaker", BREAKER)
        kw.setdefault("retry", {"attempts": 1})
        return router_for(models, **kw)

    return make


def failing(server: OpenAIServer, name: str, n: int, error: str = "server_error") -> None:
    server.enqueue(*[error_reply(error)] * n, path=chat_path(name))


async def open_breaker(router: Router, server: OpenAIServer) -> None:
    """Two calls that each fail on a (500) and fall back to b: a's breaker opens."""
    failing(server, "a", 2)
    for _ in range(2):
        r = await router.chat("r", MSG)
        assert r.target == "b:m"
    assert hits(server, "a") == 2


async def test_breaker_opens_after_consecutive_retryable_failures_and_skips_the_target(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    await open_breaker(router, openai_server)
    r = await router.chat("r", MSG)
    assert r.target == "b:m"
    assert hits(openai_server, "a") == 2  # not hit while open
    skip = r.attempts[0]
    assert (skip.target, skip.outcome, skip.reason) == ("a:m", "skipped", "breaker_open")
    assert skip.latency_ms is None


async def test_retries_within_one_call_count_toward_the_breaker(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 2})
    failing(openai_server, "a", 2)
    await router.chat("r", MSG)
    r = await router.chat("r", MSG)
    assert (r.attempts[0].outcome, r.attempts[0].reason) == ("skipped", "breaker_open")


async def test_a_success_in_between_resets_the_failure_count(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    failing(openai_server, "a", 1)
    openai_server.enqueue(json_reply(completion("ok")), path=chat_path("a"))
    failing(openai_server, "a", 1)
    for _ in range(3):
        await router.chat("r", MSG)
    r = await router.chat("r", MSG)
    assert r.target == "a:m"
    assert hits(openai_server, "a") == 4


async def test_open_breaker_with_no_other_target_fails_without_a_request(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")], "solo": [target("a")]})
    await open_breaker(router, openai_server)
    with pytest.raises(RouteFailed) as info:
        await router.chat("solo", MSG)
    assert info.value.error_class is ErrorClass.NO_ROUTE
    assert [(a.outcome, a.reason) for a in info.value.attempts] == [("skipped", "breaker_open")]
    assert hits(openai_server, "a") == 2


async def test_after_the_cooldown_only_one_concurrent_call_probes_the_target(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    await open_breaker(router, openai_server)
    await asyncio.sleep(COOLDOWN + 0.01)
    openai_server.enqueue(Reply(json=completion("probe"), delay=0.05), path=chat_path("a"))
    results = await asyncio.gather(*(router.chat("r", MSG) for _ in range(5)))
    assert hits(openai_server, "a") == 3  # exactly one probe reached the server
    assert sorted(r.target for r in results) == ["a:m"] + ["b:m"] * 4
    for r in results:
        if r.target == "b:m":
            assert (r.attempts[0].outcome, r.attempts[0].reason) == ("skipped", "breaker_open")


async def test_a_successful_probe_lets_every_later_call_through(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    await open_breaker(router, openai_server)
    await asyncio.sleep(COOLDOWN + 0.01)
    assert (await router.chat("r", MSG)).target == "a:m"  # the probe
    results = await asyncio.gather(*(router.chat("r", MSG) for _ in range(3)))
    assert [r.target for r in results] == ["a:m"] * 3
    assert hits(openai_server, "a") == 6


async def test_a_failed_probe_reopens_the_breaker(router_for: Factory,
                                                  openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    await open_breaker(router, openai_server)
    await asyncio.sleep(COOLDOWN + 0.01)
    failing(openai_server, "a", 1)
    r = await router.chat("r", MSG)  # the probe fails, b answers
    assert [(a.target, a.outcome) for a in r.attempts] == [("a:m", "error"), ("b:m", "ok")]
    r = await router.chat("r", MSG)
    assert (r.attempts[0].outcome, r.attempts[0].reason) == ("skipped", "breaker_open")
    assert hits(openai_server, "a") == 3


async def test_a_failed_probe_is_one_request_even_with_retries_configured(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    failing(openai_server, "a", 2)
    await router.chat("r", MSG)  # two tries fail, the breaker opens: no third try
    assert hits(openai_server, "a") == 2
    await asyncio.sleep(COOLDOWN + 0.01)
    failing(openai_server, "a", 3)
    r = await router.chat("r", MSG)  # the probe fails: re-opened, so no retry
    assert [(a.target, a.outcome) for a in r.attempts] == [("a:m", "error"), ("b:m", "ok")]
    assert hits(openai_server, "a") == 3


async def test_non_retryable_failures_do_not_open_the_breaker(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    failing(openai_server, "a", 4, error="invalid_api_key")
    for _ in range(4):
        r = await router.chat("r", MSG)
        assert r.attempts[0].outcome == "error"
    assert hits(openai_server, "a") == 4
    assert (await router.chat("r", MSG)).target == "a:m"


async def test_a_cancelled_probe_does_not_leave_the_breaker_open_for_good(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    await open_breaker(router, openai_server)
    await asyncio.sleep(COOLDOWN + 0.01)
    openai_server.enqueue(Reply(json=completion("never"), delay=10), path=chat_path("a"))
    probe = asyncio.create_task(router.chat("r", MSG))
    while hits(openai_server, "a") < 3:
        await asyncio.sleep(0.005)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    r = await router.chat("r", MSG)  # the next call may probe again
    assert r.target == "a:m"
    assert hits(openai_server, "a") == 4


async def test_a_stream_stopped_early_by_its_consumer_does_not_hold_the_probe(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    await open_breaker(router, openai_server)
    await asyncio.sleep(COOLDOWN + 0.01)
    openai_server.enqueue(Reply(events=text_events(["x", "y"]), stall_after=2),
                          path=chat_path("a"))
    stream = router.stream("r", MSG)
    async for c in stream:
        if c.delta:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    r = await router.chat("r", MSG)
    assert r.target == "a:m"


async def test_a_stream_failing_mid_way_counts_toward_the_breaker(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a"), target("b")]})
    for _ in range(2):
        openai_server.enqueue(Reply(events=text_events(["x", "y"]), reset_after=2),
                              path=chat_path("a"))
        with pytest.raises(StreamInterruptedError):
            await collect(router.stream("r", MSG, recover="off"))
    r = await router.chat("r", MSG)
    assert (r.attempts[0].outcome, r.attempts[0].reason) == ("skipped", "breaker_open")
