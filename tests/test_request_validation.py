"""Bad call input is a typed InvalidRequestError before any I/O: each case below once raised
TypeError, UnicodeEncodeError, RecursionError or AttributeError, or reached the upstream (NaN
sent as invalid JSON). Each is run through ``Router.chat`` and ``Router.stream`` against a
loopback OpenAI-shaped server that must see no request at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, InvalidRequestError
from router.types import ImagePart, Message, ResponseFormat, TextPart, Tool, ToolCall
from tests.engine_helpers import make_router, target
from tests.servers.openai import OpenAIServer

MSG = [{"role": "user", "content": "hi"}]
SURROGATE = "\ud800"


def nested_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def nested_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


def assistant_call(function: Any, **call: Any) -> list[dict[str, Any]]:
    """A conversation whose assistant message makes one tool call with ``function``."""
    return [*MSG, {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "call_1", "type": "function", "function": function,
                                   **call}]}]


def tool_def(**function: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "f", **function}}]


# (id, model, messages, params, the parameter path the message must name)
CASES: list[tuple[str, Any, Any, dict[str, Any], str]] = [
    ("surrogate_in_content", "fast", [{"role": "user", "content": f"a{SURROGATE}"}], {},
     "messages[0].content"),
    ("surrogate_in_non_ascii_content", "fast",
     [{"role": "user", "content": f"é{SURROGATE}"}], {}, "messages[0].content"),
    ("surrogate_in_text_part", "fast",
     [*MSG, {"role": "user", "content": [{"type": "text", "text": "\udfff"}]}], {},
     "messages[1].content[0].text"),
    ("surrogate_in_name", "fast", [{"role": "user", "content": "hi", "name": SURROGATE}], {},
     "messages[0].name"),
    ("surrogate_in_tool_arguments", "fast",
     assistant_call({"name": "f", "arguments": '{"city": "\\ud800"}'}), {},
     "messages[1].tool_calls[0].function.arguments.city"),
    ("surrogate_in_tool_name", "fast", MSG, {"tools": tool_def(name=f"f{SURROGATE}")},
     "tools[0].function.name"),
    ("surrogate_in_stop", "fast", MSG, {"stop": ["ok", SURROGATE]}, "stop[1]"),
    ("surrogate_in_extra_param", "fast", MSG, {"metadata": {"k": SURROGATE}}, "metadata.k"),
    ("unhashable_role", "fast", [{"role": ["user"], "content": "hi"}], {}, "messages[0].role"),
    ("unknown_role", "fast", [{"role": "bogus", "content": "hi"}], {}, "messages[0].role"),
    ("int_tool_call_id", "fast",
     [*assistant_call({"name": "f", "arguments": "{}"}),
      {"role": "tool", "content": "1", "tool_call_id": 5}], {}, "messages[2].tool_call_id"),
    ("tool_message_without_tool_call_id", "fast", [*MSG, {"role": "tool", "content": "1"}], {},
     "messages[1]"),
    ("tools_not_a_list", "fast", MSG, {"tools": {"name": "f"}}, "tools"),
    ("tool_calls_not_a_list", "fast",
     [*MSG, {"role": "assistant", "tool_calls": {"id": "c"}}], {}, "messages[1].tool_calls"),
    ("deeply_nested_content", "fast", [{"role": "user", "content": nested_list(5000)}], {},
     "messages[0].content[0]"),
    ("deeply_nested_tool_arguments", "fast",
     assistant_call({"name": "f", "arguments": nested_dict(5000)}), {},
     "messages[1].tool_calls[0].function.arguments"),
    ("deeply_nested_tool_arguments_text", "fast",
     assistant_call({"name": "f", "arguments": '{"a":' * 5000 + "1" + "}" * 5000}), {},
     "messages[1].tool_calls[0].function.arguments"),
    ("deeply_nested_extra_param", "fast", MSG, {"metadata": nested_list(5000)}, "metadata"),
    ("deeply_nested_tool_schema", "fast", MSG, {"tools": tool_def(parameters=nested_dict(5000))},
     "tools[0].function.parameters"),
    ("string_response_format", "fast", MSG, {"response_format": "json"}, "response_format"),
    ("response_format_schema_not_an_object", "fast", MSG,
     {"response_format": {"type": "json_schema", "json_schema": ["x"]}},
     "response_format.json_schema"),
    ("model_none", None, MSG, {}, "model"),
    ("model_list", ["fast"], MSG, {}, "model"),
    ("model_empty", "", MSG, {}, "model"),
    ("model_with_surrogate", f"fast{SURROGATE}", MSG, {}, "model"),
    ("temperature_nan", "fast", MSG, {"temperature": float("nan")}, "temperature"),
    ("temperature_inf", "fast", MSG, {"temperature": float("inf")}, "temperature"),
    ("temperature_string", "fast", MSG, {"temperature": "0.2"}, "temperature"),
    ("top_p_nan", "fast", MSG, {"top_p": float("nan")}, "top_p"),
    ("stop_int", "fast", MSG, {"stop": 5}, "stop"),
    ("max_tokens_bool", "fast", MSG, {"max_tokens": True}, "max_tokens"),
    ("max_tokens_zero", "fast", MSG, {"max_tokens": 0}, "max_tokens"),
    ("seed_float", "fast", MSG, {"seed": 1.5}, "seed"),
    ("parallel_tool_calls_string", "fast", MSG,
     {"tools": tool_def(), "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ("nan_in_extra_param", "fast", MSG, {"frequency_penalty": float("nan")},
     "frequency_penalty"),
    ("object_in_extra_param", "fast", MSG, {"metadata": {"when": object()}}, "metadata.when"),
    ("messages_not_iterable", "fast", 5, {}, "messages"),
    ("messages_a_string", "fast", "hi", {}, "messages"),
    ("messages_a_dict", "fast", {"role": "user", "content": "hi"}, {}, "messages"),
    ("messages_empty", "fast", [], {}, "messages"),
    ("message_neither_dict_nor_message", "fast", [*MSG, 5], {}, "messages[1]"),
    ("content_part_of_unknown_type", "fast",
     [{"role": "user", "content": [{"type": "audio", "data": "x"}]}], {},
     "messages[0].content[0]"),
    ("content_part_not_a_dict", "fast", [{"role": "user", "content": ["hi"]}], {},
     "messages[0].content[0]"),
    ("content_an_int", "fast", [{"role": "user", "content": 5}], {}, "messages[0].content"),
    ("text_part_without_text", "fast", [{"role": "user", "content": [{"type": "text"}]}], {},
     "messages[0].content[0].text"),
    ("image_url_ftp", "fast",
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://h/x"}}]}],
     {}, "messages[0].content[0].image_url.url"),
    ("image_url_not_a_string", "fast",
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}], {},
     "messages[0].content[0].image_url.url"),
    ("data_url_without_data", "fast",
     [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png"}]}], {},
     "messages[0].content[0].image_url"),
    ("non_str_key_in_message", "fast", [{"role": "user", "content": "hi", 1: "x"}], {},
     "messages[0]"),
    ("non_str_key_in_tool_arguments", "fast",
     assistant_call({"name": "f", "arguments": {1: "x"}}), {},
     "messages[1].tool_calls[0].function.arguments"),
    ("non_str_key_in_tool_schema", "fast", MSG,
     {"tools": tool_def(parameters={"type": "object", ("a",): 1})},
     "tools[0].function.parameters"),
    ("tool_arguments_not_json_serialisable", "fast",
     assistant_call({"name": "f", "arguments": {"at": {1, 2}}}), {},
     "messages[1].tool_calls[0].function.arguments.at"),
    ("tool_arguments_nan_text", "fast",
     assistant_call({"name": "f", "arguments": '{"x": NaN}'}), {},
     "messages[1].tool_calls[0].function.arguments"),
    ("tool_arguments_a_list", "fast", assistant_call({"name": "f", "arguments": "[1]"}), {},
     "messages[1].tool_calls[0].function.arguments"),
    ("tool_call_id_an_int", "fast", assistant_call({"name": "f", "arguments": "{}"}, id=7), {},
     "messages[1].tool_calls[0].id"),
    ("tool_call_without_name", "fast", assistant_call({"arguments": "{}"}), {},
     "messages[1].tool_calls[0].function.name"),
    ("tool_without_name", "fast", MSG, {"tools": [{"type": "function", "function": {}}]},
     "tools[0].function.name"),
    ("tool_of_unknown_type", "fast", MSG, {"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ("tool_parameters_a_string", "fast", MSG, {"tools": tool_def(parameters="{}")},
     "tools[0].function.parameters"),
    ("tool_choice_an_int", "fast", MSG, {"tools": tool_def(), "tool_choice": 1},
     "tool_choice"),
    ("tool_choice_object_without_type", "fast", MSG,
     {"tools": tool_def(), "tool_choice": {"name": "f"}}, "tool_choice.type"),
    ("tool_choice_function_without_name", "fast", MSG,
     {"tools": tool_def(), "tool_choice": {"type": "function", "function": {}}},
     "tool_choice.function.name"),
    ("message_object_with_int_content", "fast", [Message("user", 5)], {},  # type: ignore[arg-type]
     "messages[0].content"),
    ("message_object_with_bad_part", "fast",
     [Message("user", [TextPart(5)])], {}, "messages[0].content[0].text"),  # type: ignore[arg-type]
    ("message_object_with_bad_image", "fast",
     [Message("user", [ImagePart("file:///etc/passwd")])], {}, "messages[0].content[0].url"),
    ("tool_message_object_without_id", "fast", [*MSG, Message("tool", "1")], {}, "messages[1]"),
    ("tool_call_object_with_int_id", "fast",
     [*MSG, Message("assistant", tool_calls=[ToolCall(1, "f", {})])], {},  # type: ignore[arg-type]
     "messages[1].tool_calls[0].id"),
    ("tool_object_with_bad_schema", "fast", MSG,
     {"tools": [Tool("f", parameters={"x": float("nan")})]}, "tools[0].parameters.x"),
    ("response_format_object_of_unknown_type", "fast", MSG,
     {"response_format": ResponseFormat("xml")}, "response_format.type"),  # type: ignore[arg-type]
    # the call's own options
    ("timeout_nan", "fast", MSG, {"timeout": float("nan")}, "timeout"),
    ("timeout_zero", "fast", MSG, {"timeout": 0}, "timeout"),
    ("timeout_negative", "fast", MSG, {"timeout": -1.5}, "timeout"),
    ("timeout_string", "fast", MSG, {"timeout": "5s"}, "timeout"),
    ("timeout_bool", "fast", MSG, {"timeout": True}, "timeout"),
    ("request_id_int", "fast", MSG, {"request_id": 5}, "request_id"),
    ("request_id_with_newline", "fast", MSG, {"request_id": "a\nb"}, "request_id"),
    ("tags_not_a_mapping", "fast", MSG, {"tags": ["team"]}, "tags"),
    ("tag_value_int", "fast", MSG, {"tags": {"team": 5}}, "tags['team']"),
    ("tag_key_surrogate", "fast", MSG, {"tags": {SURROGATE: "x"}}, "tags (a key)"),
]


@pytest.fixture
async def router(openai_server: OpenAIServer) -> AsyncIterator[Router]:
    async with make_router(openai_server, {"fast": [target("p")]}) as r:
        yield r


async def refusal(router: Router, mode: str, model: Any, messages: Any,
                  params: dict[str, Any]) -> InvalidRequestError:
    """The InvalidRequestError that ``mode`` (chat or stream) raises for this input."""
    with pytest.raises(InvalidRequestError) as info:
        if mode == "chat":
            await router.chat(model, messages, **params)
        else:
            async for _ in router.stream(model, messages, **params):
                pass
    return info.value


@pytest.mark.parametrize("mode", ["chat", "stream"])
@pytest.mark.parametrize(("model", "messages", "params", "path"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
async def test_bad_input_is_invalid_request_naming_the_parameter_before_any_io(
        router: Router, openai_server: OpenAIServer, mode: str, model: Any, messages: Any,
        params: dict[str, Any], path: str) -> None:
    err = await refusal(router, mode, model, messages, params)
    assert (err.error_class, err.retryable, err.status) == (
        ErrorClass.INVALID_REQUEST, False, None)
    assert err.message.startswith(path)
    assert err.message[len(path)] in " .["  # the path itself, not a longer one
    assert openai_server.requests == []


def test_message_with_an_unknown_role_fails_on_construction() -> None:
    with pytest.raises(InvalidRequestError, match=r"Message\.role"):
        Message(role="bogus")  # type: ignore[arg-type]


def test_message_with_an_unhashable_role_fails_on_construction() -> None:
    with pytest.raises(InvalidRequestError, match=r"Message\.role"):
        Message(role=["user"])  # type: ignore[arg-type]


async def test_error_message_never_quotes_a_long_value(router: Router) -> None:
    secret = "sk-proj-0123456789abcdefghijklmnop"
    err = await refusal(router, "chat", "fast", [{"role": secret, "content": "hi"}], {})
    assert secret[:12] not in str(err)
    assert f"a string of {len(secret)} characters" in str(err)


async def test_non_ascii_text_without_surrogates_is_sent_as_given(
        router: Router, openai_server: OpenAIServer) -> None:
    await router.chat("fast", [{"role": "user", "content": "héllo 世界 🙂"}])
    assert openai_server.requests[0].json["messages"][0]["content"] == "héllo 世界 🙂"


async def test_message_object_with_dict_parts_is_converted(router: Router,
                                                           openai_server: OpenAIServer) -> None:
    parts: Any = [{"type": "text", "text": "look"}]
    await router.chat("fast", [Message("user", parts)])
    assert openai_server.requests[0].json["messages"][0]["content"] == [
        {"type": "text", "text": "look"}]


async def test_tuples_are_accepted_where_lists_are(router: Router,
                                                   openai_server: OpenAIServer) -> None:
    await router.chat("fast", ({"role": "user", "content": ({"type": "text", "text": "a"},)},),
                      stop=("x", "y"), tools=tuple(tool_def()))
    body = openai_server.requests[0].json
    assert (body["stop"], body["tools"][0]["function"]["name"]) == (["x", "y"], "f")
