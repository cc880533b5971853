"""Mid-stream recovery (issue 11, ``stream: {recover: replay | continue | off}``): a stream that
breaks after its first chunk reached the caller goes on with the next attempt, and the caller
sees one uninterrupted answer, never a repeated or contradicted character. Each test serves
real wire bytes from loopback servers that fail on purpose and asserts what the caller got and
what the upstream saw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, InvalidRequestError, StreamInterruptedError
from router.policy.budget import budget_key
from router.state import MemoryStore
from router.types import ChatChunk
from tests.engine_helpers import (
    KEY,
    MSG,
    Factory,
    chat_path,
    collect,
    hits,
    make_router,
    our_pending_tasks,
    route_file,
    target,
    text_of,
)
from tests.servers import anthropic as anth
from tests.servers.anthropic import AnthropicServer
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    broken_reply,
    diverged,
    text_events,
    tool_call_events,
    usage,
)

TOKENS = [f"t{i:02d} " for i in range(60)]  # 60 tokens of 4 characters
ANSWER = "".join(TOKENS)
CUT = 41  # events before the break: the role chunk and 40 tokens
SAID = "".join(TOKENS[:40])


@pytest.fixture
async def claude() -> AsyncIterator[AnthropicServer]:
    async with AnthropicServer() as server:
        yield server


async def received_until_error(stream: AsyncIterator[ChatChunk]) -> tuple[str, Exception]:
    got: list[str] = []
    try:
        async for c in stream:
            got.append(c.delta)
    except Exception as e:
        return "".join(got), e
    raise AssertionError("the stream did not fail")


def outcomes(chunks: list[ChatChunk]) -> list[tuple[str, str, str | None]]:
    attempts = chunks[-1].attempts or []
    return [(a.target, a.outcome, a.error_class.value if a.error_class else None)
            for a in attempts]


def anthropic_file(port: int, claude: AnthropicServer, model: str,
                   recover: str = "continue", **kw: Any) -> dict[str, Any]:
    """Route r: openai-compatible a (retried never), then Anthropic's ``model`` on claude."""
    data = route_file(port, {"r": {"chain": ["a:m", f"c:{model}"],
                                   "stream": {"recover": recover}}}, names=["a"],
                      retry={"attempts": 1}, **kw)
    data["providers"]["c"] = {"kind": "anthropic", "base_url": claude.base_url, "api_key": KEY}
    return data


# -- replay --------------------------------------------------------------------------------------


async def test_a_stream_cut_after_40_of_60_tokens_gives_the_caller_all_60_once(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                          Reply(events=text_events(TOKENS)), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    assert [c.delta for c in chunks if c.delta].count("t40 ") == 1
    assert outcomes(chunks) == [("a:m", "error", "network"), ("a:m", "ok", None)]
    # the same request again: no assistant prefill
    first, again = (r.json for r in openai_server.requests)
    assert again == first and again["messages"][-1]["role"] == "user"


async def test_a_stall_mid_stream_is_recovered_and_the_router_still_works(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT, how="stall"),
                          Reply(events=text_events(TOKENS)), Reply(events=text_events(["ok"])),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]}, timeout={"idle": "100ms"})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    failed = (chunks[-1].attempts or [])[0]
    assert (failed.error_class, failed.timeout_kind) == (ErrorClass.TIMEOUT, "idle")
    assert text_of(await collect(router.stream("r", MSG))) == "ok"
    assert hits(openai_server, "a") == 3
    assert our_pending_tasks() == []


@pytest.mark.parametrize("how", ["error", "truncate"])
async def test_an_error_event_or_a_truncated_stream_mid_answer_is_recovered(
        how: str, router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT, how=how),  # type: ignore[arg-type]
                          path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(TOKENS)), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    assert [a[:2] for a in outcomes(chunks)] == [("a:m", "error"), ("b:m", "ok")]
    assert {c.target for c in chunks} == {"a:m", "b:m"}


async def test_a_replay_that_diverges_ends_in_a_clean_stream_interrupted(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    other = diverged(TOKENS, 80)  # differs at character 80 (token 20), inside what was said
    openai_server.enqueue(Reply(events=text_events(other)), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    got, e = await received_until_error(router.stream("r", MSG))
    assert got == SAID  # nothing repeated, nothing of the diverging replay
    assert isinstance(e, StreamInterruptedError)
    assert (e.cause, e.cause_class, e.partial_text) == ("resume_diverged", ErrorClass.NETWORK,
                                                        SAID)
    assert [(a.target, a.error_class) for a in e.attempts] == [
        ("a:m", ErrorClass.NETWORK), ("b:m", ErrorClass.STREAM_INTERRUPTED)]
    assert e.attempts[1].output_tokens == 21  # closed at once: ~81 characters read
    assert await openai_server.wait_connections(0) == 0


async def test_a_diverging_replay_moves_on_to_the_next_target(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(diverged(TOKENS, 3))), path=chat_path("b"))
    openai_server.enqueue(Reply(events=text_events(TOKENS)), path=chat_path("c"))
    router = router_for({"r": [target("a"), target("b"), target("c")]},
                        retry={"attempts": 1})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    assert [a[:2] for a in outcomes(chunks)] == [("a:m", "error"), ("b:m", "error"),
                                                 ("c:m", "ok")]


async def test_a_replay_that_differs_only_after_what_was_said_completes_the_answer(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    other = diverged(TOKENS, len(SAID) + 5)
    openai_server.enqueue(Reply(events=text_events(other)), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == "".join(other)  # one answer: b's, whose start a had said


async def test_a_replay_that_ends_short_of_what_was_said_diverges(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(TOKENS[:10])), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    got, e = await received_until_error(router.stream("r", MSG))
    assert got == SAID
    assert isinstance(e, StreamInterruptedError) and e.cause == "resume_diverged"


async def test_tool_call_arguments_cut_mid_way_are_replayed_once(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    args = '{"city": "Paris", "unit": "celsius", "days": 3}'
    events = tool_call_events([("call_1", "get_weather", args)], fragment=3)
    again = tool_call_events([("call_9", "get_weather", args)], fragment=5)
    openai_server.enqueue(broken_reply(events, after=8), Reply(events=again),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    chunks = await collect(router.stream("r", MSG, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert "".join(d.arguments for d in deltas) == args
    assert [d.id for d in deltas if d.id] == ["call_1"]
    assert [d.name for d in deltas if d.name] == ["get_weather"]
    last = chunks[-1]
    assert last.final_tool_calls is not None
    assert [(c.id, c.name, c.arguments) for c in last.final_tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris", "unit": "celsius", "days": 3})]
    assert outcomes(chunks)[-1] == ("a:m", "ok", None)


async def test_a_replay_calling_another_tool_diverges(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    events = tool_call_events([("call_1", "get_weather", '{"city": "Paris"}')], fragment=3)
    other = tool_call_events([("call_2", "get_time", '{"tz": "CET"}')], fragment=3)
    openai_server.enqueue(broken_reply(events, after=5), Reply(events=other),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    _, e = await received_until_error(router.stream("r", MSG, tools=[{
        "type": "function", "function": {"name": "get_weather", "parameters": {}}}]))
    assert isinstance(e, StreamInterruptedError) and e.cause == "resume_diverged"


async def test_a_retry_that_would_not_fit_the_call_deadline_is_not_tried(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                          Reply(events=text_events(TOKENS)), path=chat_path("a"))
    router = router_for({"r": [target("a")]}, retry={"attempts": 3, "initial": "30s",
                                                     "max": "30s", "jitter": "none"})
    got, e = await received_until_error(router.stream("r", MSG, timeout=20))
    assert isinstance(e, StreamInterruptedError) and e.partial_text == got == SAID
    assert hits(openai_server, "a") == 1
    assert [a.retry_in_ms for a in e.attempts] == [None]


async def test_when_recovery_fails_the_error_names_the_original_failure(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    from tests.servers.openai import error_reply

    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    openai_server.enqueue(error_reply("invalid_request"), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    got, e = await received_until_error(router.stream("r", MSG))
    assert isinstance(e, StreamInterruptedError)
    assert (e.cause_class, e.cause, e.partial_text) == (ErrorClass.NETWORK, "network", got)
    assert e.attempts[-1].error_class is ErrorClass.INVALID_REQUEST


# -- modes and settings -------------------------------------------------------------------------


async def test_off_mode_fails_at_the_first_break_as_before(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    router = router_for({"r": {"chain": [target("a"), target("b")],
                               "stream": {"recover": "off"}}})
    got, e = await received_until_error(router.stream("r", MSG))
    assert isinstance(e, StreamInterruptedError)
    assert (got, e.partial_text, e.cause_class) == (SAID, SAID, ErrorClass.NETWORK)
    assert (hits(openai_server, "a"), hits(openai_server, "b")) == (1, 0)


async def test_the_defaults_set_the_mode_and_a_call_overrides_it(
        openai_server: OpenAIServer) -> None:
    data = route_file(openai_server.port, {"r": ["a:m"]}, names=["a"])
    data["defaults"]["stream"] = {"recover": "off"}
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    async with Router.from_dict(data) as router:
        assert router.plan.routes["r"].recover == "off"
        assert router.plan.resolve("a:m").recover == "off"  # ad-hoc routes too
        _, e = await received_until_error(router.stream("r", MSG))
        assert isinstance(e, StreamInterruptedError)
        openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                              Reply(events=text_events(TOKENS)), path=chat_path("a"))
        chunks = await collect(router.stream("r", MSG, recover="replay"))
    assert text_of(chunks) == ANSWER
    assert hits(openai_server, "a") == 3


async def test_a_bad_recover_value_is_refused_before_any_request(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a")]})
    with pytest.raises(InvalidRequestError, match="recover must be one of"):
        await collect(router.stream("r", MSG, recover="retry"))
    assert openai_server.requests == []


async def test_several_choices_are_not_resumed(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    _, e = await received_until_error(router.stream("r", MSG, n=2))
    assert isinstance(e, StreamInterruptedError)
    assert hits(openai_server, "a") == 1


# -- continue (prefill) ---------------------------------------------------------------------------


async def test_continue_prefills_an_anthropic_target_and_appends_its_output(
        openai_server: OpenAIServer, claude: AnthropicServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    # Claude continues the prefill "t00 ... t39" (trailing space stripped, as the API wants)
    claude.enqueue(Reply(events=anth.text_events([" ", *TOKENS[40:]])))
    data = anthropic_file(openai_server.port, claude, "claude-haiku-4-5")
    async with Router.from_dict(data) as router:
        chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    assert claude.problems == []
    sent = claude.requests[0].json["messages"]
    assert sent[-1] == {"role": "assistant", "content": SAID.rstrip()}
    assert outcomes(chunks)[-1] == ("c:claude-haiku-4-5", "ok", None)


async def test_continue_never_prefills_a_model_that_rejects_it_and_replays_instead(
        openai_server: OpenAIServer) -> None:
    async with AnthropicServer(prefill=False) as strict:  # Claude 4.6: prefill is a 400
        openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                              path=chat_path("a"))
        strict.enqueue(Reply(events=anth.text_events(TOKENS)))
        data = anthropic_file(openai_server.port, strict, "claude-opus-4-6")
        async with Router.from_dict(data) as router:
            chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    assert strict.problems == []
    assert strict.requests[0].json["messages"][-1]["role"] == "user"


async def test_continue_replays_on_an_openai_target(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                          Reply(events=text_events(TOKENS)), path=chat_path("a"))
    router = router_for({"r": {"chain": [target("a")], "stream": {"recover": "continue"}}})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == ANSWER
    assert [r.json["messages"][-1]["role"] for r in openai_server.requests] == ["user", "user"]


# -- accounting ----------------------------------------------------------------------------------


async def test_every_attempt_is_accounted_and_the_last_chunk_costs_the_whole_call(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(TOKENS, usage_=usage(100, 60))),
                          path=chat_path("b"))
    price = {"models": {"m": {"price": {"input": 2.0, "output": 10.0}}}}
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1},
                        providers={"a": price, "b": price})
    chunks = await collect(router.stream("r", MSG))
    broken, done = chunks[-1].attempts or []
    assert broken.outcome == "error" and broken.output_tokens == len(SAID) // 4
    assert broken.input_tokens is not None and broken.input_tokens > 0
    assert broken.cost_usd == pytest.approx(
        (broken.input_tokens * 2.0 + broken.output_tokens * 10.0) / 1e6)
    assert (done.input_tokens, done.output_tokens) == (100, 60)
    assert done.cost_usd == pytest.approx((100 * 2.0 + 60 * 10.0) / 1e6)
    last = chunks[-1]
    assert last.usage is not None and (last.usage.input_tokens, last.usage.output_tokens) == (
        100, 60)
    assert last.cost_usd == pytest.approx(broken.cost_usd + done.cost_usd)


async def test_the_replayed_attempt_is_held_and_settled_against_the_budget(
        openai_server: OpenAIServer) -> None:
    price = {"models": {"m": {"price": {"input": 2.0, "output": 10.0}}}}
    data = route_file(openai_server.port, {"r": ["a:m"]}, providers={"a": price})
    data["budgets"] = [{"scope": "global", "usd": 1.0, "per": "day"}]
    openai_server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                          Reply(events=text_events(TOKENS, usage_=usage(100, 60))),
                          path=chat_path("a"))
    store = MemoryStore()
    async with Router.from_dict(data, store=store) as router:
        chunks = await collect(router.stream("r", MSG, max_tokens=100))
        spent = await store.usage(budget_key(router.plan.budgets[0], time.time()).key)
    # each attempt was admitted (held) and settled: the broken one at its estimate
    assert spent.reserved_micro == 0
    assert spent.spent_micro == pytest.approx((chunks[-1].cost_usd or 0) * 1e6, abs=2)
    assert len(openai_server.requests) == 2


def test_a_cancelled_recovery_leaves_no_task_behind() -> None:
    async def run() -> None:
        async with OpenAIServer() as server:
            server.enqueue(broken_reply(text_events(TOKENS), after=CUT),
                           Reply(events=text_events(TOKENS), first_byte_delay=10),
                           path=chat_path("a"))
            async with make_router(server, {"r": [target("a")]}) as router:
                said = asyncio.Event()

                async def consume() -> None:
                    async for c in router.stream("r", MSG):
                        if c.delta == "t39 ":
                            said.set()

                task = asyncio.create_task(consume())
                await asyncio.wait_for(said.wait(), 5)
                await server.wait_requests(2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert await server.wait_connections(0) == 0
                assert our_pending_tasks() == []

    asyncio.run(run())
