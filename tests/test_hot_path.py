"""The shortcuts of the hot path keep every guarantee: work moved to once per route (does a
target have a context window?) or reused between calls (the needs of a plain call) still
answers each call by its own request, against the loopback OpenAI server; the wire's JSON
reader gives json.loads' values and errors."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from router.engine.decision import needs_for
from router.engine.request import build_request
from router.errors import InvalidRequestError
from router.plan.values import Route, Step
from router.providers._json import loads_json
from router.types import ChatRequest, Message, Tool
from tests.engine_helpers import MSG, Factory, hits, outcomes, target
from tests.servers.openai import OpenAIServer


async def test_long_prompt_skips_a_target_whose_window_is_too_small_before_sending(
        openai_server: OpenAIServer, router_for: Factory) -> None:
    # Only "small" declares a window: the route's calls must still estimate their prompts.
    router = router_for({"r": [target("small"), target("a")]},
                        providers={"small": {"models": {"m": {"context_window": 1_000}}}})
    r = await router.chat("r", [{"role": "user", "content": "x" * 100_000}])
    assert r.target == "a:m"
    assert outcomes(r.attempts) == [("small:m", "skipped", "context_window"),
                                    ("a:m", "ok", None)]
    assert hits(openai_server, "small") == 0


async def test_short_prompt_is_sent_to_a_target_with_a_window(
        openai_server: OpenAIServer, router_for: Factory) -> None:
    router = router_for({"r": [target("small"), target("a")]},
                        providers={"small": {"models": {"m": {"context_window": 1_000}}}})
    r = await router.chat("r", MSG)
    assert r.target == "small:m"
    assert hits(openai_server, "a") == 0


def _route() -> Route:
    return Route(alias="r", steps=(Step(()),))


def test_needs_of_a_plain_call_do_not_leak_into_a_call_with_tools() -> None:
    plain = needs_for(ChatRequest([Message("user", "hi")], max_tokens=5), _route(),
                      stream=False, estimate=False)
    tools = needs_for(ChatRequest([Message("user", "hi")], max_tokens=5, tools=[Tool("f")]),
                      _route(), stream=False, estimate=False)
    again = needs_for(ChatRequest([Message("user", "hi")], max_tokens=5), _route(),
                      stream=False, estimate=False)
    assert (plain.tools, tools.tools, again.tools) == (False, True, False)
    assert again == plain


def test_needs_of_plain_calls_keep_their_own_stream_flag_and_max_tokens() -> None:
    a = needs_for(ChatRequest([Message("user", "hi")], max_tokens=5), _route(), stream=False,
                  estimate=False)
    b = needs_for(ChatRequest([Message("user", "hi")], max_tokens=9), _route(), stream=True,
                  estimate=False)
    assert (a.stream, a.max_tokens, b.stream, b.max_tokens) == (False, 5, True, 9)


def test_needs_estimate_the_prompt_unless_told_not_to() -> None:
    request = ChatRequest([Message("user", "x" * 400)])
    assert needs_for(request, _route(), stream=False).prompt_tokens is not None
    assert needs_for(request, _route(), stream=False, estimate=False).prompt_tokens is None


JSON_CASES = ['{"a":1}', ' {"a":1}', '{"a":1}  \n', '{"a":1} x', '{"a":1}\x0b', "", "{", "[1]",
              '{"a":NaN}', '{"a":1}{"b":2}', b'{"a":"\xc3\xa9"}', bytearray(b'{"a":2}'),
              b"\xef\xbb\xbf{}", b'{"a":"\xff"}', '{"a":"\ud800"}', '{"a":1,}',
              '{"a":1}'.encode("utf-16-le"), b"", b" {} "]


def _outcome(parse: Any, data: Any) -> tuple[str, Any]:
    try:
        value = parse(data)
    except ValueError as e:
        return type(e).__name__, str(e)
    nan = isinstance(value, dict) and isinstance(value.get("a"), float) and math.isnan(value["a"])
    return "ok", "nan" if nan else value


@pytest.mark.parametrize("data", JSON_CASES, ids=repr)
def test_wire_json_reads_as_json_loads_does(data: Any) -> None:
    assert _outcome(loads_json, data) == _outcome(json.loads, data)


PARAM_CASES = [{"max_tokens": 16}, {"temperature": 0.2}, {"max_tokens": 16, "temperature": 1},
               {"max_tokens": 0}, {"max_tokens": True}, {"max_tokens": 2 ** 70},
               {"max_tokens": "16"}, {"temperature": float("nan")}, {"temperature": "hot"},
               {"max_tokens": None, "temperature": None}, {"max_tokens": 0, "temperature": "x"}]


def _built(params: dict[str, Any]) -> Any:
    try:
        return build_request(MSG, params)
    except InvalidRequestError as e:
        return e.message


@pytest.mark.parametrize("params", PARAM_CASES, ids=repr)
def test_common_params_are_checked_as_every_param_is(params: dict[str, Any]) -> None:
    # {"top_p": None} (a known param, not given) sends the call the general way.
    assert _built(params) == _built({**params, "top_p": None})
