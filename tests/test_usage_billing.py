"""Usage that bills right (issue 12): the token counts each provider reports, read wherever it
puts them (replies and streams cut into random pieces), normalised to one convention, and
priced with the cached-input and cache-write rates where the price table has them.

The convention (router.types.Usage): ``input_tokens`` counts every prompt token, cache reads
(``cached_tokens``) and cache writes (``cache_write_tokens``) included, as OpenAI's
``prompt_tokens`` and Gemini's ``promptTokenCount`` do; Anthropic's ``input_tokens`` leaves
both out, so its three counts are added. ``output_tokens`` includes reasoning (OpenAI's
``reasoning_tokens``, Gemini's ``thoughtsTokenCount``), as each bills them. Expected costs are
computed by genai-prices' own ``calc_price`` from the same counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage as GUsage
from genai_prices import calc_price

from router import Router
from router.plan.values import Price
from router.policy.pricing import cost_usd, lookup_price, worst_case_cost
from router.types import ChatChunk, Usage
from tests.engine_helpers import MSG
from tests.servers import anthropic as ant
from tests.servers import google as goo
from tests.servers import openai as oai

ANTHROPIC_MODEL = "claude-sonnet-4-5"
GEMINI_MODEL = "gemini-2.5-flash"
OPENAI_MODEL = "gpt-4o-mini"


def list_cost(model: str, provider_id: str, **counts: int) -> float:
    total: Decimal = calc_price(GUsage(**counts), model, provider_id=provider_id).total_price
    return float(total)


async def last(stream: AsyncIterator[ChatChunk]) -> ChatChunk:
    chunks = [c async for c in stream]
    assert chunks[-1].finish_reason is not None
    return chunks[-1]


def router_for(kind: str, base_url: str, model: str, **extra: Any) -> Router:
    return Router.from_dict({
        "version": 1,
        "defaults": {"timeout": {"connect": "2s", "first_token": "5s", "total": "10s",
                                 "idle": "5s"}, "retry": {"attempts": 1}},
        "providers": {"p": {"kind": kind, "base_url": base_url, "api_key": "sk-test-key",
                            **extra}},
        "models": {"m": [f"p:{model}"]}})


# -- cost arithmetic --------------------------------------------------------------------------


def test_cost_prices_cache_reads_and_writes_at_their_rates() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = Usage(input_tokens=1000, output_tokens=100, cached_tokens=500, cache_write_tokens=200)
    expected = (300 * 3.0 + 500 * 0.3 + 200 * 3.75 + 100 * 15.0) / 1e6
    assert cost_usd(price, usage) == pytest.approx(expected)


def test_cost_without_cache_rates_charges_the_input_rate() -> None:
    usage = Usage(input_tokens=1000, output_tokens=10, cached_tokens=500, cache_write_tokens=200)
    assert cost_usd(Price(2.0, 8.0), usage) == pytest.approx((1000 * 2.0 + 10 * 8.0) / 1e6)


def test_list_prices_carry_the_cache_write_rate() -> None:
    price = lookup_price("anthropic", ANTHROPIC_MODEL)
    assert price is not None and price.cache_write is not None and price.cached_input is not None
    assert price.cache_write > price.input > price.cached_input
    usage = Usage(input_tokens=1700, output_tokens=40, cached_tokens=1000, cache_write_tokens=500)
    assert cost_usd(price, usage) == pytest.approx(list_cost(
        ANTHROPIC_MODEL, "anthropic", input_tokens=1700, cache_read_tokens=1000,
        cache_write_tokens=500, output_tokens=40))


#: Models genai-prices lists with long-context tiers (a cliff at 200k prompt tokens), and one
#: without, for contrast.
TIERED = [("anthropic", "claude-sonnet-4-5", "anthropic"), ("google", "gemini-2.5-pro", "google"),
          ("openai", "gpt-4o-mini", "openai")]


@pytest.mark.parametrize(("kind", "model", "provider_id"), TIERED)
@pytest.mark.parametrize("prompt", [1_000, 199_999, 200_000, 200_001, 350_000, 1_000_000])
def test_list_prices_charge_long_prompts_at_their_tier(kind: str, model: str, provider_id: str,
                                                       prompt: int) -> None:
    """Past 200k prompt tokens Anthropic and Google bill every token at the higher rates;
    the cost follows genai-prices' own arithmetic on both sides of the cliff."""
    writes = prompt // 8 if kind == "anthropic" else 0
    usage = Usage(input_tokens=prompt, output_tokens=2_000, cached_tokens=prompt // 4,
                  cache_write_tokens=writes)
    expected = list_cost(model, provider_id, input_tokens=prompt, output_tokens=2_000,
                         cache_read_tokens=prompt // 4, cache_write_tokens=writes)
    assert cost_usd(lookup_price(kind, model), usage) == pytest.approx(expected, rel=1e-12)


def test_list_tiers_are_the_ones_genai_prices_lists() -> None:
    price = lookup_price("anthropic", ANTHROPIC_MODEL)
    assert price is not None and [start for start, _ in price.tiers] == [200_000]
    tier = price.tiers[0][1]
    assert (tier.input, tier.output) == (2 * price.input, 1.5 * price.output)
    assert price.for_input(200_000) is price and price.for_input(200_001) is tier
    flat = lookup_price("openai", OPENAI_MODEL)
    assert flat is not None and flat.tiers == () and flat.for_input(10**7) is flat


def test_worst_case_cost_of_a_long_prompt_takes_its_tier() -> None:
    price = Price(1.0, 2.0, tiers=((100, Price(10.0, 20.0)), (1000, Price(100.0, 200.0))))
    assert worst_case_cost(price, 100, 10) == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6)
    assert worst_case_cost(price, 101, 10) == pytest.approx((101 * 10.0 + 10 * 20.0) / 1e6)
    assert worst_case_cost(price, 5000, 10) == pytest.approx((5000 * 100.0 + 10 * 200.0) / 1e6)


async def test_route_file_price_tiers_apply_past_their_start() -> None:
    """A route file's ``price: {tiers}`` (listed in any order) picks the highest tier the
    reply's prompt exceeds, cache rates included; below every tier the base rates hold."""
    price = {"input": 1.0, "output": 2.0, "cached_input": 0.5,
             "tiers": [{"above": 1000, "input": 4.0, "output": 8.0},
                       {"above": 100, "input": 2.0, "output": 4.0, "cached_input": 1.0}]}
    costs = []
    for prompt in (50, 500, 5000):
        async with oai.OpenAIServer() as server:
            server.enqueue(oai.json_reply(oai.completion("hi", usage_=oai.usage(prompt, 10,
                                                                                 cached=40))))
            async with router_for("openai-compatible", server.base_url, "m",
                                  models={"m": {"price": price}}) as router:
                costs.append((await router.chat("m", messages=MSG)).cost_usd)
    assert costs == pytest.approx([(10 * 1.0 + 40 * 0.5 + 10 * 2.0) / 1e6,
                                   (460 * 2.0 + 40 * 1.0 + 10 * 4.0) / 1e6,
                                   (5000 * 4.0 + 10 * 8.0) / 1e6])


# -- OpenAI-compatible: include_usage and cached tokens in streams ----------------------------


async def test_compatible_streams_ask_for_usage_and_read_cached_tokens() -> None:
    events = oai.text_events(["He", "llo"], usage_=oai.usage(2006, 300, cached=1920,
                                                               reasoning=64))
    async with oai.OpenAIServer(seed=4) as server:
        server.enqueue(oai.stream_reply(events, piece_sizes=(1, 6)))
        async with router_for("openai-compatible", server.base_url, "m",
                              models={"m": {"price": {"input": 1.0, "output": 2.0,
                                                      "cached_input": 0.25}}}) as router:
            end = await last(router.stream("m", messages=MSG))
        assert server.requests[0].json["stream_options"] == {"include_usage": True}
    assert end.usage == Usage(input_tokens=2006, output_tokens=300, cached_tokens=1920,
                              reasoning_tokens=64)
    assert end.cost_usd == pytest.approx((86 * 1.0 + 1920 * 0.25 + 300 * 2.0) / 1e6)


async def test_stream_usage_false_sends_no_stream_options() -> None:
    async with oai.OpenAIServer() as server:
        server.enqueue(oai.stream_reply(oai.text_events(["ok"])))
        async with router_for("openai-compatible", server.base_url, "m",
                              stream_usage=False) as router:
            await last(router.stream("m", messages=MSG))
        assert "stream_options" not in server.requests[0].json


#: DeepSeek's usage (api-docs.deepseek.com/guides/kv_cache; recorded shape in public client
#: tests): cache hits beside prompt_tokens, no prompt_tokens_details.
DEEPSEEK_USAGE = {"prompt_tokens": 320, "completion_tokens": 180, "total_tokens": 500,
                  "prompt_cache_hit_tokens": 256, "prompt_cache_miss_tokens": 64}


@pytest.mark.parametrize("stream", [False, True])
async def test_deepseek_cache_hit_tokens_are_cached_tokens(stream: bool) -> None:
    async with oai.OpenAIServer(seed=6) as server:
        if stream:
            server.enqueue(oai.stream_reply(oai.text_events(["o", "k"], usage_=DEEPSEEK_USAGE),
                                            piece_sizes=(1, 9)))
        else:
            server.enqueue(oai.json_reply(oai.completion("ok", usage_=DEEPSEEK_USAGE)))
        async with router_for("openai-compatible", server.base_url, "m") as router:
            usage = ((await last(router.stream("m", messages=MSG))).usage if stream
                     else (await router.chat("m", messages=MSG)).usage)
    assert usage == Usage(input_tokens=320, output_tokens=180, cached_tokens=256)


async def test_openai_reply_cached_tokens_are_priced_at_the_cached_rate() -> None:
    async with oai.OpenAIServer() as server:
        server.enqueue(oai.json_reply(oai.completion("hi", usage_=oai.usage(2000, 50,
                                                                             cached=1536))))
        async with router_for("openai", server.base_url, OPENAI_MODEL) as router:
            r = await router.chat("m", messages=MSG)
    assert (r.usage.input_tokens, r.usage.cached_tokens) == (2000, 1536)
    assert r.cost_usd == pytest.approx(list_cost(OPENAI_MODEL, "openai", input_tokens=2000,
                                                 cache_read_tokens=1536, output_tokens=50))


# -- Anthropic: cache reads and writes wherever they come ---------------------------------------


def anthropic_counts(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "cache_read_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens, "output_tokens": usage.output_tokens}


async def test_anthropic_reply_cache_read_and_write() -> None:
    body = ant.message([ant.text_block("hi")],
                       usage_=ant.usage(21, 393, cache_read=1800, cache_creation=248))
    async with ant.AnthropicServer() as server:
        server.enqueue(ant.json_reply(body), path=ant.MESSAGES_PATH)
        async with router_for("anthropic", f"http://127.0.0.1:{server.port}",
                              ANTHROPIC_MODEL) as router:
            r = await router.chat("m", messages=MSG, max_tokens=500)
    assert r.usage == Usage(input_tokens=21 + 1800 + 248, output_tokens=393, cached_tokens=1800,
                            cache_write_tokens=248)
    assert r.cost_usd == pytest.approx(list_cost(ANTHROPIC_MODEL, "anthropic",
                                                 **anthropic_counts(r.usage)))


async def test_route_file_price_takes_cache_read_and_write_rates() -> None:
    """``price: {cached_input, cache_write}`` in the route file prices Anthropic's cache reads
    and writes at their own rates (not the list's); a price without them charges input's."""
    body = ant.message([ant.text_block("hi")],
                       usage_=ant.usage(21, 393, cache_read=1800, cache_creation=248))
    rates = {"input": 2.0, "output": 10.0, "cached_input": 0.5, "cache_write": 2.5}
    costs = []
    for price in (rates, {"input": 2.0, "output": 10.0}):
        async with ant.AnthropicServer() as server:
            server.enqueue(ant.json_reply(body), path=ant.MESSAGES_PATH)
            async with router_for("anthropic", f"http://127.0.0.1:{server.port}",
                                  ANTHROPIC_MODEL,
                                  models={ANTHROPIC_MODEL: {"price": price}}) as router:
                costs.append((await router.chat("m", messages=MSG, max_tokens=500)).cost_usd)
    assert costs[0] == pytest.approx((21 * 2.0 + 1800 * 0.5 + 248 * 2.5 + 393 * 10.0) / 1e6)
    assert costs[1] == pytest.approx(((21 + 1800 + 248) * 2.0 + 393 * 10.0) / 1e6)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_one_hour_cache_writes_at_their_rate(stream: bool) -> None:
    """``cache_creation.ephemeral_1h_input_tokens`` (``ttl: "1h"``) are cache writes billed at
    the one-hour rate (2x input against 1.25x), as genai-prices bills them."""
    usage_ = ant.usage(21, 393, cache_read=1800, cache_creation=1248, cache_creation_1h=1000)
    async with ant.AnthropicServer(seed=3) as server:
        if stream:
            events = ant.text_events(["h", "i"], output=393, start_usage=usage_)
            server.enqueue(ant.stream_reply(events, piece_sizes=(1, 8)), path=ant.MESSAGES_PATH)
        else:
            server.enqueue(ant.json_reply(ant.message([ant.text_block("hi")], usage_=usage_)),
                           path=ant.MESSAGES_PATH)
        async with router_for("anthropic", f"http://127.0.0.1:{server.port}",
                              ANTHROPIC_MODEL) as router:
            r = (await last(router.stream("m", messages=MSG, max_tokens=500)) if stream
                 else await router.chat("m", messages=MSG, max_tokens=500))
    assert r.usage == Usage(input_tokens=21 + 1800 + 1248, output_tokens=393,
                            cached_tokens=1800, cache_write_tokens=1248,
                            cache_write_1h_tokens=1000)
    assert r.cost_usd == pytest.approx(list_cost(
        ANTHROPIC_MODEL, "anthropic", cache_write_1h_tokens=1000, **anthropic_counts(r.usage)))
    five_minutes_only = list_cost(ANTHROPIC_MODEL, "anthropic", **anthropic_counts(r.usage))
    assert r.cost_usd > five_minutes_only


def test_route_file_one_hour_rate_defaults_to_the_cache_write_rate() -> None:
    usage = Usage(input_tokens=1000, output_tokens=0, cache_write_tokens=600,
                  cache_write_1h_tokens=200)
    assert cost_usd(Price(1.0, 5.0, cache_write=1.25, cache_write_1h=2.0), usage) == \
        pytest.approx((400 * 1.0 + 400 * 1.25 + 200 * 2.0) / 1e6)
    assert cost_usd(Price(1.0, 5.0, cache_write=1.25), usage) == \
        pytest.approx((400 * 1.0 + 600 * 1.25) / 1e6)
    assert cost_usd(Price(1.0, 5.0), usage) == pytest.approx(1000 * 1.0 / 1e6)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_anthropic_stream_cache_counts_in_message_start(seed: int) -> None:
    """The docs' flow: message_start holds input and cache counts, message_delta the output."""
    events = ant.text_events(["Hel", "lo"], output=15,
                             start_usage=ant.usage(25, 1, cache_read=2048, cache_creation=512))
    async with ant.AnthropicServer(seed=seed) as server:
        server.enqueue(ant.stream_reply(events, piece_sizes=(1, 8)), path=ant.MESSAGES_PATH)
        async with router_for("anthropic", f"http://127.0.0.1:{server.port}",
                              ANTHROPIC_MODEL) as router:
            end = await last(router.stream("m", messages=MSG, max_tokens=500))
    assert end.usage == Usage(input_tokens=25 + 2048 + 512, output_tokens=15,
                              cached_tokens=2048, cache_write_tokens=512)
    assert end.cost_usd == pytest.approx(list_cost(ANTHROPIC_MODEL, "anthropic",
                                                   **anthropic_counts(end.usage)))


@pytest.mark.parametrize("seed", [1, 2])
async def test_anthropic_stream_cache_counts_in_message_delta(seed: int) -> None:
    """Cumulative counts in message_delta (as the API sends them for server tools) win."""
    start = ant.message_start(usage_={"input_tokens": 25, "output_tokens": 1})
    events = [start, ant.block_start(0, ant.text_block("")),
              ant.block_delta(0, {"type": "text_delta", "text": "ok"}), ant.block_stop(0),
              ant.message_delta("end_turn", 40, input_tokens=30, cache_read_input_tokens=900,
                                cache_creation_input_tokens=100), ant.MESSAGE_STOP]
    async with ant.AnthropicServer(seed=seed) as server:
        server.enqueue(ant.stream_reply(events, piece_sizes=(1, 5)), path=ant.MESSAGES_PATH)
        async with router_for("anthropic", f"http://127.0.0.1:{server.port}",
                              ANTHROPIC_MODEL) as router:
            end = await last(router.stream("m", messages=MSG, max_tokens=500))
    assert end.usage == Usage(input_tokens=30 + 900 + 100, output_tokens=40, cached_tokens=900,
                              cache_write_tokens=100)


# -- Gemini: thoughts are output ------------------------------------------------------------


async def test_gemini_thoughts_count_as_output_and_reasoning() -> None:
    body = goo.response("hi", usage_=goo.usage(120, 30, thoughts=450, cached=64))
    async with goo.GoogleServer() as server:
        server.enqueue(goo.json_reply(body))
        async with router_for("google", server.base_url, GEMINI_MODEL) as router:
            r = await router.chat("m", messages=MSG)
    assert r.usage == Usage(input_tokens=120, output_tokens=480, cached_tokens=64,
                            reasoning_tokens=450)
    assert r.cost_usd == pytest.approx(list_cost(GEMINI_MODEL, "google", input_tokens=120,
                                                 cache_read_tokens=64, output_tokens=480))


@pytest.mark.parametrize("seed", [1, 2])
async def test_gemini_stream_thoughts_in_the_last_chunk(seed: int) -> None:
    events = goo.text_events(["He", "llo"], usage_=goo.usage(12, 5, thoughts=200))
    async with goo.GoogleServer(seed=seed) as server:
        server.enqueue(goo.stream_reply(events, piece_sizes=(1, 7)))
        async with router_for("google", server.base_url, GEMINI_MODEL) as router:
            end = await last(router.stream("m", messages=MSG))
    assert end.usage == Usage(input_tokens=12, output_tokens=205, reasoning_tokens=200)
    assert end.cost_usd == pytest.approx(list_cost(GEMINI_MODEL, "google", input_tokens=12,
                                                   output_tokens=205))
