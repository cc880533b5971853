"""Property tests of call input: whatever a caller passes as model, messages and params,
``Router.chat`` / ``Router.stream`` either answer or raise an LlmError, never another type
(here, with a server that answers everything: invalid_request or no_route only); a refused
call sends nothing; whatever is sent is valid UTF-8 JSON. A valid call with one bad
field planted anywhere is refused before any I/O, and the same call without it is answered.

One Router and one loopback server per wire format (OpenAI, Anthropic, Gemini, Ollama) serve
every example (pytest-asyncio runs each example on the test's loop)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import Router
from router.errors import ErrorClass, InvalidRequestError, LlmError
from router.types import ImagePart, Message, TextPart, ToolCall
from tests.engine_helpers import route_file
from tests.servers import anthropic, google, ollama
from tests.servers.base import ScriptedServer
from tests.servers.openai import (
    OpenAIServer,
    RecordedRequest,
    Reply,
    completion,
    json_reply,
    stream_reply,
    text_events,
)

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
ROLES = ("system", "user", "assistant", "tool")


def deep_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        node.append([])
        node = node[0]
    return root


# -- strategies: anything a caller might pass ------------------------------------------------

TEXTS = st.one_of(st.text(max_size=6), st.sampled_from(
    ["\ud800", "a\udfffb", "é", "世界🙂", "", " ", "\x00", "fast"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**70),
                    st.floats(), TEXTS)
JUNK = st.one_of(SCALARS, st.just(object()), st.sets(st.integers(), max_size=2),
                 st.binary(max_size=3), st.just(deep_list(500)), st.just(["user"]),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.integers(), TEXTS,
                                                                       max_size=2))
KEYS = st.one_of(TEXTS, st.integers(), st.tuples(st.integers()))
VALUES = st.recursive(st.one_of(SCALARS, JUNK), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8)
PARTS = st.one_of(
    st.fixed_dictionaries({"type": st.just("text")}, optional={"text": st.one_of(TEXTS, JUNK)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.one_of(
        st.sampled_from(["https://h/x.png", "data:image/png;base64,AA==", "data:x",
                         "ftp://h/x", "file:///etc/passwd"]),
        st.fixed_dictionaries({"url": st.one_of(st.just("http://h/x.png"), TEXTS, JUNK)},
                              optional={"detail": st.one_of(TEXTS, JUNK)}))}),
    st.builds(TextPart, st.one_of(TEXTS, JUNK)),
    st.builds(ImagePart, st.one_of(st.just("https://h/y.jpg"), TEXTS, JUNK)),
    st.fixed_dictionaries({"type": TEXTS}), JUNK)
CONTENTS = st.one_of(TEXTS, st.none(), st.lists(PARTS, max_size=3), st.tuples(PARTS), JUNK)
FUNCTIONS = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.just("f"), TEXTS, JUNK),
    "arguments": st.one_of(st.sampled_from(['{"a": 1}', "{}", "", '{"a": NaN}', "[1]",
                                            '{"a": "\\ud800"}', "{" * 300, "nope"]),
                           VALUES)})
CALLS = st.one_of(st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "function": FUNCTIONS},
                          optional={"id": st.one_of(st.just("call_1"), TEXTS, JUNK)}),
    st.builds(ToolCall, st.one_of(st.just("c"), JUNK), st.one_of(st.just("f"), TEXTS, JUNK),
              st.one_of(st.just({}), VALUES)),
    JUNK), max_size=2), JUNK)
MESSAGES_DICTS = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from([*ROLES, "developer", "bogus"]), JUNK)},
    optional={"content": CONTENTS, "name": st.one_of(TEXTS, JUNK),
              "tool_call_id": st.one_of(TEXTS, JUNK), "tool_calls": CALLS,
              "extra_key": VALUES})
MESSAGE_OBJECTS = st.builds(Message, st.sampled_from(ROLES), CONTENTS, st.none() | CALLS,
                            st.none() | TEXTS | JUNK, st.none() | TEXTS | JUNK)
MESSAGES = st.one_of(st.lists(st.one_of(MESSAGES_DICTS, MESSAGE_OBJECTS, JUNK), max_size=3),
                     st.tuples(MESSAGES_DICTS), JUNK)
TOOLS = st.one_of(st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.one_of(st.just("function"), TEXTS), "function":
                           st.fixed_dictionaries({"name": st.one_of(st.just("f"), JUNK)},
                                                 optional={"parameters": VALUES,
                                                           "description": st.one_of(TEXTS, JUNK),
                                                           "strict": JUNK})}),
    JUNK), max_size=2), JUNK)
FORMATS = st.one_of(st.sampled_from([{"type": "json_object"}, {"type": "text"}, {"type": "xml"},
                                     "json", {"type": "json_schema", "json_schema": []}]),
                    st.fixed_dictionaries({"type": st.just("json_schema"), "json_schema":
                                           st.fixed_dictionaries({"schema": VALUES})}), JUNK)
PARAM_VALUES = {
    "max_tokens": st.one_of(st.integers(min_value=1, max_value=100), JUNK),
    "max_completion_tokens": JUNK,
    "temperature": st.one_of(st.floats(min_value=0, max_value=2), JUNK),
    "top_p": st.one_of(st.floats(), JUNK),
    "stop": st.one_of(TEXTS, st.lists(st.one_of(TEXTS, JUNK), max_size=2), JUNK),
    "tools": TOOLS, "tool_choice": st.one_of(st.just("auto"), VALUES),
    "parallel_tool_calls": JUNK, "response_format": FORMATS, "seed": JUNK, "user": JUNK,
    "reasoning_effort": st.one_of(st.just("low"), JUNK), "metadata": VALUES, "top_k": JUNK,
}
PARAMS = st.fixed_dictionaries({}, optional=PARAM_VALUES)
MODELS = st.one_of(st.just("fast"), st.just("oa:m"), JUNK)


# -- strategies: a valid call, and one bad field to plant in it ------------------------------

GOOD_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
GOOD_TURN = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                           "content": GOOD_TEXT}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": GOOD_TEXT}), min_size=1,
        max_size=2)}),
    st.builds(Message, st.sampled_from(["user", "assistant"]), GOOD_TEXT)).map(lambda m: [m])
#: A tool call and its answer (every vendor but Ollama refuses a tool message answering none).
TOOL_EXCHANGE = GOOD_TEXT.map(lambda answer: [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "content": answer, "tool_call_id": "call_1"}])
FIRST_TEXT = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6)
#: Starts with a non-empty user turn: Anthropic and Gemini refuse a conversation without one.
GOOD_MESSAGES = st.tuples(
    st.fixed_dictionaries({"role": st.just("user"), "content": FIRST_TEXT}),
    st.lists(st.one_of(GOOD_TURN, TOOL_EXCHANGE), max_size=3),
).map(lambda t: [t[0], *(m for turn in t[1] for m in turn)])
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
GOOD_PARAMS = st.fixed_dictionaries({}, optional={
    "max_tokens": st.integers(1, 100), "temperature": st.floats(0, 1),
    "stop": st.lists(FIRST_TEXT, max_size=2), "seed": st.integers(0, 2**31),
    "metadata": st.dictionaries(FIRST_TEXT, GOOD_TEXT, max_size=2),
    "tools": st.just([{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "json_schema",
                                        "json_schema": {"name": "r", "schema": SCHEMA}}])})
BAD_VALUES = st.sampled_from([
    "\ud800", float("nan"), float("inf"), object(), {1: "x"}, deep_list(500), {1, 2}, 2**80,
    b"x"])  # each one bad in every spot below
#: Where a bad value goes: (field of the message, param name); a value is planted in one.
SPOTS = st.one_of(st.tuples(st.sampled_from(["role", "content", "name", "tool_call_id",
                                             "tool_calls"]), st.none()),
                  st.tuples(st.none(), st.sampled_from(
                      ["max_tokens", "temperature", "top_p", "stop", "tools", "seed",
                       "metadata", "response_format", "parallel_tool_calls", "user"])))


def plant(messages: list[Any], params: dict[str, Any], spot: tuple[str | None, str | None],
          value: Any, index: int) -> tuple[list[Any], dict[str, Any]]:
    """``messages`` and ``params`` with ``value`` at ``spot`` (message ``index``)."""
    field, param = spot
    messages, params = list(messages), dict(params)
    if param is not None:
        params[param] = value
    else:
        m = messages[index % len(messages)]
        base = {"role": m.role, "content": m.content} if isinstance(m, Message) else dict(m)
        messages[index % len(messages)] = {**base, str(field): value}
    return messages, params


# -- running one call: one Router, one loopback server per wire format ----------------------

#: Targets of each kind, on models whose catalog entries take tools, images and JSON output.
TARGETS = ("oa:m", "an:claude-haiku-4-5", "gg:gemini-2.5-flash", "ol:llama3.2")


def _openai_reply(request: RecordedRequest) -> Reply:
    if request.json.get("stream"):
        return stream_reply(text_events(["ok"]))
    return json_reply(completion("ok"))


def _anthropic_reply(request: RecordedRequest) -> Reply:
    if request.json.get("stream"):
        return stream_reply(anthropic.text_events(["ok"]))
    return json_reply(anthropic.message([anthropic.text_block("ok")]))


def _ollama_reply(request: RecordedRequest) -> Reply:
    if request.json.get("stream"):
        return ollama.stream_reply(ollama.text_lines(["ok"]))
    return ollama.json_reply(ollama.chat_response("ok"))


Servers = tuple[OpenAIServer, ScriptedServer, ScriptedServer, ScriptedServer]


@pytest.fixture
async def setup(openai_server: OpenAIServer) -> AsyncIterator[tuple[Router, Servers]]:
    """A Router whose ``fast`` alias and ``oa:``/``an:``/``gg:``/``ol:`` targets reach
    servers that answer whatever they get (no request validation: that is the point)."""
    openai_server.default = _openai_reply
    async with anthropic.AnthropicServer(validate=False) as an, \
            google.GoogleServer(strict=False) as gg, ollama.OllamaServer() as ol:
        an.default, ol.default = _anthropic_reply, _ollama_reply
        providers = {"oa": {}, "an": {"kind": "anthropic", "base_url": an.base_url},
                     "gg": {"kind": "google", "base_url": gg.base_url},
                     "ol": {"kind": "ollama", "base_url": ol.base_url}}
        data = route_file(openai_server.port, {"fast": ["oa:m"]}, providers=providers)
        async with Router.from_dict(data) as router:
            yield router, (openai_server, an, gg, ol)


def _sent(servers: Servers) -> list[RecordedRequest]:
    return [r for server in servers for r in server.requests]


def _no_constant(name: str) -> NoReturn:
    raise AssertionError(f"{name} was sent (not JSON)")


async def call(router: Router, servers: Servers, mode: str, model: Any, messages: Any,
               params: dict[str, Any]) -> LlmError | None:
    """Run one call; return its LlmError (None: answered). Any other exception propagates.
    Checks that a refused call sent nothing and that every body sent is strict JSON."""
    before = len(_sent(servers))
    error: LlmError | None = None
    try:
        if mode == "chat":
            await router.chat(model, messages, **params)
        else:
            async for _ in router.stream(model, messages, **params):
                pass
    except LlmError as e:
        error = e
    sent = _sent(servers)[before:]
    if isinstance(error, InvalidRequestError):
        assert sent == [], "a refused call reached the server"
    for request in sent:
        json.loads(request.body.decode("utf-8"), parse_constant=_no_constant)
    return error


MODES = st.sampled_from(["chat", "stream"])


#: What an arbitrary value planted in a valid call is drawn from, per spot.
FIELD_VALUES = {"role": st.one_of(st.sampled_from(ROLES), JUNK), "content": CONTENTS,
                "name": st.one_of(TEXTS, JUNK), "tool_call_id": st.one_of(TEXTS, JUNK),
                "tool_calls": CALLS}


@st.composite
def near_valid_calls(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any]]:
    """A valid call with one to three arbitrary values planted in it."""
    messages, params = draw(GOOD_MESSAGES), draw(GOOD_PARAMS)
    for _ in range(draw(st.integers(1, 3))):
        spot = draw(SPOTS)
        field, param = spot
        values = FIELD_VALUES[field] if field is not None else PARAM_VALUES[str(param)]
        messages, params = plant(messages, params, spot, draw(values), draw(st.integers(0, 3)))
    return messages, params


@SETTINGS
@given(mode=MODES, model=st.one_of(st.sampled_from(TARGETS), st.sampled_from(TARGETS), MODELS),
       call_input=st.one_of(near_valid_calls(), st.tuples(MESSAGES, PARAMS)))
async def test_any_call_input_is_answered_or_an_llm_error_and_sends_only_valid_json(
        setup: tuple[Router, Servers], mode: str, model: Any,
        call_input: tuple[Any, dict[str, Any]]) -> None:
    error = await call(*setup, mode, model, *call_input)
    # The servers answer whatever they get: input that passed the checks is answered (or names
    # no route); no provider chokes on what the checks let through.
    assert error is None or error.error_class in (ErrorClass.INVALID_REQUEST,
                                                  ErrorClass.NO_ROUTE), repr(error)


@SETTINGS
@given(mode=MODES, model=st.sampled_from(TARGETS), messages=GOOD_MESSAGES, params=GOOD_PARAMS,
       spot=SPOTS, value=BAD_VALUES, index=st.integers(0, 3))
async def test_one_bad_field_in_a_valid_call_is_refused_before_any_io(
        setup: tuple[Router, Servers], mode: str, model: str, messages: list[Any],
        params: dict[str, Any], spot: tuple[str | None, str | None], value: Any,
        index: int) -> None:
    assert await call(*setup, mode, model, messages, params) is None
    bad_messages, bad_params = plant(messages, params, spot, value, index)
    assert isinstance(await call(*setup, mode, model, bad_messages, bad_params),
                      InvalidRequestError)
