"""Budgets and local rate limits through the Router, against a loopback OpenAI-shaped server
and the memory store (the shared stores have their own tests and a multi-process test)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, RouteFailed
from router.plan.routes import BudgetSpec
from router.policy.budget import budget_key, describe_refusal, window_bounds
from router.state import BudgetKey, MemoryStore, Refusal
from tests.servers.openai import OpenAIServer, Reply, completion, text_events, usage

# 1,000 bytes of prompt: the hold's bound is >= 1,000 tokens, as the server's usage reports
MSG = [{"role": "user", "content": "x" * 1000}]
# $1 per 1M input and output tokens: 1,000 tokens cost $0.001
PRICE = {"input": 1.0, "output": 1.0}
U1000 = usage(1000, 1000)


def doc(base_url: str, **extra: Any) -> dict[str, Any]:
    def models() -> dict[str, Any]:
        return {"m": {"price": PRICE}, "m2": {"price": PRICE}}

    d: dict[str, Any] = {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}, "timeout": {"total": "5s"}},
        "providers": {
            "a": {"kind": "openai-compatible", "base_url": base_url, "models": models()},
            "b": {"kind": "openai-compatible", "base_url": base_url, "models": models()},
        },
        "models": {"r": ["a:m", "b:m"], "solo": ["a:m"]},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return d


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        s.default = Reply(json=completion("ok", usage_=U1000))
        yield s


def url(server: OpenAIServer) -> str:
    return f"{server.base_url}/v1" if not server.base_url.endswith("/v1") else server.base_url


async def test_call_cost_is_settled_on_every_budget_it_counts_against(
        server: OpenAIServer) -> None:
    store = MemoryStore()
    budgets = [{"scope": "global", "usd": 10}, {"scope": "provider:a", "usd": 10, "per": "day"},
               {"scope": "target:a:m", "usd": 10, "per": "hour"},
               {"scope": "alias:r", "usd": 10, "per": "month"},
               {"scope": "tag:team=search", "usd": 10, "per": "minute"}]
    async with Router.from_dict(doc(url(server), budgets=budgets), store=store) as router:
        r = await router.chat("r", MSG, max_tokens=1000, tags={"team": "search"})
        assert r.cost_usd == pytest.approx(0.002)
        for spec in router.plan.budgets:
            usage = await store.usage(budget_key(spec, time.time()).key)
            assert (usage.spent_micro, usage.reserved_micro) == (2000, 0), spec.scope


async def test_target_whose_hold_would_pass_the_cap_is_skipped_and_the_chain_goes_on(
        server: OpenAIServer) -> None:
    # The worst case of one call on a:m: ~1,000 prompt + 1,000 output tokens at $1/M, about
    # $0.002; a cap of $0.001 on provider a refuses it, b answers.
    budgets = [{"scope": "provider:a", "usd": 0.001}]
    async with Router.from_dict(doc(url(server), budgets=budgets)) as router:
        r = await router.chat("r", MSG, max_tokens=1000)
        assert r.target == "b:m"
        skip = r.attempts[0]
        assert (skip.target, skip.outcome, skip.reason) == ("a:m", "skipped", "budget")
        assert "provider:a" in (skip.detail or "") and "spent $0.00," in (skip.detail or "")
        assert server.request_count == 1


async def test_when_every_target_is_over_budget_the_error_is_budget_exceeded(
        server: OpenAIServer) -> None:
    budgets = [{"scope": "global", "usd": 0.001}]
    async with Router.from_dict(doc(url(server), budgets=budgets)) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("r", MSG, max_tokens=1000)
    assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
    assert [a.reason for a in info.value.attempts] == ["budget", "budget"]
    assert server.request_count == 0


async def test_a_refused_hold_says_what_is_spent_held_and_what_this_call_would_reserve(
        server: OpenAIServer) -> None:
    now = 1764086400.0  # 2025-11-25T16:00:00Z, a fixed clock: one hourly window throughout
    store = MemoryStore(clock=lambda: now)
    d = doc(url(server), budgets=[{"scope": "alias:solo", "usd": 5, "per": "hour"}])
    d["providers"]["a"]["models"]["m"] = {"price": {"input": 150, "output": 150}}
    async with Router.from_dict(d, store=store, clock=lambda: now) as router:
        key = budget_key(router.plan.budgets[0], now)
        await store.add_spend(key, 4_910_000)
        assert await store.reserve("another-call", [key], 50_000, 600) is None
        with pytest.raises(RouteFailed) as info:
            await router.chat("solo", MSG, max_tokens=1000)
    assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
    detail = info.value.attempts[0].detail or ""
    m = re.fullmatch(r"budget alias:solo \$5\.00/hour: spent \$4\.91, held \$0\.05, this call "
                     r"would reserve \$(0\.\d\d) \(\$(0\.\d\d) over\)", detail)
    assert m, detail
    wanted, over = float(m[1]), float(m[2])
    assert 0.3 <= wanted < 0.4 and over == pytest.approx(4.91 + 0.05 + wanted - 5, abs=0.011)
    assert detail in str(info.value)  # the call's error says it too, not only the record
    assert server.request_count == 0


@pytest.mark.parametrize(("refusal", "spec", "text"), [
    (Refusal("k", 1_000, 0, 0, 1_100), BudgetSpec("target:a:m", 0.001),
     "budget target:a:m $0.001 total: spent $0.00, held $0.00, this call would reserve "
     "$0.0011 ($0.0001 over)"),
    (Refusal("k", 50_000_000, 49_990_000, 12_345, 250_000),
     BudgetSpec("tag:team=search", 50, "day"),
     "budget tag:team=search $50.00/day: spent $49.99, held $0.012345, this call would "
     "reserve $0.25 ($0.25 over)"),
])
def test_a_refusal_shows_cents_and_small_amounts_exactly(refusal: Refusal, spec: BudgetSpec,
                                                          text: str) -> None:
    key = BudgetKey("k", refusal.cap_micro, None)
    assert describe_refusal(refusal, [spec], [key]) == text


async def test_spend_accumulates_until_the_cap_refuses(server: OpenAIServer) -> None:
    # each call settles $0.002; the hold of the next is ~ $0.00203; cap $0.005 admits 2 calls,
    # then 0.004 + 0.00203 > 0.005 refuses
    budgets = [{"scope": "alias:solo", "usd": 0.005}]
    async with Router.from_dict(doc(url(server), budgets=budgets)) as router:
        await router.chat("solo", MSG, max_tokens=1000)
        await router.chat("solo", MSG, max_tokens=1000)
        with pytest.raises(RouteFailed) as info:
            await router.chat("solo", MSG, max_tokens=1000)
    assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED


async def test_concurrent_calls_never_pass_the_cap(server: OpenAIServer) -> None:
    store = MemoryStore()
    server.default = Reply(json=completion("ok", usage_=U1000),
                           delay=0.02)
    budgets = [{"scope": "global", "usd": 0.01}]
    async with Router.from_dict(doc(url(server), budgets=budgets), store=store) as router:
        results = await asyncio.gather(*(router.chat("solo", MSG, max_tokens=1000)
                                         for _ in range(30)), return_exceptions=True)
        ok = [r for r in results if not isinstance(r, BaseException)]
        spent = await store.usage(budget_key(router.plan.budgets[0], time.time()).key)
    assert spent.spent_micro <= 10_000 and spent.reserved_micro == 0
    assert len(ok) == spent.spent_micro // 2000 and server.request_count == len(ok)


async def test_failed_attempt_releases_its_hold(server: OpenAIServer) -> None:
    store = MemoryStore()
    server.enqueue(Reply(status=500, json={"error": {"message": "boom", "type": "server_error",
                                                     "param": None, "code": None}}))
    budgets = [{"scope": "global", "usd": 1}]
    async with Router.from_dict(doc(url(server), budgets=budgets), store=store) as router:
        r = await router.chat("r", MSG, max_tokens=1000)
        usage = await store.usage(budget_key(router.plan.budgets[0], time.time()).key)
    assert r.target == "b:m"
    assert (usage.spent_micro, usage.reserved_micro) == (2000, 0)  # only b's real cost


async def test_unknown_price_under_a_budget_is_skipped_unless_zero(server: OpenAIServer) -> None:
    d = doc(url(server), budgets=[{"scope": "global", "usd": 1}])
    d["models"]["u"] = ["a:unpriced", "b:m"]
    async with Router.from_dict(d) as router:
        r = await router.chat("u", MSG)
        assert r.target == "b:m" and r.attempts[0].reason == "budget"
        assert "no known price" in (r.attempts[0].detail or "")
    d["providers"]["a"]["unknown_price"] = "zero"
    async with Router.from_dict(d) as router:
        assert (await router.chat("u", MSG)).target == "a:unpriced"


async def test_streamed_call_settles_the_cost_of_its_last_chunk(server: OpenAIServer) -> None:
    store = MemoryStore()
    server.default = Reply(events=text_events(["he", "llo"], usage_=U1000))
    budgets = [{"scope": "global", "usd": 1}]
    async with Router.from_dict(doc(url(server), budgets=budgets), store=store) as router:
        chunks = [c async for c in router.stream("solo", MSG, max_tokens=1000)]
        usage = await store.usage(budget_key(router.plan.budgets[0], time.time()).key)
    assert chunks[-1].cost_usd == pytest.approx(0.002)
    assert (usage.spent_micro, usage.reserved_micro) == (2000, 0)


async def test_rate_limit_skip_moves_on_without_a_request(server: OpenAIServer) -> None:
    d = doc(url(server))
    d["providers"]["a"]["rate_limit"] = {"rpm": 2}
    async with Router.from_dict(d) as router:
        targets = [(await router.chat("r", MSG)).target for _ in range(4)]
    assert targets == ["a:m", "a:m", "b:m", "b:m"]
    assert server.request_count == 4


async def test_rate_limit_wait_waits_within_the_deadline(server: OpenAIServer) -> None:
    clock = [1000.0]
    store = MemoryStore(clock=lambda: clock[0])
    d = doc(url(server))
    d["providers"]["a"]["rate_limit"] = {"rpm": 1, "mode": "wait"}
    async with Router.from_dict(d, store=store) as router:
        await router.chat("solo", MSG)
        with pytest.raises(RouteFailed) as info:  # the next slot is 60 s away: beyond 1 s
            await router.chat("solo", MSG, timeout=1)
    assert info.value.error_class is ErrorClass.RATE_LIMITED_LOCALLY


async def test_tokens_per_minute_limit_counts_the_prompt(server: OpenAIServer) -> None:
    d = doc(url(server))
    d["providers"]["a"]["models"]["m"] = {"price": PRICE, "rate_limit": {"tpm": 100}}
    big = [{"role": "user", "content": "a few words " * 40}]  # ~120 tokens > 100 per minute
    async with Router.from_dict(d) as router:
        r = await router.chat("r", big)
    assert r.target == "b:m" and r.attempts[0].reason == "rate_limited_locally"


def test_windows_are_calendar_utc() -> None:
    t = 1764086399.5  # 2025-11-25T15:59:59.5Z
    assert window_bounds("minute", t) == ("2025-11-25T15:59", pytest.approx(0.5))
    assert window_bounds("hour", t)[0] == "2025-11-25T15"
    assert window_bounds("day", t)[0] == "2025-11-25"
    assert window_bounds("month", t) == ("2025-11", pytest.approx(5 * 86400 + 8 * 3600 + 0.5))
    assert window_bounds("total", t) == ("total", None)


async def test_window_rollover_starts_a_fresh_budget(server: OpenAIServer) -> None:
    clock = [1764086390.0]  # 10 s before the hour ends
    store = MemoryStore(clock=lambda: clock[0])
    budgets = [{"scope": "global", "usd": 0.003, "per": "hour"}]
    router = Router.from_dict(doc(url(server), budgets=budgets), store=store,
                              clock=lambda: clock[0])
    async with router:
        await router.chat("solo", MSG, max_tokens=1000)
        with pytest.raises(RouteFailed):
            await router.chat("solo", MSG, max_tokens=1000)
        clock[0] += 20  # the next hour
        assert (await router.chat("solo", MSG, max_tokens=1000)).target == "a:m"


async def test_shared_breaker_state_reaches_other_replicas(server: OpenAIServer) -> None:
    store = MemoryStore()  # stands in for redis: both Routers use one store
    d = doc(url(server), state={"kind": "memory", "share_breakers": True})
    d["defaults"]["breaker"] = {"failures": 1, "cooldown": "30s"}
    server.enqueue(Reply(status=500, json={"error": {"message": "boom", "type": "server_error",
                                                     "param": None, "code": None}}))
    async with Router.from_dict(d, store=store) as one, Router.from_dict(d, store=store) as two:
        assert (await one.chat("r", MSG)).target == "b:m"  # a failed: one's breaker opened
        r = await two.chat("r", MSG)
    assert r.target == "b:m"
    assert (r.attempts[0].target, r.attempts[0].reason) == ("a:m", "breaker_open")
    assert "another replica" in (r.attempts[0].detail or "")
    assert server.request_count == 3  # a once (500), b twice: two never called a


def _child_prefix(q: Any) -> None:
    from router.engine.router import request_id_prefix

    q.put(request_id_prefix())


def test_forked_workers_get_their_own_request_ids() -> None:
    import multiprocessing

    from router.engine.router import request_id_prefix

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_prefix, args=(q,))
    p.start()
    child = q.get(timeout=10)
    p.join(10)
    assert child != request_id_prefix()
