"""Images in tool results (a coding agent's screenshot or image file read by a tool).

Anthropic and Ollama carry them in the tool result itself. OpenAI's and Azure's tool messages
hold text only, so the images follow the run of tool messages as one user turn that says which
call returned them: the model still sees them. Every body is checked by the kind's validating
loopback server (tests/test_cross_provider.py's Upstreams).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from tests.test_cross_provider import KINDS, PNG_B64, Upstreams, text_reply

IMAGE = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
SHOT = {"type": "function", "function": {"name": "screenshot",
                                         "parameters": {"type": "object", "properties": {}}}}


def calls(*ids: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}
        for i in ids]}


def result(call_id: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": list(parts)}


HISTORY = [{"role": "user", "content": "Compare the two windows."}, calls("call_a", "call_b"),
           result("call_a", {"type": "text", "text": "window A"}, IMAGE),
           result("call_b", {"type": "text", "text": "window B"}, IMAGE, IMAGE),
           {"role": "user", "content": "Which is larger?"}]


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


async def body_for(up: Upstreams, kind: str, history: list[Any]) -> dict[str, Any]:
    up.enqueue(kind, text_reply(kind, "B."))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(KINDS[kind].target, history, tools=[SHOT])
    assert r.text == "B." and up.refusals() == {}
    body: dict[str, Any] = up.bodies(kind)[-1]
    return body


@pytest.mark.parametrize("kind", ["openai", "azure-openai"])
async def test_openai_gets_the_images_after_the_tool_results(up: Upstreams, kind: str) -> None:
    messages = (await body_for(up, kind, HISTORY))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert [m["content"] for m in messages[2:4]] == ["window A", "window B"]
    images = messages[4]["content"]
    assert [p["type"] for p in images] == ["text", "image_url", "text", "image_url",
                                           "image_url"]
    assert images[0]["text"] == "What tool call call_a returned:"
    assert images[2]["text"] == "What tool call call_b returned:"
    assert images[1]["image_url"]["url"] == IMAGE["image_url"]["url"]
    assert messages[5]["content"] == "Which is larger?"


async def test_images_at_the_end_of_the_history_still_follow(up: Upstreams) -> None:
    messages = (await body_for(up, "openai", HISTORY[:4]))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]


async def test_text_only_tool_results_add_no_turn(up: Upstreams) -> None:
    history = [HISTORY[0], calls("call_a"),
               result("call_a", {"type": "text", "text": "window A"})]
    messages = (await body_for(up, "openai", history))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]


async def test_anthropic_keeps_them_in_the_tool_result(up: Upstreams) -> None:
    messages = (await body_for(up, "anthropic", HISTORY))["messages"]
    first, second = messages[2]["content"][:2]
    assert first["type"] == second["type"] == "tool_result"
    assert [b["type"] for b in second["content"]] == ["text", "image", "image"]


async def test_ollama_sends_them_with_the_tool_message(up: Upstreams) -> None:
    messages = (await body_for(up, "ollama", HISTORY))["messages"]
    tools = [m for m in messages if m["role"] == "tool"]
    assert [len(m["images"]) for m in tools] == [1, 2]


async def test_gemini_3_gets_them_in_the_function_response(up: Upstreams) -> None:
    """Gemini 3's multimodal function responses: images (and PDFs) in functionResponse.parts;
    an earlier Gemini gets the result's text only (it has no such parts)."""
    pdf = "data:application/pdf;base64,JVBERi0xLjQK"
    history = [*HISTORY[:3], result("call_b", {"type": "text", "text": "window B"}, IMAGE,
                                    {"type": "file", "file": {"file_data": pdf}})]
    for model, expected in (("gemini-3-pro-preview", [["image/png"],
                                                      ["image/png", "application/pdf"]]),
                            ("gemini-2.5-flash", [[], []])):
        up.enqueue("google", text_reply("google", "B."))
        async with Router.from_dict(up.route_file()) as router:
            await router.chat(f"google:{model}", history, tools=[SHOT])
        assert up.refusals() == {}
        turn = up.bodies("google")[-1]["contents"][-1]
        responses = [p["functionResponse"] for p in turn["parts"]]
        assert [r["response"]["result"] for r in responses] == ["window A", "window B"]
        assert [[m["inlineData"]["mimeType"] for m in r.get("parts", [])]
                for r in responses] == expected
