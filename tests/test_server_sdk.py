"""``router serve`` driven by the official OpenAI and Anthropic SDKs, unchanged but for their
base URL: whole and streamed answers, tools, images, models, and errors raised as the SDKs'
own exception classes. One proxy process serves the module; its providers are loopback
servers speaking OpenAI's and Anthropic's real wire (tests/servers/) and offline fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pydantic
import pytest
import pytest_asyncio
import yaml

from tests.servers import anthropic as an_wire
from tests.servers import openai as oa_wire
from tests.servers.anthropic import AnthropicServer
from tests.servers.openai import OpenAIServer
from tests.servers.proxy import ProxyProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "proxy-key-for-tests"
UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
       "RU5ErkJggg==")
USER = [{"role": "user", "content": "hi"}]


class Upstreams:
    def __init__(self, oa: OpenAIServer, an: AnthropicServer) -> None:
        self.oa, self.an = oa, an


def route_file(oa: OpenAIServer, an: AnthropicServer) -> dict[str, Any]:
    return {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}},
        "providers": {
            "oa": {"kind": "openai", "base_url": oa.base_url,
                   "api_key": "${TEST_UPSTREAM_KEY}"},
            "an": {"kind": "anthropic", "base_url": an.base_url,
                   "api_key": "${TEST_UPSTREAM_KEY}"},
            "down": {"kind": "fake", "script": ["server"]},
            "cut": {"kind": "fake", "script": ["stream_interrupted"],
                    "text": "one two three four five six seven eight"},
        },
        "models": {
            "gpt": ["oa:gpt-4o-mini"],
            "claude": ["an:claude-haiku-4-5"],
            "down": ["down:m"],
            "cut": ["cut:m"],
            "capped": {"chain": ["oa:gpt-4o-mini"], "budget": {"usd": 0.0000001, "per": "day"}},
            "resilient": ["oa:gpt-4o-mini", "oa:gpt-4o"],
            "claude-else-gpt": ["down:m", "oa:gpt-4o-mini"],
        },
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstreams() -> AsyncIterator[Upstreams]:
    async with OpenAIServer() as oa, AnthropicServer() as an:
        yield Upstreams(oa, an)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(upstreams: Upstreams,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProxyProcess]:
    path = tmp_path_factory.mktemp("proxy") / "routes.yaml"
    path.write_text(yaml.safe_dump(route_file(upstreams.oa, upstreams.an)))
    env = {"ROUTER_PROXY_KEYS": f"other-key,{KEY}", "TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    async with ProxyProcess(path, env=env) as p:
        yield p
    assert UPSTREAM_KEY not in p.log() and KEY not in p.log()


@pytest.fixture
def oai(proxy: ProxyProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def claude(proxy: ProxyProcess) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.base_url, api_key=KEY, max_retries=0)


# -- OpenAI ------------------------------------------------------------------------------------

async def test_openai_chat_names_served_model_and_router_headers(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    upstreams.oa.enqueue(oa_wire.json_reply(oa_wire.completion("Hello!")))
    raw = await oai.chat.completions.with_raw_response.create(model="gpt", messages=USER)
    resp = raw.parse()
    assert resp.choices[0].message.content == "Hello!"
    assert resp.model == oa_wire.MODEL  # the model that served, as the provider named it
    assert resp.usage is not None and resp.usage.total_tokens == 17
    assert raw.headers["x-router-alias"] == "gpt"
    assert raw.headers["x-router-target"] == "oa:gpt-4o-mini"
    assert raw.headers["x-router-attempts"] == "1"
    assert raw.headers["x-router-request-id"].startswith("req_")


async def test_openai_stream_ends_with_usage_chunk(oai: openai.AsyncOpenAI,
                                                   upstreams: Upstreams) -> None:
    upstreams.oa.enqueue(oa_wire.stream_reply(oa_wire.text_events(["Hel", "lo", "!"])))
    stream = await oai.chat.completions.create(
        model="gpt", messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert {c.model for c in chunks} == {"gpt-4o-mini"}


async def test_openai_tools_call_comes_back_parsed(oai: openai.AsyncOpenAI,
                                                   upstreams: Upstreams) -> None:
    call = oa_wire.tool_call("call_1", "get_weather", '{"city": "Paris"}')
    upstreams.oa.enqueue(oa_wire.json_reply(oa_wire.completion(
        None, tool_calls=[call], finish_reason="tool_calls")))
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object",
                                              "properties": {"city": {"type": "string"}}}}}]
    resp = await oai.chat.completions.create(model="gpt", messages=USER, tools=tools)
    tc = resp.choices[0].message.tool_calls
    assert resp.choices[0].finish_reason == "tool_calls"
    assert tc is not None and tc[0].function.name == "get_weather"
    assert json.loads(tc[0].function.arguments) == {"city": "Paris"}
    assert upstreams.oa.requests[-1].json["tools"][0]["function"]["name"] == "get_weather"


async def test_openai_streamed_tool_call_reassembles(oai: openai.AsyncOpenAI,
                                                     upstreams: Upstreams) -> None:
    upstreams.oa.enqueue(oa_wire.stream_reply(oa_wire.tool_call_events(
        [("call_7", "lookup", '{"q": "router serve"}')])))
    stream = await oai.chat.completions.create(
        model="gpt", messages=USER, stream=True,
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}])
    args, names = "", []
    async for c in stream:
        for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            args += d.function.arguments or "" if d.function else ""
            if d.function and d.function.name:
                names.append(d.function.name)
    assert names == ["lookup"] and json.loads(args) == {"q": "router serve"}


async def test_openai_image_format_and_unknown_fields_reach_provider(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    upstreams.oa.enqueue(oa_wire.json_reply(oa_wire.completion('{"ok": true}')))
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    schema = {"name": "answer", "schema": {"type": "object",
                                           "properties": {"ok": {"type": "boolean"}}}}
    await oai.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": content}],
        response_format={"type": "json_schema", "json_schema": schema},
        extra_body={"logit_bias": {"50256": -100}})
    sent = upstreams.oa.requests[-1].json
    assert sent["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png")
    assert sent["response_format"]["json_schema"]["name"] == "answer"
    assert sent["logit_bias"] == {"50256": -100}


async def test_openai_n_gives_every_choice(oai: openai.AsyncOpenAI,
                                           upstreams: Upstreams) -> None:
    two = oa_wire.completion("A")
    two["choices"].append({**two["choices"][0], "index": 1,
                           "message": {**two["choices"][0]["message"], "content": "B"}})
    upstreams.oa.enqueue(oa_wire.json_reply(two))
    resp = await oai.chat.completions.create(model="gpt", messages=USER, n=2)
    assert [(c.index, c.message.content) for c in resp.choices] == [(0, "A"), (1, "B")]
    assert upstreams.oa.requests[-1].json["n"] == 2


async def test_openai_n_streams_each_choice(oai: openai.AsyncOpenAI,
                                            upstreams: Upstreams) -> None:
    def part(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        c = oa_wire.chunk(delta, finish_reason=finish)
        c["choices"][0]["index"] = index
        return c

    events = [part(0, {"role": "assistant", "content": ""}), part(1, {"content": "B1"}),
              part(0, {"content": "A1"}), part(1, {"content": "B2"}), part(0, {}, "stop"),
              part(1, {}, "length"), oa_wire.chunk(choices=False, usage_=oa_wire.usage())]
    upstreams.oa.enqueue(oa_wire.stream_reply(events))
    stream = await oai.chat.completions.create(model="gpt", messages=USER, n=2, stream=True)
    text: dict[int, str] = {0: "", 1: ""}
    finish: dict[int, str] = {}
    async for c in stream:
        for ch in c.choices:
            text[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    assert text == {0: "A1", 1: "B1B2"} and finish == {0: "stop", 1: "length"}


STORY = ["Once", " upon", " a", " time", " the", " stream", " broke", " and", " went", " on."]


async def test_a_stream_cut_mid_answer_reaches_the_openai_client_whole_once(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    # The first target's connection resets after 4 words; the proxy replays on the next
    # target (the library's recovery, unchanged behind the proxy): one answer, no error event.
    before = len(upstreams.oa.requests)
    upstreams.oa.enqueue(oa_wire.broken_reply(oa_wire.text_events(STORY), after=5),
                         oa_wire.stream_reply(oa_wire.text_events(STORY)))
    stream = await oai.chat.completions.create(model="resilient", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "".join(STORY)
    sent = [r.json["model"] for r in upstreams.oa.requests[before:]]
    assert sent == ["gpt-4o-mini", "gpt-4o"]


async def test_a_stream_cut_mid_answer_reaches_the_anthropic_client_whole_once(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    upstreams.oa.enqueue(oa_wire.broken_reply(oa_wire.text_events(STORY), after=5),
                         oa_wire.stream_reply(oa_wire.text_events(STORY)))
    async with claude.messages.stream(model="resilient", max_tokens=50, messages=USER) as s:
        pieces = [t async for t in s.text_stream]
        final = await s.get_final_message()
    assert "".join(pieces) == "".join(STORY) and final.stop_reason == "end_turn"


async def test_openai_models_lists_aliases(oai: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in oai.models.list()]
    assert ids == ["capped", "claude", "claude-else-gpt", "cut", "down", "gpt", "resilient"]
    assert (await oai.models.retrieve("gpt")).id == "gpt"


async def test_openai_unknown_model_is_not_found(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        await oai.chat.completions.create(model="no-such-alias", messages=USER)
    assert e.value.code == "model_not_found" and e.value.param == "model"


async def test_openai_invalid_request_names_param(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await oai.chat.completions.create(model="gpt", messages=[{"role": "wizard",
                                                                  "content": "hi"}])
    assert e.value.param == "messages[0].role"


async def test_openai_budget_is_rate_limit_with_retry_after(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as e:
        await oai.chat.completions.create(model="capped", messages=USER)
    assert e.value.code == "budget_exceeded"
    assert int(e.value.response.headers["retry-after"]) > 0


async def test_openai_chain_exhausted_is_502_with_attempts(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as e:
        await oai.chat.completions.create(model="down", messages=USER)
    assert e.value.status_code == 502
    assert "down:m: server HTTP 500" in e.value.message
    assert e.value.response.headers["x-router-attempts"] == "1"


async def test_provider_key_never_in_reply(oai: openai.AsyncOpenAI,
                                           upstreams: Upstreams) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}.",
                      "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}
    upstreams.oa.enqueue(oa_wire.json_reply(body, status=401))
    with pytest.raises(openai.InternalServerError) as e:
        await oai.chat.completions.create(model="gpt", messages=USER)
    assert e.value.status_code == 502  # the upstream's key failed, not the caller's
    assert UPSTREAM_KEY not in e.value.response.text and "auth" in e.value.message


async def test_openai_missing_or_bad_key_is_authentication_error(proxy: ProxyProcess) -> None:
    for key in ("", "wrong-key"):
        client = openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=key or "x",
                                    max_retries=0,
                                    default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as e:
            await client.chat.completions.create(model="gpt", messages=USER)
        assert e.value.code == "invalid_api_key"


async def test_openai_failure_after_first_chunk_raises_mid_stream(
        oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="cut", messages=USER, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as e:
        async for c in stream:
            text += c.choices[0].delta.content or "" if c.choices else ""
    assert text.startswith("one") and "stream_interrupted" in str(e.value.code)


# -- Anthropic ---------------------------------------------------------------------------------

async def test_anthropic_message_names_served_model(claude: anthropic.AsyncAnthropic,
                                                    upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("Hi there")])))
    raw = await claude.messages.with_raw_response.create(
        model="claude", max_tokens=100, system="be brief", messages=USER,
        stop_sequences=["END"])
    msg = await raw.parse()
    assert msg.content[0].type == "text" and msg.content[0].text == "Hi there"
    assert msg.model == an_wire.MODEL and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 12 and msg.usage.output_tokens == 5
    assert raw.headers["x-router-target"] == "an:claude-haiku-4-5"
    sent = upstreams.an.requests[-1].json
    assert sent["stop_sequences"] == ["END"] and "be brief" in json.dumps(sent["system"])


async def test_anthropic_stream_event_sequence(claude: anthropic.AsyncAnthropic,
                                               upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.stream_reply(an_wire.text_events(["Hel", "lo"])))
    async with claude.messages.stream(model="claude", max_tokens=50, messages=USER) as s:
        kinds = [e.type async for e in s]
        final = await s.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Hello"
    assert final.usage.output_tokens == 15
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds


async def test_anthropic_tool_use_and_result_round_trip(claude: anthropic.AsyncAnthropic,
                                                        upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message(
        [an_wire.tool_use_block("toolu_1", "get_weather", {"city": "Oslo"})],
        stop_reason="tool_use")))
    tools = [{"name": "get_weather", "description": "weather",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = await claude.messages.create(model="claude", max_tokens=100, tools=tools,
                                         messages=USER)
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use"
    assert use.input == {"city": "Oslo"}
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("Sunny")])))
    second = await claude.messages.create(model="claude", max_tokens=100, tools=tools, messages=[
        *USER, {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "sunny, 21C"}]}])
    assert second.content[0].type == "text" and second.content[0].text == "Sunny"
    assert upstreams.an.problems == []  # the real API's checks of the converted request
    sent = upstreams.an.requests[-1].json["messages"]
    assert sent[-1]["content"][0]["type"] == "tool_result"


async def test_anthropic_cache_breakpoints_reach_an_anthropic_target(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    """A coding agent's caching, through the proxy unchanged: breakpoints on a tool, a system
    block, a tool_result and the last user text arrive on the same blocks upstream."""
    hour, five = {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral"}
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("Done")])))
    await claude.messages.create(
        model="claude", max_tokens=100,
        tools=[{"name": "read", "input_schema": {"type": "object"}, "cache_control": hour}],
        system=[{"type": "text", "text": "You are a coding agent."},
                {"type": "text", "text": "Project notes.", "cache_control": hour}],
        messages=[
            {"role": "user", "content": "Read the file."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print(1)",
                 "cache_control": five},
                {"type": "text", "text": "Now explain it.", "cache_control": five}]}])
    assert upstreams.an.problems == []
    sent = upstreams.an.requests[-1].json
    assert sent["tools"][0]["cache_control"] == hour
    assert sent["system"][1] == {"type": "text", "text": "Project notes.", "cache_control": hour}
    result, text = sent["messages"][-1]["content"]
    assert result["type"] == "tool_result" and result["cache_control"] == five
    assert text == {"type": "text", "text": "Now explain it.", "cache_control": five}


async def test_openai_cache_control_parts_reach_an_anthropic_target(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    """``cache_control`` on OpenAI-shaped content parts (as LiteLLM and Portkey take it)."""
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("ok")])))
    system: Any = [{"type": "text", "text": "Long notes.", "cache_control": {"type": "ephemeral"}}]
    await oai.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": system}, *USER])
    assert upstreams.an.requests[-1].json["system"] == [
        {"type": "text", "text": "Long notes.", "cache_control": {"type": "ephemeral"}}]


async def test_a_malformed_cache_breakpoint_is_a_bad_request_naming_it(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    before = len(upstreams.an.requests)
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude.messages.create(model="claude", max_tokens=10, messages=USER, system=[
            {"type": "text", "text": "x", "cache_control": {"type": "forever"}}])  # type: ignore
    assert "system.0.cache_control.type" in bad.value.message
    assert len(upstreams.an.requests) == before


async def test_an_agent_s_thinking_does_not_break_a_fallback_to_openai(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    """Anthropic-only parameters (``thinking``, ``top_k``) from an Anthropic client are left
    out when the route falls back to OpenAI, which would refuse them with a 400."""
    upstreams.oa.enqueue(oa_wire.json_reply(oa_wire.completion("From GPT.")))
    msg = await claude.messages.create(
        model="claude-else-gpt", max_tokens=2048, messages=USER,
        thinking={"type": "enabled", "budget_tokens": 1024}, extra_body={"container": "c1"})
    assert msg.content[0].type == "text" and msg.content[0].text == "From GPT."
    sent = upstreams.oa.requests[-1].json
    assert "thinking" not in sent and "container" not in sent
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 2048


@pytest.mark.parametrize("alias", ["claude", "gpt"])
async def test_a_screenshot_in_a_tool_result_reaches_either_kind(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams, alias: str) -> None:
    """An agent's tool returned an image: Anthropic gets it in the tool_result, OpenAI (whose
    tool messages are text only) as the user turn after the tool results."""
    server = upstreams.an if alias == "claude" else upstreams.oa
    server.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("A red pixel.")]))
                   if alias == "claude" else oa_wire.json_reply(oa_wire.completion("A red pixel.")))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}
    msg = await claude.messages.create(model=alias, max_tokens=50, messages=[
        *USER, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_7", "name": "screenshot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_7",
                                      "content": [{"type": "text", "text": "taken"}, image]}]}],
        tools=[{"name": "screenshot", "input_schema": {"type": "object"}}])
    assert msg.content[0].type == "text" and msg.content[0].text == "A red pixel."
    sent = server.requests[-1].json["messages"]
    if alias == "claude":
        assert upstreams.an.problems == []
        result = sent[-1]["content"][0]
        assert [b["type"] for b in result["content"]] == ["text", "image"]
        assert result["content"][1]["source"]["data"] == PNG
    else:
        assert [m["role"] for m in sent][-2:] == ["tool", "user"]
        assert sent[-2]["content"] == "taken"
        assert sent[-1]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"


async def test_an_unsupported_block_in_a_tool_result_names_its_path(
        claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude.messages.create(model="claude", max_tokens=50, messages=[
            *USER, {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_8", "name": "read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_8",
                                          "content": [{"type": "video", "data": "x"}]}]}])
    assert "messages.2.content.0.content.0.type" in bad.value.message


async def test_a_client_s_betas_reach_anthropic_as_its_header(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    """The beta API (``?beta=true``, an ``anthropic-beta`` header): the same header upstream
    for an Anthropic target, and nothing of it for OpenAI."""
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("1M")])))
    msg = await claude.beta.messages.create(model="claude", max_tokens=50, messages=USER,
                                            betas=["context-1m-2025-08-07"])
    assert msg.content[0].type == "text" and msg.content[0].text == "1M"
    sent = upstreams.an.requests[-1]
    assert {k.lower(): v for k, v in sent.headers.items()}["anthropic-beta"] == \
        "context-1m-2025-08-07"
    assert "betas" not in sent.json and upstreams.an.problems == []
    upstreams.oa.enqueue(oa_wire.json_reply(oa_wire.completion("plain")))
    await claude.beta.messages.create(model="gpt", max_tokens=50, messages=USER,
                                      betas=["context-1m-2025-08-07"])
    assert "betas" not in upstreams.oa.requests[-1].json


PDF = ("JVBERi0xLjQKMSAwIG9iago8PCAvVHlwZSAvQ2F0YWxvZyAvUGFnZXMgMiAwIFIgPj4KZW5kb2JqCjIgMCBv"
       "YmoKPDwgL1R5cGUgL1BhZ2VzIC9LaWRzIFszIDAgUl0gL0NvdW50IDEgPj4KZW5kb2JqCjMgMCBvYmoKPDwg"
       "L1R5cGUgL1BhZ2UgL1BhcmVudCAyIDAgUiA+PgplbmRvYmoKdHJhaWxlcgo8PCAvUm9vdCAxIDAgUiA+Pgol"
       "JUVPRgo=")  # a one-page PDF


@pytest.mark.parametrize("alias", ["claude", "gpt"])
async def test_a_pdf_document_reaches_either_kind(claude: anthropic.AsyncAnthropic,
                                                 upstreams: Upstreams, alias: str) -> None:
    server = upstreams.an if alias == "claude" else upstreams.oa
    server.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("One page.")]))
                   if alias == "claude" else oa_wire.json_reply(oa_wire.completion("One page.")))
    msg = await claude.messages.create(model=alias, max_tokens=50, messages=[{
        "role": "user", "content": [
            {"type": "document", "title": "memo.pdf",
             "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                            "data": "An appendix."}},
            {"type": "text", "text": "How long is it?"}]}])
    assert msg.content[0].type == "text" and msg.content[0].text == "One page."
    sent = server.requests[-1].json["messages"][-1]["content"]
    if alias == "claude":
        assert upstreams.an.problems == []
        assert sent[0] == {"type": "document", "title": "memo.pdf", "source": {
            "type": "base64", "media_type": "application/pdf", "data": PDF}}
    else:
        assert sent[0] == {"type": "file", "file": {
            "filename": "memo.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}}
    assert sent[1] == {"type": "text", "text": "An appendix."}


async def test_an_openai_client_s_pdf_reaches_an_anthropic_target(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("One page.")])))
    r = await oai.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}",
                                  "filename": "memo.pdf"}},
        {"type": "text", "text": "How long?"}]}])
    assert r.choices[0].message.content == "One page." and upstreams.an.problems == []
    assert upstreams.an.requests[-1].json["messages"][0]["content"][0] == {
        "type": "document", "title": "memo.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}


async def test_a_document_by_url_reaches_anthropic_and_skips_openai(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("Read.")])))
    await claude.messages.create(model="claude", max_tokens=50, messages=[{
        "role": "user", "content": [url, {"type": "text", "text": "Summarise."}]}])
    assert upstreams.an.requests[-1].json["messages"][0]["content"][0] == {
        "type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    before = len(upstreams.oa.requests)
    with pytest.raises(anthropic.BadRequestError) as bad:  # its one target cannot fetch it
        await claude.messages.create(model="gpt", max_tokens=50, messages=[{
            "role": "user", "content": [url, {"type": "text", "text": "Summarise."}]}])
    assert "inline" in bad.value.message and len(upstreams.oa.requests) == before
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude.messages.create(model="claude", max_tokens=50, messages=[{
            "role": "user", "content": [{"type": "document", "source": {
                "type": "file", "file_id": "file_011"}}]}])
    assert "messages.0.content.0.source" in bad.value.message


async def test_a_web_search_tool_reaches_anthropic_and_its_answer_comes_back(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    """Claude Code's web search: the server tool goes upstream as given; the client gets the
    answer's text (the search's own blocks stay upstream)."""
    from tests.test_server_tools import SEARCH, searched_message
    upstreams.an.enqueue(an_wire.json_reply(searched_message()))
    msg = await claude.messages.create(model="claude", max_tokens=1024, messages=USER,
                                       tools=[SEARCH])  # type: ignore[list-item]
    assert upstreams.an.problems == []
    assert upstreams.an.requests[-1].json["tools"] == [SEARCH]
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].type == "text" and "free-threading" in msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.server_tool_use is not None  # the searches, counted as Anthropic counts
    assert msg.usage.server_tool_use.web_search_requests == 1


async def test_anthropic_streamed_tool_input(claude: anthropic.AsyncAnthropic,
                                             upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.stream_reply(an_wire.tool_events(
        [("toolu_9", "lookup", '{"q": "proxy"}')])))
    async with claude.messages.stream(
            model="claude", max_tokens=50, messages=USER,
            tools=[{"name": "lookup", "input_schema": {"type": "object"}}]) as s:
        final = await s.get_final_message()
    block = final.content[-1]
    assert block.type == "tool_use" and block.name == "lookup"
    assert block.input == {"q": "proxy"} and final.stop_reason == "tool_use"


async def test_anthropic_images_base64_and_url(claude: anthropic.AsyncAnthropic,
                                               upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("2 images")])))
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": "compare"}]
    await claude.messages.create(model="claude", max_tokens=100,
                                 messages=[{"role": "user", "content": content}])
    assert upstreams.an.problems == []
    sent = upstreams.an.requests[-1].json["messages"][0]["content"]
    sources = [b["source"] for b in sent if b["type"] == "image"]
    assert sources[0] == {"type": "base64", "media_type": "image/png", "data": PNG}
    assert sources[1] == {"type": "url", "url": "https://example.com/a.png"}


async def test_anthropic_count_tokens_is_an_estimate(claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.count_tokens(
        model="claude", messages=[{"role": "user", "content": "x" * 400}])
    assert (await raw.parse()).input_tokens >= 100
    assert raw.headers["x-router-token-count"] == "estimate"


async def test_anthropic_models_lists_aliases(claude: anthropic.AsyncAnthropic) -> None:
    ids = [m.id async for m in claude.models.list()]
    assert ids == ["capped", "claude", "claude-else-gpt", "cut", "down", "gpt", "resilient"]


async def test_anthropic_errors_are_sdk_classes(claude: anthropic.AsyncAnthropic,
                                                proxy: ProxyProcess) -> None:
    async def call(model: str, client: anthropic.AsyncAnthropic = claude) -> Any:
        return await client.messages.create(model=model, max_tokens=10, messages=USER)

    with pytest.raises(anthropic.NotFoundError):
        await call("no-such-alias")
    with pytest.raises(anthropic.RateLimitError) as limited:
        await call("capped")
    assert int(limited.value.response.headers["retry-after"]) > 0
    with pytest.raises(anthropic.InternalServerError) as failed:
        await call("down")
    assert failed.value.status_code == 502 and failed.value.type == "api_error"
    stranger = anthropic.AsyncAnthropic(base_url=proxy.base_url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await call("claude", stranger)
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(model="claude", max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "video", "source": {}}]}])


async def test_anthropic_failure_after_first_chunk_is_error_event(
        claude: anthropic.AsyncAnthropic) -> None:
    text = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        async with claude.messages.stream(model="cut", max_tokens=50, messages=USER) as s:
            async for delta in s.text_stream:
                text += delta
    assert text.startswith("one") and "stream" in str(e.value)


async def test_probes_need_no_key_but_the_api_does(proxy: ProxyProcess) -> None:
    async with aiohttp.ClientSession(base_url=proxy.base_url) as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(path) as r:
                assert r.status == 200
        async with http.get("/v1/models", headers={"x-api-key": KEY}) as r:
            assert r.status == 200
        async with http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}x"}) as r:
            assert r.status == 401 and r.headers["x-router-request-id"].startswith("req_")


# -- reasoning state, refusals and cache usage passed through ----------------------------------

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA"


async def test_anthropic_thinking_blocks_round_trip(claude: anthropic.AsyncAnthropic,
                                                    upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message(
        [an_wire.thinking_block("Let me think."), an_wire.text_block("42")])))
    first = await claude.messages.create(model="claude", max_tokens=2048, messages=USER,
                                         thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in first.content] == ["thinking", "text"]
    block = first.content[0]
    assert block.type == "thinking" and block.thinking == "Let me think."
    assert block.signature == SIGNATURE
    assert upstreams.an.requests[-1].json["thinking"]["budget_tokens"] == 1024
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("ok")])))
    await claude.messages.create(model="claude", max_tokens=2048, messages=[
        *USER, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": "and then?"}],
        thinking={"type": "enabled", "budget_tokens": 1024})
    sent = upstreams.an.requests[-1].json["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE}
    assert upstreams.an.problems == []


async def test_anthropic_streamed_thinking_is_signed(claude: anthropic.AsyncAnthropic,
                                                     upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.stream_reply(an_wire.thinking_events(
        ["Let me ", "think."], ["4", "2"])))
    async with claude.messages.stream(
            model="claude", max_tokens=2048, messages=USER,
            thinking={"type": "enabled", "budget_tokens": 1024}) as s:
        deltas = [e.delta.type async for e in s if e.type == "content_block_delta"]
        final = await s.get_final_message()
    assert "thinking_delta" in deltas and "signature_delta" in deltas
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.thinking == "Let me think."
    assert thinking.signature == "EqQBCgIYAhIM1gb" and text.type == "text"
    assert text.text == "42"


async def test_openai_client_gets_no_thinking_blocks_but_provider_state(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message(
        [an_wire.thinking_block("Hmm."), an_wire.text_block("Yes")])))
    resp = await oai.chat.completions.create(model="claude", messages=USER)
    message = resp.choices[0].message
    assert message.content == "Yes"
    state = (message.model_extra or {})["provider_state"]
    assert state["kind"] == "anthropic" and state["thinking"][0]["signature"] == SIGNATURE
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("ok")])))
    await oai.chat.completions.create(model="claude", messages=[
        *USER, message.model_dump(exclude_none=True), {"role": "user", "content": "more"}])
    sent = upstreams.an.requests[-1].json["messages"][1]["content"]
    assert sent[0]["type"] == "thinking" and sent[0]["signature"] == SIGNATURE


async def test_anthropic_refusal_after_content_is_stop_reason_refusal(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message(
        [an_wire.text_block("I started, but")], stop_reason="refusal")))
    msg = await claude.messages.create(model="claude", max_tokens=50, messages=USER)
    assert msg.stop_reason == "refusal"
    events = [*an_wire.text_events(["I started"])[:-2], an_wire.message_delta("refusal"),
              an_wire.MESSAGE_STOP]
    upstreams.an.enqueue(an_wire.stream_reply(events))
    async with claude.messages.stream(model="claude", max_tokens=50, messages=USER) as s:
        final = await s.get_final_message()
    assert final.stop_reason == "refusal"


async def test_openai_refusal_passes_through(oai: openai.AsyncOpenAI,
                                             upstreams: Upstreams) -> None:
    body = oa_wire.completion("Partly")
    body["choices"][0]["message"]["refusal"] = "I can't help with the rest."
    upstreams.oa.enqueue(oa_wire.json_reply(body))
    resp = await oai.chat.completions.create(model="gpt", messages=USER)
    assert resp.choices[0].message.refusal == "I can't help with the rest."


class Location(pydantic.BaseModel):
    city: str


async def test_openai_structured_refusal_is_a_reply_the_sdk_parses(
        oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    # As OpenAI sends it: content null, the refusal beside it, finish_reason stop (the SDK's
    # parse() raises ContentFilterFinishReasonError on content_filter).
    body = oa_wire.completion(None)
    body["choices"][0]["message"]["refusal"] = "I can't assist with that."
    upstreams.oa.enqueue(oa_wire.json_reply(body))
    resp = await oai.chat.completions.parse(model="gpt", messages=USER,
                                            response_format=Location)
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert (choice.message.content, choice.message.parsed) == (None, None)
    assert choice.message.refusal == "I can't assist with that."


async def test_openai_streamed_refusal_ends_with_stop(oai: openai.AsyncOpenAI,
                                                      upstreams: Upstreams) -> None:
    events = [oa_wire.chunk({"role": "assistant", "content": None, "refusal": ""}),
              oa_wire.chunk({"refusal": "I can't "}), oa_wire.chunk({"refusal": "assist."}),
              oa_wire.chunk({}, finish_reason="stop"),
              oa_wire.chunk(usage_=oa_wire.usage(), choices=False)]
    upstreams.oa.enqueue(oa_wire.stream_reply(events))
    stream = await oai.chat.completions.create(model="gpt", messages=USER, stream=True)
    chunks = [c async for c in stream]
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert refusal == "I can't assist."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(not c.choices[0].delta.content for c in chunks if c.choices)


async def test_anthropic_refusal_without_content_has_no_blocks(
        claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    body = an_wire.message([], stop_reason="refusal")
    body["stop_details"] = {"type": "refusal", "category": "bio",
                            "explanation": "The request could enable biological harm."}
    upstreams.an.enqueue(an_wire.json_reply(body))
    msg = await claude.messages.create(model="claude", max_tokens=50, messages=USER)
    assert (msg.content, msg.stop_reason) == ([], "refusal")
    assert msg.stop_details is not None
    assert msg.stop_details.explanation == "The request could enable biological harm."


async def test_anthropic_cache_usage_counts_apart(claude: anthropic.AsyncAnthropic,
                                                  upstreams: Upstreams) -> None:
    usage = an_wire.usage(12, 5, cache_read=50, cache_creation=100, cache_creation_1h=30)
    upstreams.an.enqueue(an_wire.json_reply(an_wire.message([an_wire.text_block("c")],
                                                           usage_=usage)))
    msg = await claude.messages.create(model="claude", max_tokens=50, messages=USER)
    assert msg.usage.input_tokens == 12  # cache reads and writes counted apart, as Anthropic
    assert msg.usage.cache_read_input_tokens == 50
    assert msg.usage.cache_creation_input_tokens == 100
    assert msg.usage.cache_creation is not None  # split by lifetime, as the API splits them
    assert (msg.usage.cache_creation.ephemeral_5m_input_tokens,
            msg.usage.cache_creation.ephemeral_1h_input_tokens) == (70, 30)
