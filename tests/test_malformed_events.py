"""Stream events that are not JSON (issue 11): one (an SSE ``data:`` line or an NDJSON line)
is skipped, counted on the final chunk and on the attempt record as ``malformed_events``, and
logged as a warning that holds no payload text. A fourth in one stream fails it, and a stream
that then lacks its terminator fails as before. Every HTTP kind goes through the template, so
every kind is checked, each against its own loopback stand-in."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from router.errors import NetworkError, ServerError
from router.providers.base import MAX_MALFORMED_EVENTS, HttpPool
from router.providers.sse import Malformed, NDJSONDecoder
from router.types import ChatChunk
from tests import test_provider_contract as contract
from tests.engine_helpers import MSG, Events, chat_path, make_router, text_of
from tests.servers.base import Reply, ScriptedServer
from tests.servers.openai import OpenAIServer, text_events
from tests.test_provider_contract import Kind, T, ask, provider

# The contract's fixtures: every HTTP kind, each against its own loopback stand-in.
kind = contract.kind
server = contract.server

PAYLOAD = "SECRET-PAYLOAD-text-7f3a"  # must never reach a log event


def bad_event(kind: Kind) -> bytes:
    """One event (SSE) or line (NDJSON) that is not JSON, as the kind frames its stream."""
    if kind.kind == "ollama":
        return f'{{"message": {{"content": "{PAYLOAD}"\n'.encode()
    return f'data: {{"delta": "{PAYLOAD}"\n\n'.encode()


def with_bad(kind: Kind, parts: list[str], bad: int, *, terminator: bool = True) -> list[Any]:
    """The kind's stream of ``parts`` with ``bad`` malformed events after the first text."""
    events = (kind.stream if terminator else kind.cut)(parts)
    at = kind.before_text + 1
    return [*events[:at], *[bad_event(kind)] * bad, *events[at:]]


async def collect(kind: Kind, server: ScriptedServer, pool: HttpPool) -> list[ChatChunk]:
    stream = provider(kind, server, pool).stream(kind.model, ask(), T)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


# -- every kind, through the template ----------------------------------------------------------


async def test_one_malformed_event_is_skipped_and_the_answer_is_whole(
        kind: Kind, server: ScriptedServer, http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=with_bad(kind, ["Hel", "lo"], 1)))
    chunks = await collect(kind, server, http_pool)
    assert text_of(chunks) == "Hello"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].malformed_events == 1
    assert all(c.malformed_events == 0 for c in chunks[:-1])


async def test_up_to_the_limit_is_skipped(kind: Kind, server: ScriptedServer,
                                          http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=with_bad(kind, ["a", "b"], MAX_MALFORMED_EVENTS)))
    chunks = await collect(kind, server, http_pool)
    assert text_of(chunks) == "ab" and chunks[-1].malformed_events == MAX_MALFORMED_EVENTS == 3


async def test_one_more_than_the_limit_fails_the_stream(kind: Kind, server: ScriptedServer,
                                                        http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=with_bad(kind, ["a", "b"], MAX_MALFORMED_EVENTS + 1)))
    with pytest.raises(ServerError, match="not JSON") as info:
        await collect(kind, server, http_pool)
    assert "4 such events" in info.value.message


async def test_a_malformed_event_and_no_terminator_is_a_cut_stream(
        kind: Kind, server: ScriptedServer, http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=with_bad(kind, ["a", "b"], 1, terminator=False), done=False))
    with pytest.raises(NetworkError) as info:
        await collect(kind, server, http_pool)
    assert kind.terminator in info.value.message
    assert "1 malformed events skipped" in info.value.message


async def test_the_warning_names_the_stream_but_holds_no_payload(
        kind: Kind, server: ScriptedServer, http_pool: HttpPool, events: Events) -> None:
    server.enqueue(Reply(events=with_bad(kind, ["x", "y"], 2)))
    await collect(kind, server, http_pool)
    warnings = [e for e in events if e["event"] == "stream_event_skipped"]
    assert [(e["log_level"], e["malformed_events"]) for e in warnings] == [
        ("warning", 1), ("warning", 2)]
    assert warnings[0]["provider"] == kind.kind and warnings[0]["model"] == kind.model
    assert PAYLOAD not in repr(events)


# -- the pure decoders ----------------------------------------------------------------------------


def test_a_lenient_ndjson_decoder_puts_a_marker_in_place_of_a_bad_line() -> None:
    decoder = NDJSONDecoder(lenient=True)
    values = decoder.feed(b'{"a": 1}\n<html>\n{"b": 2}\n')
    assert values[0] == {"a": 1} and values[2] == {"b": 2}
    assert isinstance(values[1], Malformed) and values[1].excerpt == "<html>"


def test_a_lenient_ndjson_decoder_still_raises_on_a_cut_last_line() -> None:
    decoder = NDJSONDecoder(lenient=True)
    assert decoder.feed(b'{"a": 1}\n{"b": ') == [{"a": 1}]
    with pytest.raises(ValueError, match="not valid JSON"):
        decoder.flush()


def test_a_strict_ndjson_decoder_still_raises() -> None:
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        NDJSONDecoder().feed(b"<html>\n")


# -- through the Router: the attempt record counts them ----------------------------------------


async def test_the_attempt_record_counts_the_skipped_events(openai_server: OpenAIServer,
                                                            events: Events) -> None:
    parts = ["one ", "two ", "three"]
    body = text_events(parts)
    openai_server.enqueue(Reply(events=[body[0], b"data: {oops\n\n", *body[1:]]),
                          path=chat_path("a"))
    async with make_router(openai_server, {"r": ["a:m", "b:m"]}) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "one two three"
    final = chunks[-1]
    assert final.usage is not None and final.attempts is not None
    assert [(a.target, a.outcome, a.malformed_events) for a in final.attempts] == [
        ("a:m", "ok", 1)]
    ok = [e for e in events if e["event"] == "attempt_ok"]
    assert ok[0]["malformed_events"] == 1
    assert openai_server.request_count == 1  # nothing retried, nothing fell back


async def test_a_clean_attempt_logs_no_malformed_count(openai_server: OpenAIServer,
                                                       events: Events) -> None:
    openai_server.enqueue(Reply(events=text_events(["fine"])), path=chat_path("a"))
    async with make_router(openai_server, {"r": ["a:m"]}) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert chunks[-1].attempts is not None and chunks[-1].attempts[0].malformed_events == 0
    assert "malformed_events" not in next(e for e in events if e["event"] == "attempt_ok")


async def test_too_many_malformed_events_before_content_fall_back(
        openai_server: OpenAIServer) -> None:
    bad = [b"data: {oops\n\n"] * (MAX_MALFORMED_EVENTS + 1)
    openai_server.enqueue(Reply(events=[*bad, *text_events(["lost"])]), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(["from b"])), path=chat_path("b"))
    async with make_router(openai_server, {"r": ["a:m", "b:m"]}, retry={"attempts": 1}) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "from b"
    assert chunks[-1].attempts is not None
    assert [(a.target, a.outcome) for a in chunks[-1].attempts] == [
        ("a:m", "error"), ("b:m", "ok")]
