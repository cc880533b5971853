"""Another vendor's request parameters are left out for a kind whose API refuses them: an
Anthropic client's ``thinking`` or an OpenAI client's ``frequency_penalty`` must not turn a
fallback into a 400 that fails the call. Each kind keeps its own parameters; a name no
vendor owns, and every name sent to an OpenAI-compatible server, goes out as given.

The loopback servers validate as the real APIs do (tests/test_cross_provider.py's Upstreams):
a foreign parameter that got through would be refused there, and the call would fail.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import InvalidRequestError
from tests.engine_helpers import Events
from tests.servers import anthropic as an
from tests.servers import openai as oa
from tests.test_cross_provider import KINDS, Upstreams, overloaded, text_reply

MSG = [{"role": "user", "content": "hi"}]
OPENAI_ONLY = {"frequency_penalty": 0.5, "logprobs": True, "top_logprobs": 2, "store": False,
               "verbosity": "low"}
ANTHROPIC_ONLY = {"thinking": {"type": "enabled", "budget_tokens": 1024},
                  "container": "container_abc"}  # (top_k: not beside thinking, says the API)
GOOGLE_ONLY = {"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                    "threshold": "BLOCK_NONE"}], "thinking_budget": 0}
OLLAMA_ONLY = {"options": {"num_ctx": 4096}, "think": False}
OWN = {"openai": OPENAI_ONLY, "azure-openai": OPENAI_ONLY, "anthropic": ANTHROPIC_ONLY,
       "google": GOOGLE_ONLY, "ollama": OLLAMA_ONLY}
EVERY = {**OPENAI_ONLY, **ANTHROPIC_ONLY, **GOOGLE_ONLY, **OLLAMA_ONLY}


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


async def call(up: Upstreams, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    up.enqueue(kind, text_reply(kind, "ok"))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(KINDS[kind].target, MSG, max_tokens=2048, **params)
    assert r.text == "ok" and up.refusals() == {}
    body: dict[str, Any] = up.bodies(kind)[-1]
    return body


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_kind_gets_only_its_own_vendor_parameters(up: Upstreams, kind: str) -> None:
    """Every vendor's parameters at once: the kind's validating server accepts the body, and
    none of the others' names is in it."""
    body = await call(up, kind, dict(EVERY))
    sent = json.dumps(body)
    for name in set(EVERY) - set(OWN[kind]):
        assert f'"{name}"' not in sent, name


async def test_own_parameters_still_reach_their_kind(up: Upstreams) -> None:
    body = await call(up, "anthropic", {**OPENAI_ONLY, **ANTHROPIC_ONLY})
    assert body["thinking"] == ANTHROPIC_ONLY["thinking"]
    assert body["container"] == "container_abc"
    assert (await call(up, "anthropic", {"top_k": 5, "logprobs": True}))["top_k"] == 5
    body = await call(up, "openai", {**ANTHROPIC_ONLY, "top_k": 5, "frequency_penalty": 0.5,
                                     "logprobs": True})
    assert (body["frequency_penalty"], body["logprobs"]) == (0.5, True)
    body = await call(up, "google", {**OPENAI_ONLY, "top_k": 7})
    assert body["generationConfig"]["topK"] == 7


async def test_a_fallback_past_anthropic_to_openai_survives_thinking(up: Upstreams) -> None:
    """The case it is for: an agent asks Claude with ``thinking``; Claude is overloaded and
    the route falls back to OpenAI, which would refuse ``thinking`` with a 400."""
    up.enqueue("anthropic", overloaded("anthropic"), overloaded("anthropic"))
    up.enqueue("openai", text_reply("openai", "answered"))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(f"{KINDS['anthropic'].target},{KINDS['openai'].target}", MSG,
                              max_tokens=2048, **ANTHROPIC_ONLY)
    assert r.text == "answered" and r.target == KINDS["openai"].target
    assert up.refusals() == {}
    assert all(b["thinking"] == ANTHROPIC_ONLY["thinking"] for b in up.bodies("anthropic"))
    assert "thinking" not in up.bodies("openai")[0]


async def test_what_is_left_out_is_logged(up: Upstreams, events: Events) -> None:
    await call(up, "openai", {"thinking": {"type": "enabled", "budget_tokens": 1024},
                              "logprobs": True})
    left = [e for e in events if e["event"] == "params_left_out"]
    assert len(left) == 1
    assert (left[0]["kind"], left[0]["params"]) == ("openai", ["thinking"])
    await call(up, "openai", {"logprobs": True})
    assert len([e for e in events if e["event"] == "params_left_out"]) == 1  # none to leave


async def test_a_compatible_server_and_unowned_names_get_everything() -> None:
    """An OpenAI-compatible server (vLLM, llama.cpp, a gateway) may take any of them; a
    name no vendor here owns is passed to every kind as given."""
    async with oa.OpenAIServer() as server:
        server.enqueue(oa.json_reply(oa.completion("ok")))
        doc = {"version": 1, "providers": {"local": {
            "kind": "openai-compatible", "base_url": server.base_url, "api_key": "sk-x"}}}
        async with Router.from_dict(doc) as router:
            await router.chat("local:m", MSG, **EVERY, min_p=0.05)
        body = server.requests[-1].json
    assert {k: body[k] for k in EVERY} == EVERY and body["min_p"] == 0.05


# -- Anthropic's betas: a header, not a body field ---------------------------------------------


def anthropic_route(base_url: str, **headers: str) -> dict[str, Any]:
    provider: dict[str, Any] = {"kind": "anthropic", "base_url": base_url, "api_key": "sk-x"}
    if headers:
        provider["headers"] = headers
    return {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"an": provider}}


@pytest.mark.parametrize("stream", [False, True])
async def test_betas_go_out_as_the_anthropic_beta_header(stream: bool) -> None:
    async with an.AnthropicServer() as server:
        reply = (an.stream_reply(an.text_events(["ok"])) if stream
                 else an.json_reply(an.message([an.text_block("ok")])))
        server.enqueue(reply, path=an.MESSAGES_PATH)
        async with Router.from_dict(anthropic_route(
                server.base_url, **{"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"})
                ) as router:
            betas = ["context-1m-2025-08-07", "fine-grained-tool-streaming-2025-05-14"]
            if stream:
                async for _ in router.stream("an:claude-sonnet-4-5", MSG, betas=betas):
                    pass
            else:
                await router.chat("an:claude-sonnet-4-5", MSG, betas=betas)
        sent = server.requests[-1]
    assert server.problems == [] and "betas" not in sent.json
    header = {k.lower(): v for k, v in sent.headers.items()}["anthropic-beta"]
    assert header == "fine-grained-tool-streaming-2025-05-14,context-1m-2025-08-07"


@pytest.mark.parametrize("betas", ["context-1m", ["bad name"], ["ok\r\nx-injected: 1"], [5]])
async def test_malformed_betas_are_an_invalid_request_before_any_io(betas: Any) -> None:
    async with an.AnthropicServer() as server:
        async with Router.from_dict(anthropic_route(server.base_url)) as router:
            with pytest.raises(InvalidRequestError) as caught:
                await router.chat("an:claude-sonnet-4-5", MSG, betas=betas)
        assert server.requests == []
    assert caught.value.param == "betas"


async def test_stream_options_are_left_out_of_a_call_that_does_not_stream(up: Upstreams) -> None:
    """OpenAI refuses ``stream_options`` without ``stream``; a caller's own go with a stream."""
    body = await call(up, "openai", {"stream_options": {"include_usage": False}})
    assert "stream_options" not in body
    up.enqueue("openai", oa.stream_reply(oa.text_events(["o", "k"])))
    async with Router.from_dict(up.route_file()) as router:
        async for _ in router.stream(KINDS["openai"].target, MSG,
                                     stream_options={"include_usage": True}):
            pass
    assert up.bodies("openai")[-1]["stream_options"] == {"include_usage": True}
    assert up.refusals() == {}
