"""Cross-provider fallback: a conversation whose history holds tool calls and their results,
produced by one kind of provider, completes on every other kind.

Each test runs the five upstream kinds on loopback servers (openai, anthropic, google, ollama,
azure-openai). Every server checks the bodies it receives as the real API would and answers a
bad one with its own 400 (the anthropic and google servers always; the openai, azure and ollama
ones through ``tests/wire_validators.py``). The router treats that 400 as invalid_request and
fails at once, so a history translated wrongly fails the test, and ``Upstreams.refusals`` says
which rule it broke. Beyond validity, the tests read the translated tool calls and results back
out of each recorded body (``EXCHANGES``): the same calls, arguments and results on every wire.

Step 1 asks kind A, which answers with two parallel tool calls in its own wire format; the test
appends the assistant message and one ``tool`` message per call. Step 2 routes ``A,B``: A is
overloaded (retried once, then the route falls back) and B answers. A's retried request is
checked too: the history goes back to A in A's own format.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from router import ChatResponse, Router
from tests.servers import anthropic as an
from tests.servers import azure as az
from tests.servers import google as gg
from tests.servers import ollama as ol
from tests.servers import openai as oa
from tests.wire_validators import ollama_chat_validator, openai_chat_validator

KEY = "sk-cross-provider-0123456789abcdef"
CITIES = ("Paris", "London")
RESULTS = {"Paris": {"temp_c": 18, "sky": "clear"}, "London": {"temp_c": 12, "sky": "rain"}}
EXPECTED = [("get_weather", {"city": c}, RESULTS[c]) for c in CITIES]
ANSWER = "Paris: 18°C and clear. London: 12°C with rain."
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string",
                                                             "description": "City name"}},
                   "required": ["city"]}}}
OPENING = [{"role": "system", "content": "You are a terse weather assistant."},
           {"role": "user", "content": "What is the weather in Paris and in London?"}]
# A 1x1 red PNG.
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
           "RU5ErkJggg==")
IMAGE_QUESTION = [{"role": "user", "content": [
    {"type": "text", "text": "What colour is this picture?"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}]


@dataclass(frozen=True)
class Kind:
    """One upstream kind: its provider name in the route file and the model it serves."""

    kind: str
    provider: str
    model: str

    @property
    def target(self) -> str:
        return f"{self.provider}:{self.model}"


KINDS = {k.kind: k for k in (
    Kind("openai", "openai", "gpt-4o-mini"),
    Kind("anthropic", "anthropic", "claude-haiku-4-5"),
    Kind("google", "google", "gemini-2.5-flash"),
    Kind("ollama", "ollama", "llama3.2"),
    Kind("azure-openai", "azure", "gpt-4o"),
)}
NAMES = list(KINDS)
PAIRS = [(a, b) for a in NAMES for b in NAMES if a != b]


def neighbour(kind: str, step: int) -> str:
    """The kind ``step`` places after ``kind`` in NAMES (cyclic)."""
    return NAMES[(NAMES.index(kind) + step) % len(NAMES)]


def chain(*kinds: str) -> str:
    """An ad-hoc route: the kinds' targets, in order."""
    return ",".join(KINDS[k].target for k in kinds)


# --------------------------------------------------------------------------------------------
# The upstreams


class Upstreams:
    """The five loopback servers, validating, and the route file pointing at them."""

    def __init__(self) -> None:
        self.servers: dict[str, Any] = {
            "openai": oa.OpenAIServer(validator=openai_chat_validator),
            "anthropic": an.AnthropicServer(),
            "google": gg.GoogleServer(),
            "ollama": ol.OllamaServer(validator=ollama_chat_validator),
            "azure-openai": az.AzureServer(validator=openai_chat_validator),
        }
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Upstreams:
        for server in self.servers.values():
            await self._stack.enter_async_context(server)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def enqueue(self, kind: str, *replies: Any) -> None:
        server = self.servers[kind]
        if kind == "azure-openai":
            server.enqueue(*replies, deployment=KINDS[kind].model)
        else:
            server.enqueue(*replies)

    def bodies(self, kind: str) -> list[Any]:
        """The JSON bodies of the chat requests ``kind``'s server received, in order."""
        return [r.json for r in self.servers[kind].requests if r.method == "POST"]

    def refusals(self) -> dict[str, list[Any]]:
        """What each server refused as invalid (empty when every body was valid)."""
        found = {kind: list(s.violations if kind == "google" else s.problems)
                 for kind, s in self.servers.items()}
        return {kind: problems for kind, problems in found.items() if problems}

    def route_file(self, *, blind: str | None = None) -> dict[str, Any]:
        """Every kind as a provider; ``blind``'s model is declared text-only."""
        providers: dict[str, dict[str, Any]] = {}
        for kind, spec in KINDS.items():
            entry: dict[str, Any] = {"kind": kind, "base_url": self.servers[kind].base_url}
            if kind != "ollama":
                entry["api_key"] = KEY
            if kind == blind:
                entry["models"] = {spec.model: {"vision": False}}
            providers[spec.provider] = entry
        return {"version": 1,
                "defaults": {"timeout": {"connect": "1s", "first_token": "2s", "total": "5s",
                                         "idle": "2s"},
                             "retry": {"attempts": 2, "initial": "1ms", "max": "5ms"}},
                "providers": providers}


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


# --------------------------------------------------------------------------------------------
# Each kind's replies, in its own wire format

OPENAI_IDS = ("call_DdmO9pD3xa9XTPNJ32zg2hcA", "call_ABYSQvUEsm1XAQjxvDMfi8zS")
ANTHROPIC_IDS = ("toolu_01A09q90qw90lq917835lq9", "toolu_01BX3Kh7pZtRkGm4wJzq2nLd")


def tool_calls_reply(kind: str) -> Any:
    """Two parallel get_weather calls (Paris, London), as ``kind`` sends them."""
    args = [{"city": c} for c in CITIES]
    if kind in ("openai", "azure-openai"):
        calls = [oa.tool_call(i, "get_weather", json.dumps(a))
                 for i, a in zip(OPENAI_IDS, args, strict=True)]
        build = az.azure_completion if kind == "azure-openai" else oa.completion
        return oa.json_reply(build(None, tool_calls=calls, finish_reason="tool_calls"))
    if kind == "anthropic":
        blocks = [an.text_block("Let me check both cities.")]
        blocks += [an.tool_use_block(i, "get_weather", a)
                   for i, a in zip(ANTHROPIC_IDS, args, strict=True)]
        return an.json_reply(an.message(blocks, stop_reason="tool_use"))
    if kind == "google":  # Gemini 2.5 sends no call ids
        return gg.json_reply(gg.response(parts=[gg.call_part("get_weather", a) for a in args]))
    calls = [ol.tool_call("get_weather", a, index=i) for i, a in enumerate(args)]
    return ol.json_reply(ol.chat_response("", tool_calls=calls))


def overloaded(kind: str) -> Any:
    """A retryable failure, as ``kind`` reports being overloaded."""
    return {"openai": lambda: oa.error_reply("overloaded"),            # 503
            "anthropic": lambda: an.error_reply("overloaded"),         # 529
            "google": lambda: gg.error_reply("unavailable"),           # 503 UNAVAILABLE
            "ollama": lambda: ol.error_reply("queue_full"),            # 503
            "azure-openai": lambda: az.azure_error_reply("server_error"),  # 500
            }[kind]()


def text_reply(kind: str, text: str) -> Any:
    return {"openai": lambda: oa.json_reply(oa.completion(text)),
            "anthropic": lambda: an.json_reply(an.message([an.text_block(text)])),
            "google": lambda: gg.json_reply(gg.response(text)),
            "ollama": lambda: ol.json_reply(ol.chat_response(text)),
            "azure-openai": lambda: az.json_reply(az.azure_completion(text)),
            }[kind]()


def text_stream(kind: str, parts: list[str]) -> Any:
    return {"openai": lambda: oa.stream_reply(oa.text_events(parts)),
            "anthropic": lambda: an.stream_reply(an.text_events(parts)),
            "google": lambda: gg.stream_reply(gg.text_events(parts)),
            "ollama": lambda: ol.stream_reply(ol.text_lines(parts)),
            "azure-openai": lambda: az.stream_reply(az.azure_text_events(parts)),
            }[kind]()


# --------------------------------------------------------------------------------------------
# Reading the tool exchange back out of each wire: [(name, arguments, result), ...]

Exchange = list[tuple[str, Any, Any]]


def _openai_exchange(body: Mapping[str, Any]) -> Exchange:
    messages = body["messages"]
    results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]),
             json.loads(results[c["id"]]))
            for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or ()]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content or () if b.get("type") == "text")


def _anthropic_exchange(body: Mapping[str, Any]) -> Exchange:
    out: Exchange = []
    messages = body["messages"]
    for i, m in enumerate(messages):
        uses = [b for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_use"]
        if m["role"] != "assistant" or not uses:
            continue
        answers = {b["tool_use_id"]: _text_of(b.get("content"))
                   for b in messages[i + 1]["content"] if b["type"] == "tool_result"}
        out += [(u["name"], u["input"], json.loads(answers[u["id"]])) for u in uses]
    return out


def _google_exchange(body: Mapping[str, Any]) -> Exchange:
    out: Exchange = []
    contents = body["contents"]
    for i, c in enumerate(contents):
        calls = [p["functionCall"] for p in c["parts"] if "functionCall" in p]
        if c["role"] != "model" or not calls:
            continue
        answers = [p["functionResponse"] for p in contents[i + 1]["parts"]
                   if "functionResponse" in p]
        assert [a["name"] for a in answers] == [f["name"] for f in calls]  # paired by name
        out += [(f["name"], f["args"], a["response"])
                for f, a in zip(calls, answers, strict=True)]
    return out


def _ollama_exchange(body: Mapping[str, Any]) -> Exchange:
    out: Exchange = []
    messages = body["messages"]
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m.get("tool_calls"):
            continue
        calls = [c["function"] for c in m["tool_calls"]]
        answers = messages[i + 1:i + 1 + len(calls)]
        assert [a["role"] for a in answers] == ["tool"] * len(calls)
        assert [a.get("tool_name") for a in answers] == [c["name"] for c in calls]
        out += [(c["name"], c["arguments"], json.loads(a["content"]))
                for c, a in zip(calls, answers, strict=True)]
    return out


EXCHANGES: dict[str, Callable[[Mapping[str, Any]], Exchange]] = {
    "openai": _openai_exchange, "azure-openai": _openai_exchange,
    "anthropic": _anthropic_exchange, "google": _google_exchange, "ollama": _ollama_exchange,
}


# --------------------------------------------------------------------------------------------
# Conversation helpers


def as_openai_dict(r: ChatResponse) -> dict[str, Any]:
    """The answer as the OpenAI-shaped assistant message a caller would store."""
    return {"role": "assistant", "content": r.text or None,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                           for c in r.tool_calls]}


async def start_conversation(up: Upstreams, router: Router, kind: str, *,
                             as_dict: bool = False) -> list[Any]:
    """Step 1: ``kind`` answers with tool calls; returns the history with their results."""
    up.enqueue(kind, tool_calls_reply(kind))
    r = await router.chat(KINDS[kind].target, OPENING, tools=[WEATHER_TOOL])
    assert r.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in r.tool_calls] == [e[:2] for e in EXPECTED]
    assert len({c.id for c in r.tool_calls}) == len(CITIES)  # distinct, whatever the wire
    results = [{"role": "tool", "tool_call_id": c.id,
                "content": json.dumps(RESULTS[c.arguments["city"]])} for c in r.tool_calls]
    return [*OPENING, as_openai_dict(r) if as_dict else r.message, *results]


def outcomes(records: Any) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in records]


def fell_back(first: str, second: str) -> list[tuple[str, str]]:
    """A tried twice (one retry) and failed, then B answered."""
    a, b = KINDS[first].target, KINDS[second].target
    return [(a, "error"), (a, "error"), (b, "ok")]


# --------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
async def test_tool_history_from_one_kind_completes_on_another(up: Upstreams, first: str,
                                                               second: str) -> None:
    async with Router.from_dict(up.route_file()) as router:
        history = await start_conversation(up, router, first)
        up.enqueue(first, overloaded(first), overloaded(first))
        up.enqueue(second, text_reply(second, ANSWER))
        r = await router.chat(chain(first, second), history, tools=[WEATHER_TOOL])

    assert up.refusals() == {}
    assert r.text == ANSWER
    assert r.target == KINDS[second].target
    assert outcomes(r.attempts) == fell_back(first, second)
    assert {a.error_class.value for a in r.attempts[:2] if a.error_class} <= {"overloaded",
                                                                              "server"}
    # B got the calls and their results in its own format; A got them back in its own.
    assert EXCHANGES[second](up.bodies(second)[-1]) == EXPECTED
    assert EXCHANGES[first](up.bodies(first)[-1]) == EXPECTED


@pytest.mark.parametrize("second", NAMES)
async def test_streamed_completion_after_fallback_carries_tool_history(up: Upstreams,
                                                                       second: str) -> None:
    first = neighbour(second, -1)
    async with Router.from_dict(up.route_file()) as router:
        history = await start_conversation(up, router, first, as_dict=True)
        up.enqueue(first, overloaded(first), overloaded(first))
        up.enqueue(second, text_stream(second, ["Paris: 18°C and clear. ",
                                                "London: 12°C with rain."]))
        chunks = [c async for c in router.stream(chain(first, second), history,
                                                 tools=[WEATHER_TOOL])]

    assert up.refusals() == {}
    assert "".join(c.delta for c in chunks) == ANSWER
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.target == KINDS[second].target
    assert outcomes(last.attempts) == fell_back(first, second)
    assert EXCHANGES[second](up.bodies(second)[-1]) == EXPECTED


@pytest.mark.parametrize("blind", NAMES)
async def test_image_skips_text_only_target_then_completes_on_next_kind(up: Upstreams,
                                                                         blind: str) -> None:
    seeing = neighbour(blind, 1)
    up.enqueue(seeing, text_reply(seeing, "Red."))
    async with Router.from_dict(up.route_file(blind=blind)) as router:
        r = await router.chat(chain(blind, seeing), IMAGE_QUESTION)

    assert up.refusals() == {}
    assert r.text == "Red."
    assert r.target == KINDS[seeing].target
    assert [(a.target, a.outcome, a.reason) for a in r.attempts] == [
        (KINDS[blind].target, "skipped", "capability"), (KINDS[seeing].target, "ok", None)]
    assert up.bodies(blind) == []
    assert PNG_B64 in json.dumps(up.bodies(seeing)[-1])  # the image went, in B's format


LONG_TOOL = "mcp__github_enterprise__create_pull_request_review_comment"  # MCP-style naming


@pytest.mark.parametrize("second", ["openai", "azure-openai"])
async def test_call_ids_made_up_for_gemini_fit_the_openai_wire(up: Upstreams,
                                                               second: str) -> None:
    # Gemini 2.5 sends no call ids; the ones made up for its calls grow with the function
    # name, and OpenAI and Azure refuse a tool_calls id longer than 40 characters.
    tool = {"type": "function", "function": {
        "name": LONG_TOOL, "description": "Comment on a pull request",
        "parameters": {"type": "object", "properties": {"body": {"type": "string"}}}}}
    up.enqueue("google", gg.json_reply(gg.response(parts=[gg.call_part(LONG_TOOL,
                                                                       {"body": "LGTM"})])))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(KINDS["google"].target, OPENING, tools=[tool])
        history = [*OPENING, r.message,
                   {"role": "tool", "tool_call_id": r.tool_calls[0].id, "content": '{"ok": 1}'}]
        up.enqueue("google", overloaded("google"), overloaded("google"))
        up.enqueue(second, text_reply(second, "Posted."))
        r = await router.chat(chain("google", second), history, tools=[tool])

    assert up.refusals() == {}
    assert r.text == "Posted."
    assert EXCHANGES[second](up.bodies(second)[-1]) == [(LONG_TOOL, {"body": "LGTM"}, {"ok": 1})]


async def test_image_url_ollama_cannot_fetch_moves_on_to_next_kind(up: Upstreams) -> None:
    up.enqueue("openai", text_reply("openai", "Red."))
    question = [{"role": "user", "content": [
        {"type": "text", "text": "What colour is this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/red.png"}}]}]
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(chain("ollama", "openai"), question)

    assert r.target == KINDS["openai"].target
    skip = r.attempts[0]
    assert (skip.outcome, skip.reason) == ("skipped", "capability")
    assert "data: URLs" in (skip.detail or "")
