"""Anthropic's own tools (web search, web fetch, code execution: "server tools"), run by the
API itself: ``server_tools=[...]`` goes into an Anthropic target's ``tools`` as given; the
answer's text carries what they found, and their own blocks (``server_tool_use``,
``web_search_tool_result``) are neither text nor tool calls. Other kinds are not sent them.
Shapes from Anthropic's web search tool docs and anthropic-sdk-python's types
(``server_tool_use_block.py``, ``web_search_tool_result_block.py``, ``citations_delta.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import InvalidRequestError
from tests.servers import anthropic as an
from tests.test_cross_provider import KINDS, Upstreams, text_reply

SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
MSG = [{"role": "user", "content": "What is new in Python 3.14?"}]
USE = {"type": "server_tool_use", "id": "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE",
       "name": "web_search", "input": {"query": "Python 3.14 release"}}
RESULT = {"type": "web_search_tool_result", "tool_use_id": USE["id"], "content": [
    {"type": "web_search_result", "url": "https://docs.python.org/3.14/whatsnew/3.14.html",
     "title": "What's new in Python 3.14", "encrypted_content": "EqgfCioIARgB...",
     "page_age": "October 7, 2025"}]}
CITATION = {"type": "web_search_result_location",
            "url": "https://docs.python.org/3.14/whatsnew/3.14.html",
            "title": "What's new in Python 3.14", "encrypted_index": "Eo8BCioIAhgB...",
            "cited_text": "Free-threaded Python is now supported."}
ANSWER = ["Python 3.14 ", "supports free-threading."]


def searched_message() -> dict[str, Any]:
    body = an.message([an.text_block("I'll search for that."), USE, RESULT,
                       {"type": "text", "text": ANSWER[0]},
                       {"type": "text", "text": ANSWER[1], "citations": [CITATION]}])
    body["usage"]["server_tool_use"] = {"web_search_requests": 1}
    return body


def searched_events() -> list[dict[str, Any]]:
    return [an.message_start(), an.block_start(0, an.text_block("")),
            an.block_delta(0, {"type": "text_delta", "text": "I'll search for that."}),
            an.block_stop(0),
            an.block_start(1, {**USE, "input": {}}),
            an.block_delta(1, {"type": "input_json_delta",
                               "partial_json": '{"query": "Python 3.14 release"}'}),
            an.block_stop(1),
            an.block_start(2, RESULT), an.block_stop(2),
            an.block_start(3, an.text_block("")),
            an.block_delta(3, {"type": "text_delta", "text": ANSWER[0]}), an.block_stop(3),
            an.block_start(4, {"type": "text", "text": "", "citations": []}),
            an.block_delta(4, {"type": "citations_delta", "citation": CITATION}),
            an.block_delta(4, {"type": "text_delta", "text": ANSWER[1]}), an.block_stop(4),
            an.message_delta("end_turn", 42), an.MESSAGE_STOP]


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_runs_them_and_the_text_carries_the_answer(up: Upstreams,
                                                                   stream: bool) -> None:
    reply = (an.stream_reply(searched_events()) if stream
             else an.json_reply(searched_message()))
    up.enqueue("anthropic", reply)
    function = {"type": "function", "function": {"name": "lookup",
                                                 "parameters": {"type": "object"}}}
    async with Router.from_dict(up.route_file()) as router:
        if stream:
            chunks = [c async for c in router.stream(KINDS["anthropic"].target, MSG,
                                                     tools=[function], server_tools=[SEARCH])]
            text = "".join(c.delta for c in chunks)
            calls = chunks[-1].final_tool_calls
        else:
            r = await router.chat(KINDS["anthropic"].target, MSG, tools=[function],
                                  server_tools=[SEARCH])
            text, calls = r.text, r.tool_calls
    assert up.refusals() == {}
    assert text == "I'll search for that." + "".join(ANSWER)
    assert not calls  # the search is no call for the caller to make
    body = up.bodies("anthropic")[-1]
    assert [t.get("type", "custom") for t in body["tools"]] == ["custom", SEARCH["type"]]
    assert body["tools"][1] == SEARCH and "server_tools" not in body


@pytest.mark.parametrize("kind", ["openai", "google", "ollama", "azure-openai"])
async def test_other_kinds_are_not_sent_them(up: Upstreams, kind: str) -> None:
    up.enqueue(kind, text_reply(kind, "From memory."))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(KINDS[kind].target, MSG, server_tools=[SEARCH])
    assert r.text == "From memory." and up.refusals() == {}
    assert "web_search" not in str(up.bodies(kind)[-1])


@pytest.mark.parametrize(("value", "param"), [
    ({"type": "web_search_20250305"}, "server_tools"),
    ([{"name": "web_search"}], "server_tools[0]"),
    (["web_search"], "server_tools[0]")])
async def test_malformed_server_tools_are_invalid_before_any_io(up: Upstreams, value: Any,
                                                                param: str) -> None:
    async with Router.from_dict(up.route_file()) as router:
        with pytest.raises(InvalidRequestError) as caught:
            await router.chat(KINDS["anthropic"].target, MSG, server_tools=value)
    assert caught.value.param == param and up.bodies("anthropic") == []


@pytest.mark.parametrize("stream", [False, True])
async def test_searches_are_counted_and_priced(up: Upstreams, stream: bool) -> None:
    """``usage.server_tool_use.web_search_requests`` (in the message, or the stream's
    message_delta) is ``Usage.web_searches``, priced at genai-prices' rate per 1,000."""
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    if stream:
        events = searched_events()
        events[-2] = {**events[-2], "usage": {"output_tokens": 42,
                                              "server_tool_use": {"web_search_requests": 2}}}
        up.enqueue("anthropic", an.stream_reply(events))
    else:
        body = searched_message()
        body["usage"]["server_tool_use"] = {"web_search_requests": 2}
        up.enqueue("anthropic", an.json_reply(body))
    async with Router.from_dict(up.route_file()) as router:
        if stream:
            last = [c async for c in router.stream(KINDS["anthropic"].target, MSG,
                                                   server_tools=[SEARCH])][-1]
            usage, cost = last.usage, last.cost_usd
        else:
            r = await router.chat(KINDS["anthropic"].target, MSG, server_tools=[SEARCH])
            usage, cost = r.usage, r.cost_usd
    assert usage is not None and usage.web_searches == 2
    expected = calc_price(GUsage(input_tokens=usage.input_tokens,
                                 output_tokens=usage.output_tokens, web_searches=2),
                          KINDS["anthropic"].model, provider_id="anthropic").total_price
    assert cost == pytest.approx(float(expected))
    assert cost is not None and cost > 2 * 10 / 1000  # $10 per 1,000 searches, at least


async def test_a_route_file_price_per_thousand_searches(up: Upstreams) -> None:
    doc = up.route_file()
    model = KINDS["anthropic"].model
    doc["providers"]["anthropic"]["models"] = {model: {"price": {
        "input": 0, "output": 0, "web_search": 25}}}
    up.enqueue("anthropic", an.json_reply(searched_message()))
    async with Router.from_dict(doc) as router:
        r = await router.chat(KINDS["anthropic"].target, MSG, server_tools=[SEARCH])
    assert r.usage.web_searches == 1 and r.cost_usd == pytest.approx(0.025)
