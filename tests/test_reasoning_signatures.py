"""Reasoning state across turns (issue 12): Anthropic's signed thinking and redacted_thinking
blocks and Gemini's thoughtSignature go back unchanged, in the next turn of a tool loop, to the
provider kind that made them, and to no other.

The loopback servers run with ``signed=True``: they answer 400 to a signature they did not issue
or a thinking block that changed (as the APIs do), and record what came back. Shapes:
anthropic-sdk-python ``thinking_block_param.py`` / ``redacted_thinking_block_param.py`` ("pass it
back unchanged") and its ``signature_delta``; https://ai.google.dev/gemini-api/docs/thought-
signatures (the first functionCall of a parallel set carries the signature; a text part's may
come in a last, empty part of a stream, as in python-genai's
``test_aiohttp_large_sse_line_with_thought_signature``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import InvalidRequestError
from router.types import ChatChunk, ChatResponse, Message
from tests.servers import anthropic as an
from tests.servers import google as gg

KEY = "sk-test-signatures-0123456789abcdef"
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZAc3ludGhldGljLXNpZ25hdHVyZS1maXh0dXJl"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
THOUGHT = "The user wants the weather in Paris: call get_weather."
GEMINI_SIGNATURE = "CiQB0e2Kb7Zx0NsWQ6fVt3hYJ8FZ5h0v6Q2o1uQ2rP8nW3xkR5sKJAHR7YqC"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
GEMINI_3 = "gemini-3-pro-preview"


class Upstreams:
    """A signed Anthropic and a signed Gemini server, and a route file for both."""

    def __init__(self) -> None:
        self.anthropic = an.AnthropicServer(signed=True)
        self.google = gg.GoogleServer(signed=True)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Upstreams:
        await self._stack.enter_async_context(self.anthropic)
        await self._stack.enter_async_context(self.google)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def route_file(self) -> dict[str, Any]:
        return {"version": 1,
                "defaults": {"retry": {"attempts": 1}},
                "providers": {
                    "anthropic": {"kind": "anthropic", "base_url": self.anthropic.base_url,
                                  "api_key": KEY},
                    "google": {"kind": "google", "base_url": self.google.base_url,
                               "api_key": KEY}}}


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


def as_dicts(r: ChatResponse) -> dict[str, Any]:
    """The assistant turn as an OpenAI-shaped dict, through JSON (as an app would store it)."""
    turn = {"role": "assistant", "content": r.text or None,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                            "provider_state": c.provider_state} for c in r.tool_calls],
            "provider_state": r.provider_state}
    return json.loads(json.dumps(turn))  # type: ignore[no-any-return]


def tool_results(r: ChatResponse | list[Any]) -> list[dict[str, Any]]:
    calls = r.tool_calls if isinstance(r, ChatResponse) else r
    return [{"role": "tool", "tool_call_id": c.id, "content": '{"temp_c": 18}'} for c in calls]


def signed_tool_use() -> dict[str, Any]:
    """Claude's turn: a signed thinking block, a redacted one, then the call."""
    return an.message([{"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
                       {"type": "redacted_thinking", "data": REDACTED},
                       an.tool_use_block("toolu_01A09q90qw90lq917835lq9", "get_weather",
                                         {"city": "Paris"})], stop_reason="tool_use")


def signed_tool_events() -> list[dict[str, Any]]:
    """The same turn streamed: thinking deltas, the signature_delta, then the tool_use."""
    call = an.tool_events([("toolu_01A09q90qw90lq917835lq9", "get_weather",
                            '{"city": "Paris"}')])
    thinking = [an.block_start(0, {"type": "thinking", "thinking": ""}),
                an.block_delta(0, {"type": "thinking_delta", "thinking": THOUGHT[:20]}),
                an.block_delta(0, {"type": "thinking_delta", "thinking": THOUGHT[20:]}),
                an.block_delta(0, {"type": "signature_delta", "signature": SIGNATURE}),
                an.block_stop(0)]
    renumbered = [{**e, "index": e["index"] + 1} if "index" in e else e for e in call[1:]]
    return [call[0], *thinking, *renumbered]


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [c async for c in stream]


# --------------------------------------------------------------------------------------------
# Anthropic


async def test_anthropic_tool_loop_sends_thinking_blocks_back_unchanged(up: Upstreams) -> None:
    up.anthropic.enqueue(an.json_reply(signed_tool_use()),
                         an.json_reply(an.message([an.text_block("18°C in Paris.")])))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat("anthropic:claude-sonnet-4-5", QUESTION, tools=[WEATHER],
                              reasoning_effort="low")
        assert r.provider_state == {"kind": "anthropic", "thinking": [
            {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
            {"type": "redacted_thinking", "data": REDACTED}]}
        final = await router.chat("anthropic:claude-sonnet-4-5",
                                  [*QUESTION, as_dicts(r), *tool_results(r)],
                                  tools=[WEATHER], reasoning_effort="low")
    assert final.text == "18°C in Paris." and up.anthropic.problems == []
    sent = up.anthropic.requests[1].json["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["thinking", "redacted_thinking", "tool_use"]
    assert up.anthropic.returned == r.provider_state["thinking"]


async def test_anthropic_streamed_turn_carries_its_signature_to_the_next(up: Upstreams) -> None:
    up.anthropic.enqueue(an.stream_reply(signed_tool_events()),
                         an.json_reply(an.message([an.text_block("18°C in Paris.")])))
    async with Router.from_dict(up.route_file()) as router:
        chunks = await collect(router.stream("anthropic:claude-sonnet-4-5", QUESTION,
                                             tools=[WEATHER], reasoning_effort="low"))
        last = chunks[-1]
        turn = Message("assistant", tool_calls=last.final_tool_calls,
                       provider_state=last.provider_state)
        await router.chat("anthropic:claude-sonnet-4-5",
                          [*QUESTION, turn, *tool_results(last.final_tool_calls or [])],
                          tools=[WEATHER], reasoning_effort="low")
    assert up.anthropic.problems == []
    assert up.anthropic.returned == [
        {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}]


async def test_a_changed_thinking_block_is_refused_as_the_api_would(up: Upstreams) -> None:
    up.anthropic.enqueue(an.json_reply(signed_tool_use()))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat("anthropic:claude-sonnet-4-5", QUESTION, tools=[WEATHER])
        turn = as_dicts(r)
        turn["provider_state"]["thinking"][0]["thinking"] += " (edited)"
        with pytest.raises(Exception, match="Invalid `signature`"):
            await router.chat("anthropic:claude-sonnet-4-5",
                              [*QUESTION, turn, *tool_results(r)], tools=[WEATHER])


# --------------------------------------------------------------------------------------------
# Gemini 3


def gemini_calls(*cities: str) -> dict[str, Any]:
    """Parallel calls; only the first carries the signature (as the docs say)."""
    parts = [gg.call_part("get_weather", {"city": c},
                          signature=GEMINI_SIGNATURE if i == 0 else None)
             for i, c in enumerate(cities)]
    return gg.response(parts=parts, model_version=GEMINI_3)


async def test_gemini3_tool_loop_sends_the_signature_back_on_its_call(up: Upstreams) -> None:
    up.google.enqueue(gg.json_reply(gemini_calls("Paris", "London")),
                      gg.json_reply(gg.response("Paris 18°C, London 12°C.")))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(f"google:{GEMINI_3}", QUESTION, tools=[WEATHER])
        assert [c.provider_state for c in r.tool_calls] == [
            {"kind": "google", "thought_signature": GEMINI_SIGNATURE}, None]
        await router.chat(f"google:{GEMINI_3}", [*QUESTION, as_dicts(r), *tool_results(r)],
                          tools=[WEATHER])
    assert up.google.violations == [] and up.google.returned == [GEMINI_SIGNATURE]
    model_turn = up.google.requests[1].json["contents"][1]
    assert [("thoughtSignature" in p) for p in model_turn["parts"]] == [True, False]


async def test_gemini_stream_signature_in_a_last_empty_part_goes_back_on_the_text(
        up: Upstreams) -> None:
    up.google.enqueue(gg.stream_reply([
        gg.chunk([gg.text_part("It is 18°C")]),
        gg.chunk([{"text": "", "thoughtSignature": GEMINI_SIGNATURE}], finish_reason="STOP",
                 usage_=gg.usage())]), gg.json_reply(gg.response("You're welcome.")))
    async with Router.from_dict(up.route_file()) as router:
        chunks = await collect(router.stream(f"google:{GEMINI_3}", QUESTION))
        state = chunks[-1].provider_state
        assert state == {"kind": "google", "text_signature": GEMINI_SIGNATURE}
        turn = {"role": "assistant", "content": "It is 18°C", "provider_state": state}
        await router.chat(f"google:{GEMINI_3}",
                          [*QUESTION, turn, {"role": "user", "content": "Thanks"}])
    assert up.google.violations == [] and up.google.returned == [GEMINI_SIGNATURE]


# --------------------------------------------------------------------------------------------
# A fallback to another kind mid-conversation: no foreign state crosses


async def test_anthropic_state_never_reaches_gemini_after_a_fallback(up: Upstreams) -> None:
    up.anthropic.enqueue(an.json_reply(signed_tool_use()), an.error_reply("overloaded"))
    up.google.enqueue(gg.json_reply(gg.response("Paris: 18°C.")))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat("anthropic:claude-sonnet-4-5", QUESTION, tools=[WEATHER],
                              reasoning_effort="low")
        final = await router.chat(f"anthropic:claude-sonnet-4-5,google:{GEMINI_3}",
                                  [*QUESTION, as_dicts(r), *tool_results(r)], tools=[WEATHER])
    assert final.target == f"google:{GEMINI_3}" and up.google.violations == []
    # Gemini 3 needs a signature on the call: the documented stand-in, never Claude's.
    assert up.google.returned == [gg.SKIP_SIGNATURE]
    body = up.google.requests[0].body.decode()
    assert SIGNATURE not in body and REDACTED not in body and THOUGHT not in body


async def test_gemini_signature_never_reaches_anthropic_after_a_fallback(up: Upstreams) -> None:
    up.google.enqueue(gg.json_reply(gemini_calls("Paris")), gg.error_reply("unavailable"))
    up.anthropic.enqueue(an.json_reply(an.message([an.text_block("Paris: 18°C.")])))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(f"google:{GEMINI_3}", QUESTION, tools=[WEATHER])
        final = await router.chat(f"google:{GEMINI_3},anthropic:claude-sonnet-4-5",
                                  [*QUESTION, as_dicts(r), *tool_results(r)], tools=[WEATHER],
                                  reasoning_effort="low")
    assert final.target == "anthropic:claude-sonnet-4-5" and up.anthropic.problems == []
    assert up.anthropic.returned == []
    body = up.anthropic.requests[0]
    assert GEMINI_SIGNATURE not in body.body.decode()
    # The tool turn began on Gemini, without Claude's thinking: it goes on without thinking
    # (the API refuses a turn that switches thinking on halfway).
    assert "thinking" not in body.json


async def test_thinking_stays_on_for_a_turn_that_began_with_it(up: Upstreams) -> None:
    up.anthropic.enqueue(an.json_reply(signed_tool_use()),
                         an.json_reply(an.message([an.text_block("18°C.")])))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat("anthropic:claude-sonnet-4-5", QUESTION, tools=[WEATHER],
                              reasoning_effort="low")
        await router.chat("anthropic:claude-sonnet-4-5",
                          [*QUESTION, as_dicts(r), *tool_results(r)], tools=[WEATHER],
                          reasoning_effort="low")
    assert up.anthropic.requests[1].json["thinking"]["type"] == "enabled"


def test_the_server_refuses_a_tool_turn_that_turns_thinking_on_halfway() -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "Weather?"},
                         {"role": "assistant", "content": [an.tool_use_block(
                             "toolu_1", "get_weather", {"city": "Paris"})]},
                         {"role": "user", "content": [{"type": "tool_result",
                                                       "tool_use_id": "toolu_1",
                                                       "content": "18"}]}]}
    assert any("must start with a thinking block" in p for p in an.validate_request(body))


# --------------------------------------------------------------------------------------------
# Input checks


@pytest.mark.parametrize(("state", "path"), [
    ("sig", "messages[1].provider_state"),
    ({"signature": "x"}, "messages[1].provider_state.kind"),
])
async def test_a_malformed_provider_state_is_invalid_request(up: Upstreams, state: Any,
                                                              path: str) -> None:
    turn = {"role": "assistant", "content": "Hi", "provider_state": state}
    async with Router.from_dict(up.route_file()) as router:
        with pytest.raises(InvalidRequestError, match=path.replace("[", r"\[").replace(
                "]", r"\]")):
            await router.chat("anthropic:claude-sonnet-4-5", [*QUESTION, turn])
    assert up.anthropic.requests == []
