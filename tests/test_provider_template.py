"""The HttpProvider template and the kinds table, for every HTTP kind at once: wrong-shaped
replies and stream events (many shapes per kind) are typed server errors, a stream with its
protocol's terminator is complete (a stream without it, and the final chunk not waiting on the
connection, are cases of tests/test_provider_contract.py), max_connections reaches the pool,
and every table of kind facts (schema, config models, classes, plan capabilities, zero-config)
agrees with providers/kinds.py.

The upstream is a small loopback server defined here: it answers any path with the bytes a test
scripts, so one server serves every kind's wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from router.config.model import KIND_FIELDS, ProviderCfg, RouteFileCfg
from router.config.validate import validate_dict
from router.config.zeroconfig import env_route_file
from router.errors import ErrorClass, NetworkError, ServerError, TimeoutError_
from router.providers import plugins, registry
from router.providers.base import HttpPool, HttpProvider, Provider, ProviderConfig, Timeouts
from router.providers.kinds import COMMON_SETTINGS, KINDS, model_capabilities
from router.types import ChatChunk, ChatRequest, ChatResponse, Message

KEY = "sk-template-test-0123456789abcdef"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=30.0)
REQUEST = ChatRequest(messages=[Message(role="user", content="hi")])
HTTP_KINDS = ["openai", "openai-compatible", "azure-openai", "anthropic", "google", "ollama"]


# --------------------------------------------------------------------------------------------
# A loopback upstream that answers with scripted bytes


@dataclass
class Scripted:
    """One answer: ``body`` pieces written in order; ``hold`` keeps the body open after them
    until the server closes (a keep-alive upstream that never ends its chunked body)."""

    body: list[bytes]
    status: int = 200
    content_type: str = "application/json"
    hold: bool = False


@dataclass
class Upstream:
    answers: list[Scripted] = field(default_factory=list)
    received: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.received += 1
        self.arrived.set()
        answer = self.answers.pop(0) if self.answers else Scripted([b"{}"], hold=True)
        resp = web.StreamResponse(status=answer.status,
                                  headers={"Content-Type": answer.content_type})
        await resp.prepare(request)
        for piece in answer.body:
            await resp.write(piece)
        if answer.hold:
            await self.release.wait()
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", up.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield up
    finally:
        up.release.set()
        await runner.cleanup()


def provider(kind: str, up: Upstream, pool: HttpPool, **config: Any) -> HttpProvider:
    base = up.base + ("/v1" if KINDS[kind].base_url_has_version else "")
    cfg = ProviderConfig(name=kind, kind=kind, base_url=base, api_key=SecretStr(KEY),  # type: ignore[arg-type]
                         **config)
    p = registry.provider_class(kind)(cfg, pool)
    assert isinstance(p, HttpProvider)
    return p


def model_of(kind: str) -> str:
    return {"anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
            "ollama": "llama3.2"}.get(kind, "gpt-4o-mini")


async def chat(kind: str, up: Upstream, pool: HttpPool, reply: Any) -> ChatResponse:
    up.answers.append(Scripted([json.dumps(reply).encode()]))
    return await provider(kind, up, pool).chat(model_of(kind), REQUEST, TIMEOUTS)


async def collect(kind: str, up: Upstream, pool: HttpPool, body: list[bytes]) -> list[ChatChunk]:
    framing = "application/x-ndjson" if kind == "ollama" else "text/event-stream"
    up.answers.append(Scripted(body, content_type=framing))
    p = provider(kind, up, pool)
    return [c async for c in p.stream(model_of(kind), REQUEST, TIMEOUTS)]


# --------------------------------------------------------------------------------------------
# Wrong-shaped replies: a typed, retryable ServerError for every kind (interface 6)

OPENAI_SHAPES = [
    {"choices": {"0": 1}},
    {"choices": [{"message": "oops"}]},
    {"choices": [{"message": {"content": 5}}]},
    {"choices": [{"message": {"content": [{"type": "image_url", "image_url": {}}]}}]},
    {"choices": [1]},
    {"choices": [{"message": {"tool_calls": {"0": {}}}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "a", "function": {"name": "f",
                                                                    "arguments": 5}}]}}]},
    [1, 2],
]
WRONG_SHAPES: list[tuple[str, Any]] = [
    *((k, s) for k in ("openai", "openai-compatible", "azure-openai") for s in OPENAI_SHAPES),
    ("anthropic", {"content": "hi"}),
    ("anthropic", {"content": {"type": "text", "text": "hi"}}),
    ("anthropic", {"content": [{"type": "text", "text": 5}]}),
    ("anthropic", {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}),
    ("anthropic", [1]),
    ("google", {"candidates": {"0": {}}}),
    ("google", {"candidates": ["x"]}),
    ("google", {"candidates": [{"content": "hi"}]}),
    ("google", {"candidates": [{"content": {"parts": "hi"}}]}),
    ("google", {"candidates": [{"content": {"parts": [{"text": 5}]}}]}),
    ("google", {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f",
                                                                       "args": [1]}}]}}]}),
    ("ollama", {"message": "hi"}),
    ("ollama", {"message": {"content": 5}}),
    ("ollama", {"message": {"content": "a", "tool_calls": {"0": {}}}}),
    ("ollama", {"message": {"content": "a", "tool_calls": [{"function": {"name": "f",
                                                                           "arguments": 5}}]}}),
    ("ollama", "just a string"),
]


@pytest.mark.parametrize(("kind", "reply"), WRONG_SHAPES,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(WRONG_SHAPES)])
async def test_wrong_shaped_reply_is_a_retryable_server_error(
        kind: str, reply: Any, upstream: Upstream, http_pool: HttpPool) -> None:
    with pytest.raises(ServerError) as info:
        await chat(kind, upstream, http_pool, reply)
    assert info.value.error_class is ErrorClass.SERVER
    assert info.value.retryable


@pytest.mark.parametrize("kind", ["openai", "openai-compatible", "azure-openai"])
async def test_content_as_text_parts_is_joined(kind: str, upstream: Upstream,
                                               http_pool: HttpPool) -> None:
    parts = [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]
    r = await chat(kind, upstream, http_pool,
                   {"choices": [{"message": {"content": parts}, "finish_reason": "stop"}]})
    assert r.text == "Hello"


async def test_ollama_content_as_text_parts_is_joined(upstream: Upstream,
                                                      http_pool: HttpPool) -> None:
    r = await chat("ollama", upstream, http_pool,
                   {"message": {"content": [{"type": "text", "text": "Hi"}]}, "done": True})
    assert r.text == "Hi"


async def test_openai_tool_arguments_as_an_object_are_taken_as_decoded(
        upstream: Upstream, http_pool: HttpPool) -> None:
    # The API sends a JSON string; an object (some compatible servers) is unambiguous.
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    r = await chat("openai-compatible", upstream, http_pool,
                   {"choices": [{"message": {"content": None, "tool_calls": [call]},
                                 "finish_reason": "tool_calls"}]})
    assert r.tool_calls[0].arguments == {"a": 1}


STREAM_SHAPES: list[tuple[str, bytes]] = [
    ("openai", b'data: {"choices": {"0": 1}}\n\n'),
    ("openai", b'data: {"choices": [{"delta": "oops"}]}\n\n'),
    ("openai", b'data: {"choices": [{"delta": {"content": 5}}]}\n\n'),
    ("anthropic", b'event: content_block_start\ndata: [1]\n\n'),
    ("google", b'data: {"candidates": {"0": 1}}\n\n'),
    ("ollama", b'{"message": "oops", "done": false}\n'),
]


@pytest.mark.parametrize(("kind", "event"), STREAM_SHAPES)
async def test_wrong_shaped_stream_event_is_a_server_error(
        kind: str, event: bytes, upstream: Upstream, http_pool: HttpPool) -> None:
    with pytest.raises(ServerError):
        await collect(kind, upstream, http_pool, [event])


# --------------------------------------------------------------------------------------------
# Stream terminators (interface 5)

#: Per kind: the events of a short answer before the terminator, and the terminator.
STREAMS: dict[str, tuple[list[bytes], list[bytes]]] = {
    "openai": ([b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'],
               [b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n']),
    "anthropic": ([b'event: message_start\ndata: {"type": "message_start", "message": '
                   b'{"id": "m", "model": "claude-haiku-4-5", "usage": {"input_tokens": 1}}}\n\n',
                   b'event: content_block_start\ndata: {"type": "content_block_start", '
                   b'"index": 0, "content_block": {"type": "text", "text": "Hi"}}\n\n',
                   b'event: message_delta\ndata: {"type": "message_delta", "delta": '
                   b'{"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}\n\n'],
                  [b'event: message_stop\ndata: {"type": "message_stop"}\n\n']),
    "google": ([b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}\r\n\r\n'],
               [b'data: {"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}]}'
                b'\r\n\r\n']),
    "ollama": ([b'{"message": {"role": "assistant", "content": "Hi"}, "done": false}\n'],
               [b'{"message": {"role": "assistant", "content": ""}, "done": true, '
                b'"done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}\n']),
}
STREAMS["openai-compatible"] = STREAMS["azure-openai"] = STREAMS["openai"]


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_stream_with_its_terminator_is_complete(kind: str, upstream: Upstream,
                                                      http_pool: HttpPool) -> None:
    before, terminator = STREAMS[kind]
    chunks = await collect(kind, upstream, http_pool, before + terminator)
    assert "".join(c.delta for c in chunks) == "Hi"
    assert chunks[-1].finish_reason == "stop"


async def test_openai_done_without_finish_reason_is_a_network_error(
        upstream: Upstream, http_pool: HttpPool) -> None:
    before, _ = STREAMS["openai"]
    with pytest.raises(NetworkError, match="finish_reason"):
        await collect("openai", upstream, http_pool, [*before, b"data: [DONE]\n\n"])


async def test_openai_done_after_finish_reason_ends_the_stream(
        upstream: Upstream, http_pool: HttpPool) -> None:
    before, terminator = STREAMS["openai"]
    chunks = await collect("openai", upstream, http_pool,
                           [*before, *terminator, b"data: [DONE]\n\n"])
    assert chunks[-1].finish_reason == "stop"


# --------------------------------------------------------------------------------------------
# max_connections reaches the pool (interface 2)


async def test_max_connections_caps_the_providers_connections(
        upstream: Upstream, http_pool: HttpPool) -> None:
    # One connection allowed: the first call holds it (the upstream never answers), so the
    # second waits for a slot past its total and fails as a pool timeout, never sent.
    upstream.answers.append(Scripted([], hold=True))
    p = provider("openai", upstream, http_pool, max_connections=1)
    first = asyncio.create_task(p.chat("gpt-4o-mini", REQUEST, TIMEOUTS))
    await upstream.arrived.wait()
    short = Timeouts(connect=2.0, first_token=5.0, total=0.2, idle=5.0)
    with pytest.raises(TimeoutError_) as info:
        await p.chat("gpt-4o-mini", REQUEST, short)
    assert info.value.timeout_kind == "pool"
    assert upstream.received == 1
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first


def plan_of(doc: dict[str, Any]) -> Any:
    result = validate_dict(doc, env={})
    assert not result.errors, [d.format_text() for d in result.errors]
    assert result.plan is not None
    return result.plan


def test_max_connections_setting_reaches_the_provider_spec() -> None:
    plan = plan_of({"version": 1, "providers": {"local": {"kind": "ollama",
                                                          "max_connections": 4}}})
    assert plan.providers["local"].max_connections == 4


def test_max_connections_below_one_is_rejected() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ProviderCfg.model_validate({"kind": "ollama", "max_connections": 0})


# --------------------------------------------------------------------------------------------
# One capability truth: the plan and the provider give the same answer


CAPABILITY_CASES = [(k, m) for k in KINDS for m in
                    ("gpt-4o-mini", "gpt-3.5-turbo", "claude-3-5-haiku", "gemini-2.0-flash",
                     "llama3.2", "some-unknown-model")]


def _plan_capabilities(kind: str, model: str, settings: dict[str, Any]) -> Any:
    spec: dict[str, Any] = {"kind": kind, **settings}
    if KINDS[kind].requires_base_url:
        spec["base_url"] = "http://127.0.0.1:9/v1"
    plan = plan_of({"version": 1, "providers": {"p": spec}, "models": {"m": [f"p:{model}"]}})
    return plan, plan.routes["m"].targets[0].capabilities


@pytest.mark.parametrize(("kind", "model"), CAPABILITY_CASES)
async def test_plan_and_provider_capabilities_agree(kind: str, model: str) -> None:
    plan, planned = _plan_capabilities(kind, model, {})
    spec = plan.providers["p"]
    cfg = ProviderConfig(name="p", kind=kind, base_url=spec.base_url or "http://127.0.0.1:9",
                         options=spec.options)
    async with HttpPool() as pool:
        assert registry.provider_class(kind)(cfg, pool).capabilities(model) == planned


async def test_compatible_stream_usage_false_agrees_in_plan_and_provider() -> None:
    plan, planned = _plan_capabilities("openai-compatible", "m1", {"stream_usage": False})
    assert planned.streaming_usage is False
    cfg = ProviderConfig(name="p", kind="openai-compatible", base_url="http://127.0.0.1:9/v1",
                         options=plan.providers["p"].options)
    async with HttpPool() as pool:
        assert registry.provider_class("openai-compatible")(cfg, pool).capabilities("m1") == planned


def test_route_file_model_entry_overrides_the_kind_default() -> None:
    _, planned = _plan_capabilities("openai-compatible", "m1",
                                    {"models": {"m1": {"vision": False, "context_window": 8}}})
    assert (planned.vision, planned.context_window) == (False, 8)


def test_ollama_models_take_no_image_urls() -> None:
    assert model_capabilities("ollama", "llava").image_urls is False


# --------------------------------------------------------------------------------------------
# One kinds table: everything else agrees with it


def test_every_builtin_class_declares_what_the_table_says() -> None:
    for kind, spec in KINDS.items():
        cls = registry.provider_class(kind)
        assert f"{cls.__module__}:{cls.__qualname__}" == spec.provider_class
        assert (cls.kind, cls.key_env, cls.default_base_url, cls.requires_key,
                cls.capabilities_default) == (kind, spec.key_env, spec.default_base_url,
                                              spec.requires_key, spec.capabilities), kind
        assert issubclass(cls, HttpProvider) == (kind != "fake"), kind
        assert cls.enforces_timeouts == (kind != "fake"), kind


def test_plain_provider_does_not_enforce_timeouts() -> None:
    assert Provider.enforces_timeouts is False
    assert HttpProvider.enforces_timeouts is True


def _provider_schema() -> dict[str, Any]:
    provider: dict[str, Any] = plugins.static_schema()["$defs"]["provider"]
    return provider


def test_schema_kinds_and_settings_agree_with_the_table() -> None:
    schema = _provider_schema()
    assert set(schema["properties"]["kind"]["enum"]) == set(KINDS)
    assert set(schema["properties"]) == COMMON_SETTINGS
    blocks = {b["if"]["properties"]["kind"]["const"]: b["then"] for b in schema["allOf"]}
    for kind, spec in KINDS.items():
        then = blocks.get(kind, {})
        assert set(then.get("properties", {})) == spec.settings, kind
        assert ("base_url" in then.get("required", ())) == spec.requires_base_url, kind


def test_config_models_agree_with_the_table() -> None:
    assert {k: KIND_FIELDS[k] for k in KINDS} == {k: s.settings for k, s in KINDS.items()}
    kind_settings = frozenset().union(*(s.settings for s in KINDS.values()))
    assert set(ProviderCfg.model_fields) == COMMON_SETTINGS | kind_settings
    assert plugins.common_settings() == COMMON_SETTINGS


def test_router_providers_lists_the_tables_facts() -> None:
    info = {k.kind: k for k in registry.describe_kinds()}
    for kind, spec in KINDS.items():
        assert (info[kind].key_env, info[kind].default_base_url, info[kind].capabilities,
                info[kind].settings) == (spec.key_env, spec.default_base_url,
                                         asdict(spec.capabilities), sorted(spec.settings))


def test_zero_config_reads_the_tables_variables() -> None:
    env = {spec.key_env: "k" for spec in KINDS.values() if spec.key_env}
    env |= {var: "https://x.example" for s in KINDS.values() for var in s.env_settings.values()}
    providers = env_route_file(env)["providers"]
    assert {p["kind"] for p in providers.values()} == {
        k for k, s in KINDS.items() if s.env_name is not None}
    RouteFileCfg.model_validate(env_route_file({}))


def test_kinds_table_and_registry_import_neither_aiohttp_nor_pydantic_nor_config() -> None:
    code = ("import sys, router.providers.kinds, router.providers.registry as r; "
            "r.describe_kinds(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'pydantic') "
            "or m.startswith('router.config')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_bad_capabilities_option_is_a_config_error() -> None:
    from router.errors import ConfigError

    cfg = ProviderConfig(name="p", kind="ollama", options={"capabilities": {"telepathy": True}})
    with pytest.raises(ConfigError, match="telepathy"):
        registry.provider_class("ollama")(cfg, HttpPool())


