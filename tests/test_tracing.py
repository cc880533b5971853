"""OpenTelemetry tracing: one call span and one child span per attempt, attributes after the
GenAI semantic conventions, skips and retries as events, error status, streams, and no message
content or key unless asked for. Spans go to the SDK's in-memory exporter on a private
TracerProvider (the global one is never touched)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from router import Router
from router.engine.router import _make_tracing
from router.errors import RouteFailed, StreamInterruptedError
from router.obs.tracing import Tracing
from router.types import AttemptRecord, ChatRequest, Message
from tests.engine_helpers import KEY, MSG, chat_path, collect, route_file, target
from tests.servers.openai import (
    OpenAIServer,
    completion,
    error_reply,
    json_reply,
    tool_call,
    usage,
)

PROMPT = "PROMPT-ZEBRA-7731 what is the capital of France?"
ANSWER = "ANSWER-OKAPI-4410 Paris."
ARGS = '{"city": "ARGS-NARWHAL-9923"}'
FAKE_TIMEOUTS = {"connect": "1s", "first_token": "5s", "total": "10s", "idle": "5s"}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    yield p
    p.shutdown()


@pytest.fixture
def tracing(provider: TracerProvider) -> Tracing:
    return Tracing(provider)


def fake_router(tracing: Tracing, script: list[Any], *, attempts: int = 2,
                fallback: bool = False, text: str | None = None) -> Router:
    """Providers ``f`` (scripted) and, with ``fallback``, ``g`` (always ok); route ``r``."""
    providers: dict[str, Any] = {"f": {"kind": "fake", "script": script}}
    if text is not None:
        providers["f"]["text"] = text
    chain = ["f:echo"]
    if fallback:
        providers["g"] = {"kind": "fake", "script": ["ok"]}
        chain.append("g:echo")
    return Router.from_dict({
        "version": 1,
        "defaults": {"timeout": FAKE_TIMEOUTS,
                     "retry": {"attempts": attempts, "initial": "1ms", "max": "5ms"}},
        "providers": providers, "models": {"r": chain}}, tracing=tracing)


@pytest.fixture
async def server_router(openai_server: OpenAIServer,
                        tracing: Tracing) -> AsyncIterator[Callable[..., Router]]:
    """Routers whose providers point at the loopback OpenAI server; closed after the test."""
    routers: list[Router] = []

    def make(models: dict[str, Any], *, names: tuple[str, ...] = ("a", "b"),
             tracing_: Tracing | None = None, **kw: Any) -> Router:
        r = Router.from_dict(route_file(openai_server.port, models, names=names, **kw),
                             tracing=tracing_ or tracing)
        routers.append(r)
        return r

    yield make
    for r in routers:
        await r.aclose()


def split(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one call span and its attempt spans (in start order)."""
    spans = exporter.get_finished_spans()
    calls = [s for s in spans if "router.alias" in (s.attributes or {})]
    assert len(calls) == 1, [s.name for s in spans]
    attempts = sorted((s for s in spans if s is not calls[0]), key=lambda s: s.start_time or 0)
    return calls[0], attempts


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def dump(exporter: InMemorySpanExporter) -> str:
    """Every span's name, attributes, events and status, as text."""
    out = []
    for s in exporter.get_finished_spans():
        out.append(f"{s.name} {attrs(s)!r} {s.status.description!r}")
        out.extend(f"{e.name} {dict(e.attributes or {})!r}" for e in s.events)
    return "\n".join(out)


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


# -- span structure ----------------------------------------------------------------------------


async def test_one_call_span_with_one_child_span_per_attempt(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["ok"]) as router:
        r = await router.chat("r", MSG, request_id="rid-1", max_tokens=50, temperature=0.3,
                              top_p=0.9)
    call, (att,) = split(exporter)
    assert (call.name, att.name) == ("chat r", "chat echo")
    assert call.kind == att.kind == SpanKind.CLIENT
    assert att.parent is not None and call.context is not None
    assert att.parent.span_id == call.context.span_id
    assert att.context is not None and att.context.trace_id == call.context.trace_id
    assert attrs(call) == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "r", "router.alias": "r",
        "router.request_id": "rid-1", "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.3, "gen_ai.request.top_p": 0.9,
        "router.attempts": 1, "router.usage.input_tokens": r.usage.input_tokens,
        "router.usage.output_tokens": r.usage.output_tokens, "router.cost_usd": 0.0,
        "router.outcome": "ok", "router.target": "f:echo", "gen_ai.provider.name": "router.fake",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.response.model": "echo",
        "gen_ai.response.id": "fake-1"}
    a = attrs(att)
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "router.fake"
    assert (a["gen_ai.request.model"], a["router.target"], a["router.attempt"]) == (
        "echo", "f:echo", 1)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        r.usage.input_tokens, r.usage.output_tokens)
    assert a["router.outcome"] == "ok" and a["router.latency_ms"] >= 0
    assert call.status.status_code == att.status.status_code == StatusCode.UNSET


async def test_retry_then_fallback_gives_three_attempt_spans_under_one_call(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["server"], attempts=2, fallback=True) as router:
        r = await router.chat("r", MSG)
    assert r.target == "g:echo"
    call, atts = split(exporter)
    assert call.context is not None
    assert [s.parent.span_id if s.parent else None for s in atts] == [call.context.span_id] * 3
    assert [(attrs(s)["router.target"], attrs(s)["router.attempt"], attrs(s)["router.outcome"])
            for s in atts] == [("f:echo", 1, "error"), ("f:echo", 2, "error"), ("g:echo", 3, "ok")]
    for s in atts[:2]:
        assert s.status.status_code == StatusCode.ERROR
        assert attrs(s)["error.type"] == "server"
        assert attrs(s)["http.response.status_code"] == 500
    assert attrs(call)["router.attempts"] == 3 and "error.type" not in attrs(call)
    # The wait between f's two tries is known only after the first span ended: an event.
    retry = events(call, "retry_scheduled")
    assert len(retry) == 1 and retry[0]["router.attempt"] == 1
    assert retry[0]["router.retry_in_ms"] >= 0


async def test_a_call_inside_an_application_span_is_its_child(
        tracing: Tracing, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["ok"]) as router:
        with provider.get_tracer("app").start_as_current_span("handler") as app:
            await router.chat("r", MSG)
    call = next(s for s in exporter.get_finished_spans() if s.name == "chat r")
    assert call.parent is not None and call.parent.span_id == app.get_span_context().span_id


def test_the_attempt_span_is_current_inside_with_and_ends_at_finish(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    call = tracing.start_call(alias="r", request_id="x", operation="chat",
                              request=ChatRequest([Message("user", "hi")]))
    tgt: Any = SimpleNamespace(kind="openai", key="o:gpt-4o", model="gpt-4o")
    before = trace.get_current_span()
    with call.attempt(tgt, 1) as att:
        current = trace.get_current_span()  # what an HTTP client instrumentation would see
    assert current is not before
    assert trace.get_current_span() is before
    assert exporter.get_finished_spans() == ()  # leaving ``with`` does not end it
    att.finish(AttemptRecord("x", "r", "o:gpt-4o", 1, "ok", latency_ms=1.0))
    (finished,) = exporter.get_finished_spans()
    assert finished.context.span_id == current.get_span_context().span_id
    att.finish(AttemptRecord("x", "r", "o:gpt-4o", 1, "ok", latency_ms=2.0))
    call.end(records=[])
    call.end(records=[])
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["chat gpt-4o", "chat r"]  # each ended once
    assert attrs(exporter.get_finished_spans()[0])["gen_ai.provider.name"] == "openai"


# -- attributes against the loopback server -----------------------------------------------------


async def test_attempt_attributes_follow_the_genai_conventions(
        openai_server: OpenAIServer, server_router: Callable[..., Router],
        exporter: InMemorySpanExporter) -> None:
    openai_server.enqueue(json_reply(completion("x", usage_=usage(21, 3))), path=chat_path("o"))
    router = server_router({"r": [target("o", "gpt-4o-mini")]}, names=(),
                           providers={"o": {"kind": "openai"}})
    await router.chat("r", MSG)
    call, (att,) = split(exporter)
    a = attrs(att)
    assert att.name == "chat gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (21, 3)
    assert a["router.cost_usd"] > 0
    assert attrs(call)["gen_ai.provider.name"] == "openai"


async def test_an_http_error_sets_status_code_error_type_and_retry_event(
        openai_server: OpenAIServer, server_router: Callable[..., Router],
        exporter: InMemorySpanExporter) -> None:
    openai_server.enqueue(error_reply("rate_limit_exceeded", headers={"retry-after-ms": "5"}),
                          json_reply(completion("x")), path=chat_path("a"))
    router = server_router({"r": [target("a")]})
    await router.chat("r", MSG)
    call, (first, second) = split(exporter)
    assert attrs(first)["gen_ai.provider.name"] == "openai-compatible"
    assert attrs(first)["http.response.status_code"] == 429
    assert attrs(first)["error.type"] == "rate_limit"
    assert first.status.status_code == StatusCode.ERROR
    assert attrs(second)["router.outcome"] == "ok"
    (retry,) = events(call, "retry_scheduled")
    assert (retry["router.target"], retry["router.attempt"]) == ("a:m", 1)


async def test_a_target_skipped_by_an_open_breaker_is_an_event(
        openai_server: OpenAIServer, server_router: Callable[..., Router],
        exporter: InMemorySpanExporter) -> None:
    router = server_router({"r": [target("a"), target("b")]}, retry={"attempts": 1},
                           breaker={"failures": 1, "cooldown": "60s"})
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    await router.chat("r", MSG)
    exporter.clear()
    await router.chat("r", MSG)
    call, (att,) = split(exporter)
    assert attrs(att)["router.target"] == "b:m"
    (skip,) = events(call, "target_skipped")
    assert (skip["router.target"], skip["router.reason"], skip["router.attempt"]) == (
        "a:m", "breaker_open", 1)
    assert attrs(call)["router.attempts"] == 2


async def test_a_failed_route_marks_the_call_span_error(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["auth"], attempts=1) as router:
        with pytest.raises(RouteFailed):
            await router.chat("r", MSG)
    call, (att,) = split(exporter)
    assert call.status.status_code == att.status.status_code == StatusCode.ERROR
    assert attrs(call)["error.type"] == attrs(att)["error.type"] == "auth"
    assert attrs(call)["router.outcome"] == "error"
    (exc,) = events(call, "exception")
    assert exc == {"exception.type": "router.errors.RouteFailed"}  # no message, no stack


async def test_a_cancelled_call_ends_both_spans(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, [{"outcome": "ok", "latency": "3s"}]) as router:
        task = asyncio.create_task(router.chat("r", MSG))
        fake: Any = router.provider("f")
        while fake.calls == 0:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    call, (att,) = split(exporter)
    assert attrs(call)["error.type"] == attrs(att)["error.type"] == (
        "asyncio.exceptions.CancelledError")


# -- streams ----------------------------------------------------------------------------------


async def test_a_stream_attempt_span_ends_when_the_stream_completes(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["ok"], text="a b c") as router:
        agen = router.stream("r", MSG)
        first = await agen.__anext__()
        assert first.delta == "a"
        assert exporter.get_finished_spans() == ()
        rest = await collect(agen)
    assert rest[-1].finish_reason == "stop"
    call, (att,) = split(exporter)
    assert call.name == "chat r" and attrs(call)["gen_ai.request.stream"] is True
    a = attrs(att)
    assert a["router.outcome"] == "ok" and a["router.ttft_ms"] >= 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs(call)["router.outcome"] == "ok"
    assert att.end_time is not None and call.end_time is not None
    assert att.end_time <= call.end_time


async def test_an_interrupted_stream_marks_both_spans_error(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["stream_interrupted"], text="a b c d e f") as router:
        with pytest.raises(StreamInterruptedError):
            await collect(router.stream("r", MSG, recover="off"))  # one attempt, no replay
    call, (att,) = split(exporter)
    assert att.status.status_code == call.status.status_code == StatusCode.ERROR
    assert attrs(att)["error.type"] == "network"
    assert attrs(call)["error.type"] == "stream_interrupted"
    assert attrs(call)["router.target"] == "f:echo"


async def test_a_stream_the_consumer_leaves_ends_both_spans_as_abandoned(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["ok"], text="a b c d") as router:
        agen: Any = router.stream("r", MSG)
        await agen.__anext__()
        await agen.aclose()
    call, (att,) = split(exporter)
    assert attrs(call)["router.outcome"] == attrs(att)["router.outcome"] == "abandoned"
    assert call.status.status_code == StatusCode.UNSET


async def test_a_stream_falls_back_with_one_span_per_attempt(
        tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    async with fake_router(tracing, ["server"], attempts=1, fallback=True) as router:
        await collect(router.stream("r", MSG))
    _, atts = split(exporter)
    assert [attrs(s)["router.outcome"] for s in atts] == ["error", "ok"]


# -- content and secrets ----------------------------------------------------------------------


async def content_call(openai_server: OpenAIServer, router: Router) -> None:
    """A failed attempt (its error body quotes a key) then an answer with a tool call."""
    openai_server.enqueue(error_reply("invalid_api_key"), path=chat_path("a"))
    openai_server.enqueue(json_reply(completion(
        ANSWER, tool_calls=[tool_call("call_1", "weather", ARGS)], finish_reason="tool_calls")),
        path=chat_path("b"))
    await router.chat("r", [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": PROMPT}],
                      tools=[{"type": "function", "function": {
                          "name": "weather", "parameters": {"type": "object"}}}])


async def test_no_message_content_or_api_key_in_any_span_by_default(
        openai_server: OpenAIServer, server_router: Callable[..., Router],
        exporter: InMemorySpanExporter) -> None:
    await content_call(openai_server, server_router({"r": [target("a"), target("b")]}))
    text = dump(exporter)
    for secret in ("PROMPT-ZEBRA", "ANSWER-OKAPI", "NARWHAL", KEY, "be brief",
                   "Incorrect API key", "sk-test"):
        assert secret not in text, secret
    assert "gen_ai.input.messages" not in text and "gen_ai.output.messages" not in text


async def test_capture_content_records_input_and_output_messages(
        openai_server: OpenAIServer, server_router: Callable[..., Router],
        provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    router = server_router({"r": [target("a"), target("b")]},
                           tracing_=Tracing(provider, capture_content=True))
    await content_call(openai_server, router)
    call, _ = split(exporter)
    inp = json.loads(attrs(call)["gen_ai.input.messages"])
    assert inp == [{"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
                   {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    (out,) = json.loads(attrs(call)["gen_ai.output.messages"])
    assert out == {"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "text", "content": ANSWER},
        {"type": "tool_call", "id": "call_1", "name": "weather",
         "arguments": json.loads(ARGS)}]}
    assert KEY not in dump(exporter)


async def test_captured_content_is_clipped(
        provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async with fake_router(Tracing(provider, capture_content=True), ["ok"]) as router:
        history = [{"role": "user", "content": f"{i}:" + "y" * 9000} for i in range(20)]
        await router.chat("r", history)
    call, _ = split(exporter)
    raw = attrs(call)["gen_ai.input.messages"]
    assert len(raw) <= 32768
    kept = json.loads(raw)
    assert kept[-1]["parts"][0]["content"].startswith("19:")  # the newest are kept
    assert all(len(m["parts"][0]["content"]) < 4200 for m in kept)
    assert "more characters]" in kept[-1]["parts"][0]["content"]


def test_image_urls_lose_their_query_and_inline_bytes_are_never_recorded(
        provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    from router.engine.request import build_request

    req = build_request([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png?sig=SECRET-SIG"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJDREVG"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi1QREZCWVRFUw=="}},
    ]}], {})
    Tracing(provider, capture_content=True).start_call(
        alias="r", request_id="x", operation="chat", request=req).end()
    text = dump(exporter)
    assert "https://x.test/a.png" in text and "image/png" in text
    assert "application/pdf" in text and '"modality": "document"' in text.replace("\\", "")
    assert "SECRET-SIG" not in text and "QUJDREVG" not in text and "JVBERi1Q" not in text


# -- switching it on ----------------------------------------------------------------------------


def test_router_tracing_env_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_TRACING", "1")
    assert isinstance(_make_tracing(None), Tracing)
    assert _make_tracing(False) is None
    monkeypatch.delenv("ROUTER_TRACING")
    assert _make_tracing(None) is None
    mine = Tracing()
    assert _make_tracing(mine) is mine
    assert isinstance(_make_tracing(True), Tracing)


def test_tracing_without_opentelemetry_says_what_to_install() -> None:
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from router.obs.tracing import Tracing, TracingUnavailable\n"
            "from router.errors import RouterError\n"
            "try:\n    Tracing()\n"
            "except TracingUnavailable as e:\n"
            "    assert isinstance(e, ImportError) and isinstance(e, RouterError)\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "pip install routeyard[otel]" in out.stdout
