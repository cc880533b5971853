"""The attempt step and the driver around it, through the public Router: what a provider is
given (timeouts), how odd endings are classified (a plugin's bug, a pool timeout), what a
failed stream carries, and the per-route pool positions, seed and clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
from typing_extensions import override

from router import Router
from router.errors import ErrorClass, StreamInterruptedError
from router.providers import registry
from router.providers.base import Capabilities, Provider, Timeouts
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage
from tests.engine_helpers import MSG, chat_path, hits, make_router, route_file, target
from tests.servers.openai import OpenAIServer, Reply, completion, error_reply, text_events


class Probe(Provider):
    """A plugin provider (no timeouts of its own): ``mode`` ok answers, ``bug`` raises a
    KeyError as a broken parser would, ``hang`` never answers. Remembers the timeouts."""

    kind = "probe"
    requires_key = False
    capabilities_default = Capabilities()
    config_schema: ClassVar[dict[str, Any] | None] = {
        "properties": {"mode": {"enum": ["ok", "bug", "hang"]}}}
    seen: ClassVar[list[Timeouts]] = []

    @override
    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        Probe.seen.append(timeouts)
        mode = self.config.options.get("mode", "ok")
        if mode == "bug":
            raise KeyError("choices")
        if mode == "hang":
            await asyncio.Event().wait()
        return ChatResponse(text="probe", tool_calls=[], finish_reason="stop",
                            usage=Usage(1, 1), model=model)

    @override
    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(delta="probe")
        yield ChatChunk(finish_reason="stop", usage=Usage(1, 1), final_tool_calls=[])


@pytest.fixture
def probe() -> Iterator[None]:
    Probe.seen.clear()
    registry.register_provider_kind("probe", Probe)
    yield
    registry.unregister_provider_kind("probe")


def probe_file(*modes: str, timeout: dict[str, str] | None = None) -> dict[str, Any]:
    providers = {f"p{i}": {"kind": "probe", "mode": m} for i, m in enumerate(modes)}
    return {"version": 1,
            "defaults": {"timeout": {"total": "3s", **(timeout or {})},
                         "retry": {"attempts": 1}},
            "providers": providers, "models": {"r": [f"{p}:m" for p in providers]}}


@pytest.mark.usefixtures("probe")
async def test_a_call_deadline_nearer_than_total_reaches_the_provider_as_its_total() -> None:
    async with Router.from_dict(probe_file("ok")) as router:
        await router.chat("r", MSG)
        await router.chat("r", MSG, timeout=0.5)
    whole, short = Probe.seen
    assert whole.total == 3.0
    assert 0 < short.total <= 0.5
    assert (short.connect, short.first_token, short.idle) == (
        whole.connect, whole.first_token, whole.idle)


@pytest.mark.usefixtures("probe")
async def test_a_provider_without_timeouts_of_its_own_is_bounded_by_the_engine() -> None:
    async with Router.from_dict(probe_file("hang", "ok", timeout={"total": "100ms"})) as r:
        response = await r.chat("r", MSG)
    assert response.target == "p1:m"
    first = response.attempts[0]
    assert (first.error_class, first.timeout_kind) == (ErrorClass.TIMEOUT, "total")


@pytest.mark.usefixtures("probe")
async def test_a_plugin_bug_is_a_server_error_and_the_chain_falls_back() -> None:
    async with Router.from_dict(probe_file("bug", "ok")) as router:
        response = await router.chat("r", MSG)
    assert response.target == "p1:m"
    first = response.attempts[0]
    assert (first.outcome, first.error_class) == ("error", ErrorClass.SERVER)
    assert "KeyError" in (first.detail or "")


async def test_a_pool_timeout_falls_back_and_counts_nothing_against_the_breaker(
        openai_server: OpenAIServer) -> None:
    # a:m allows one connection; the slow call holds it past the other route's total.
    openai_server.enqueue(Reply(json=completion("slow"), delay=0.6), path=chat_path("a"))
    data = route_file(openai_server.port, {
        "slow": [target("a")],
        "r": [{"target": target("a"), "timeout": {"total": "150ms"}}, target("b")]},
        names=["b"], providers={"a": {"max_connections": 1}},
        breaker={"failures": 1, "cooldown": "60s"})
    async with Router.from_dict(data) as router:
        slow = asyncio.create_task(router.chat("slow", MSG))
        await openai_server.wait_requests(1)
        fast = await router.chat("r", MSG)
        assert (await slow).text == "slow"
        again = await router.chat("r", MSG)
    first = fast.attempts[0]
    assert (fast.target, first.error_class, first.timeout_kind) == (
        "b:m", ErrorClass.TIMEOUT, "pool")
    assert again.target == "a:m"  # a's breaker (1 failure opens it) stayed closed
    assert hits(openai_server, "a") == 2


async def test_a_stream_interrupted_after_a_fallback_carries_every_attempt(
        openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(["Hel", "lo", "!"]), reset_after=2),
                          path=chat_path("b"))
    router = make_router(openai_server, {"r": [target("a"), target("b")]},
                         retry={"attempts": 1})
    async with router:
        with pytest.raises(StreamInterruptedError) as info:
            async for _ in router.stream("r", MSG):
                pass
    assert [(a.target, a.outcome) for a in info.value.attempts] == [
        ("a:m", "error"), ("b:m", "error")]
    assert info.value.partial_text.startswith("Hel")


async def test_round_robin_pools_keep_a_position_per_route(
        openai_server: OpenAIServer) -> None:
    pool = {"chain": [{"pool": [target("a"), target("b")], "strategy": "round_robin"}]}
    async with make_router(openai_server, {"one": pool, "two": pool},
                           names=["a", "b"]) as router:
        firsts = [(await router.chat(alias, MSG)).target for alias in ("one", "two") * 2]
    # one, two, one, two: each alias alternates on its own (one shared counter gave
    # "one" a, a and "two" b, b)
    assert firsts == ["a:m", "a:m", "b:m", "b:m"]


async def test_a_weighted_pool_follows_its_weights_over_a_short_run(
        openai_server: OpenAIServer) -> None:
    pool = {"chain": [{"pool": [target("a"), {"target": target("b"), "weight": 3}],
                       "strategy": "weighted"}]}
    async with make_router(openai_server, {"w": pool}, names=["a", "b"]) as router:
        firsts = [(await router.chat("w", MSG)).target for _ in range(40)]
    assert firsts.count("a:m") == 10


async def test_a_seed_repeats_the_backoff_waits(openai_server: OpenAIServer) -> None:
    waits = []
    for _ in range(2):
        for _ in range(3):
            openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
        router = make_router(openai_server, {"r": [target("a")]},
                             retry={"attempts": 4, "initial": "10ms", "max": "40ms"})
        async with Router(router.plan, seed=7) as seeded:
            r = await seeded.chat("r", MSG)
        await router.aclose()
        waits.append([a.retry_in_ms for a in r.attempts[:3]])
    assert waits[0] == waits[1]
    assert all(w is not None and 0 <= w <= 40 for w in waits[0])


async def test_the_clock_reaches_the_breaker_cooldown(openai_server: OpenAIServer) -> None:
    now = [1_000_000.0]
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    data = route_file(openai_server.port, {"r": [target("a"), target("b")]}, names=["a", "b"],
                      retry={"attempts": 1}, breaker={"failures": 1, "cooldown": "60s"})
    async with Router.from_dict(data, clock=lambda: now[0]) as router:
        assert (await router.chat("r", MSG)).target == "b:m"  # a failed: its breaker opened
        assert (await router.chat("r", MSG)).attempts[0].reason == "breaker_open"
        now[0] += 61  # past the cooldown: a half-open probe goes through
        assert (await router.chat("r", MSG)).target == "a:m"
