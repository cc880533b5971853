"""Prompt-cache breakpoints (``cache_control``): where a caller puts them, an Anthropic target
gets them, on the same blocks, system blocks and tools; every other kind caches on its own and
is not sent them (its validating loopback server accepts the body, and the body holds none).
A malformed breakpoint is an invalid_request naming its path, before any I/O.

The loopback Anthropic server checks the API's caching rules (tests/servers/anthropic.py):
``{"type": "ephemeral"}`` with an optional ttl of 5m or 1h, at most four breakpoints, and no 1h
breakpoint after a 5m one in the order tools, system, messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import InvalidRequestError
from router.types import Message, TextPart, Tool
from tests.servers import anthropic as an
from tests.test_cross_provider import KINDS, WEATHER_TOOL, Upstreams, overloaded, text_reply

HOUR = {"type": "ephemeral", "ttl": "1h"}
FIVE = {"type": "ephemeral"}
DOC = "A long reference document the model reads on every turn. " * 20


def conversation(marked: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools): a system prompt in two parts, a question, a tool call and its
    result; with ``marked``, four breakpoints: the tool (1h), the document (1h), the question
    and the tool's result (5m each)."""
    def mark(d: dict[str, Any], cc: dict[str, Any]) -> dict[str, Any]:
        return {**d, "cache_control": cc} if marked else d

    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are terse."},
                                       mark({"type": "text", "text": DOC}, HOUR)]},
        {"role": "user", "content": [mark({"type": "text", "text": "Weather in Paris?"},
                                          FIVE)]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        mark({"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'}, FIVE),
    ]
    return messages, [mark(WEATHER_TOOL, HOUR)]


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


async def ask(up: Upstreams, kind: str, messages: Any, tools: Any, **params: Any) -> Any:
    """One call to ``kind``'s target; the body its server received."""
    up.enqueue(kind, text_reply(kind, "18 degrees."))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(KINDS[kind].target, messages, tools=tools, **params)
    assert r.text == "18 degrees." and up.refusals() == {}
    return up.bodies(kind)[-1]


async def test_anthropic_gets_each_breakpoint_on_the_block_it_marks(up: Upstreams) -> None:
    body = await ask(up, "anthropic", *conversation())
    assert body["tools"][0]["cache_control"] == HOUR
    assert body["system"] == [{"type": "text", "text": "You are terse."},
                              {"type": "text", "text": DOC, "cache_control": HOUR}]
    question, call, result = body["messages"]
    assert question["content"] == [{"type": "text", "text": "Weather in Paris?",
                                    "cache_control": FIVE}]
    assert "cache_control" not in json.dumps(call)
    assert result["content"] == [{"type": "tool_result", "tool_use_id": "call_1",
                                  "content": [{"type": "text", "text": '{"temp_c": 18}'}],
                                  "cache_control": FIVE}]


async def test_without_breakpoints_the_anthropic_body_keeps_its_plain_shape(
        up: Upstreams) -> None:
    body = await ask(up, "anthropic", *conversation(marked=False))
    assert body["system"] == "You are terse." + DOC  # one message: its parts joined
    assert body["messages"][0]["content"] == "Weather in Paris?"
    assert "cache_control" not in json.dumps(body)


@pytest.mark.parametrize("kind", ["openai", "azure-openai", "google", "ollama"])
async def test_other_kinds_are_not_sent_breakpoints(up: Upstreams, kind: str) -> None:
    body = await ask(up, kind, *conversation())
    assert "cache_control" not in json.dumps(body)
    assert DOC.strip() in json.dumps(body)  # the marked text itself is sent


async def test_a_fallback_drops_them_for_the_next_kind_only(up: Upstreams) -> None:
    """Anthropic overloaded twice, then OpenAI answers: both Anthropic bodies carry the
    breakpoints, OpenAI's carries none."""
    up.enqueue("anthropic", overloaded("anthropic"), overloaded("anthropic"))
    up.enqueue("openai", text_reply("openai", "18 degrees."))
    messages, tools = conversation()
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(f"{KINDS['anthropic'].target},{KINDS['openai'].target}",
                              messages, tools=tools)
    assert r.target == KINDS["openai"].target and up.refusals() == {}
    assert all(b["system"][1]["cache_control"] == HOUR for b in up.bodies("anthropic"))
    assert len(up.bodies("anthropic")) == 2
    assert "cache_control" not in json.dumps(up.bodies("openai"))


async def test_a_message_breakpoint_marks_its_last_block(up: Upstreams) -> None:
    """``Message.cache_control`` (or a dict message's): on the last block of that message,
    whatever its content; our own objects carry them as dicts do."""
    messages = [Message("system", "Be brief.", cache_control=HOUR),
                Message("user", [TextPart("Look:"), TextPart(DOC, cache_control=FIVE)]),
                {"role": "assistant", "content": "Seen.", "cache_control": FIVE},
                Message("user", "Summarise it.")]
    tool = Tool("get_weather", "Current weather", cache_control=HOUR)
    body = await ask(up, "anthropic", messages, [tool])
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": HOUR}]
    assert body["tools"][0]["cache_control"] == HOUR
    look, seen, last = body["messages"]
    assert look["content"] == [{"type": "text", "text": "Look:"},
                               {"type": "text", "text": DOC, "cache_control": FIVE}]
    assert seen["content"] == [{"type": "text", "text": "Seen.", "cache_control": FIVE}]
    assert last["content"] == "Summarise it."


async def test_the_json_instruction_follows_marked_system_blocks(up: Upstreams) -> None:
    messages, _ = conversation()
    body = await ask(up, "anthropic", messages[:2], None,
                     response_format={"type": "json_object"})
    assert [b.get("cache_control") for b in body["system"]] == [None, HOUR, None]
    assert "JSON" in body["system"][2]["text"]


async def test_an_image_part_keeps_its_breakpoint(up: Upstreams) -> None:
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
           "RU5ErkJggg==")
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"},
         "cache_control": FIVE},
        {"type": "text", "text": "What colour?"}]}]
    body = await ask(up, "anthropic", messages, None)
    image, question = body["messages"][0]["content"]
    assert image["type"] == "image" and image["cache_control"] == FIVE
    assert "cache_control" not in question


BAD = [
    ("not an object", "ephemeral", "messages[1].content[0].cache_control"),
    ("another type", {"type": "persistent"}, "messages[1].content[0].cache_control.type"),
    ("a ttl the API lacks", {"type": "ephemeral", "ttl": "2h"},
     "messages[1].content[0].cache_control.ttl"),
    ("an unknown key", {"type": "ephemeral", "scope": "org"},
     "messages[1].content[0].cache_control"),
]


@pytest.mark.parametrize(("why", "value", "param"), BAD, ids=[b[0] for b in BAD])
async def test_a_malformed_breakpoint_is_invalid_before_any_io(up: Upstreams, why: str,
                                                               value: Any, param: str) -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi",
                                              "cache_control": value}]}]
    async with Router.from_dict(up.route_file()) as router:
        with pytest.raises(InvalidRequestError) as caught:
            await router.chat(KINDS["anthropic"].target, messages)
    assert caught.value.param == param
    assert up.bodies("anthropic") == []


@pytest.mark.parametrize(("where", "param"), [
    ("message", "messages[0].cache_control.type"), ("tool", "tools[0].cache_control.type")])
async def test_message_and_tool_breakpoints_are_checked_too(up: Upstreams, where: str,
                                                            param: str) -> None:
    bad = {"type": "nope"}
    message: dict[str, Any] = {"role": "user", "content": "hi"}
    tool: dict[str, Any] = dict(WEATHER_TOOL)
    (message if where == "message" else tool)["cache_control"] = bad
    async with Router.from_dict(up.route_file()) as router:
        with pytest.raises(InvalidRequestError) as caught:
            await router.chat(KINDS["openai"].target, [message], tools=[tool])
    assert caught.value.param == param
    assert up.bodies("openai") == []


def test_the_loopback_server_holds_the_api_s_caching_rules() -> None:
    """The rules the tests above lean on: five breakpoints, a 1h after a 5m, a bad value."""
    def body(*marks: dict[str, Any]) -> dict[str, Any]:
        return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"t{i}", "cache_control": m}
            for i, m in enumerate(marks)]}]}

    assert an.validate_request(body(HOUR, HOUR, FIVE, FIVE)) == []
    assert any("maximum of 4" in p for p in an.validate_request(body(*[FIVE] * 5)))
    assert any("must not come after" in p for p in an.validate_request(body(FIVE, HOUR)))
    assert any("invalid" in p for p in an.validate_request(body({"type": "x"})))


async def test_a_breakpoint_never_lands_on_a_thinking_block(up: Upstreams) -> None:
    """An assistant turn of signed thinking alone: its breakpoint is left out (the API refuses
    to mark a thinking block), the rest of the request keeps its own."""
    thinking = {"kind": "anthropic", "thinking": [
        {"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"}]}
    messages = [{"role": "user", "content": "Think.", "cache_control": FIVE},
                {"role": "assistant", "content": None, "provider_state": thinking,
                 "cache_control": FIVE},
                {"role": "user", "content": "Go on."}]
    body = await ask(up, "anthropic", messages, None)
    first, turn, _ = body["messages"]
    assert first["content"][0]["cache_control"] == FIVE
    assert turn["content"] == [{"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"}]


async def test_a_gateway_that_takes_breakpoints_gets_them_in_openai_shape() -> None:
    """An openai-compatible provider with ``cache_control: true`` (OpenRouter, a LiteLLM
    proxy in front of Claude): each marked part keeps its breakpoint, a message's own goes on
    its content (text becomes one marked part), a tool's beside its function; without the
    setting the same request carries none."""
    from tests.servers import openai as oa

    messages, tools = conversation()
    bodies = []
    for keep in (True, False):
        async with oa.OpenAIServer() as server:
            server.enqueue(oa.json_reply(oa.completion("18 degrees.")))
            provider: dict[str, Any] = {"kind": "openai-compatible", "api_key": "sk-x",
                                        "base_url": server.base_url}
            if keep:
                provider["cache_control"] = True
            doc = {"version": 1, "providers": {"gw": provider}}
            async with Router.from_dict(doc) as router:
                await router.chat("gw:anthropic/claude-sonnet-4.5", messages, tools=tools)
            bodies.append(server.requests[-1].json)
    kept, plain = bodies
    assert "cache_control" not in json.dumps(plain)
    system, question, _call, result = kept["messages"]
    assert system["content"] == [{"type": "text", "text": "You are terse."},
                                 {"type": "text", "text": DOC, "cache_control": HOUR}]
    assert question["content"] == [{"type": "text", "text": "Weather in Paris?",
                                    "cache_control": FIVE}]
    assert result["content"] == [{"type": "text", "text": '{"temp_c": 18}',
                                  "cache_control": FIVE}]
    assert kept["tools"][0]["cache_control"] == HOUR
