"""A state store that cannot be reached follows ``on_store_error``: fail_closed skips the gated
target (a budget or a rate limit) without sending it anything, recorded as
``store_unavailable``, and a call with nothing left fails with that class (not
budget_exceeded); fail_open sends the call unaccounted; both log ``store_error``. The store's
password never shows in an error, an event or a record. The Redis here is a port nothing
listens on, an SQLite file in a place it cannot be written, and a real Redis (127.0.0.1:6379)
reached through a loopback relay that the test closes between two calls."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from router import Router
from router.errors import ErrorClass, LlmError, RouteFailed, StoreUnavailableError
from router.obs import log
from router.state import StoreError, make_store
from tests.engine_helpers import Events
from tests.servers.openai import OpenAIServer, Reply, completion, usage

PASSWORD = "s3cretpass"
DEAD_REDIS = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # port 1: connection refused at once
MSG = [{"role": "user", "content": "x" * 100}]


def route_file(base_url: str, policy: str, gate: str,
               state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Providers a and b; a is gated by a global budget (``gate="budget"``) or a rate limit
    (``gate="rate_limit"``), b by nothing. Route ``solo`` is [a:m], ``r`` is [a:m, b:m].
    The store is the dead Redis unless ``state`` says otherwise."""
    models = {"m": {"price": {"input": 1, "output": 1}}}
    doc: dict[str, Any] = {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}, "timeout": {"total": "5s"}},
        "providers": {
            "a": {"kind": "openai-compatible", "base_url": base_url, "models": models},
            "b": {"kind": "openai-compatible", "base_url": base_url, "models": models},
        },
        "models": {"solo": ["a:m"], "r": ["a:m", "b:m"]},
        "state": {**(state or {"kind": "redis", "url": DEAD_REDIS,
                                "prefix": "test-store-errors:"}), "on_store_error": policy},
    }
    if gate == "budget":
        doc["budgets"] = [{"scope": "provider:a", "usd": 100}]
    else:
        doc["providers"]["a"]["rate_limit"] = {"rpm": 1000}
    return doc


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        s.default = Reply(json=completion("ok", usage_=usage(100, 10)))
        yield s


def store_errors(events: Events) -> Events:
    return [e for e in events if e["event"] == "store_error"]


async def chat(server: OpenAIServer, policy: str, gate: str, model: str = "solo") -> Any:
    """The response, or the RouteFailed."""
    async with Router.from_dict(route_file(server.base_url, policy, gate)) as router:
        try:
            return await router.chat(model, MSG, max_tokens=10)
        except RouteFailed as e:
            return e


# -- fail_closed --------------------------------------------------------------------------------

async def test_fail_closed_skips_a_budgeted_target_as_store_unavailable(
        server: OpenAIServer, events: Events) -> None:
    failed = await chat(server, "fail_closed", "budget")
    assert isinstance(failed, RouteFailed)
    assert failed.error_class is ErrorClass.STORE_UNAVAILABLE
    assert isinstance(failed.last_error, StoreUnavailableError)
    (skip,) = failed.attempts
    assert (skip.target, skip.outcome, skip.reason) == ("a:m", "skipped", "store_unavailable")
    assert "state store unavailable (redis 127.0.0.1:1/0" in (skip.detail or "")
    assert "budget" not in str(failed)  # the budget refused nothing: the store is down
    assert server.request_count == 0
    (event,) = store_errors(events)
    assert (event["operation"], event["policy"]) == ("reserve", "fail_closed")


async def test_fail_closed_moves_on_to_a_target_the_store_does_not_gate(
        server: OpenAIServer) -> None:
    r = await chat(server, "fail_closed", "budget", model="r")
    assert r.target == "b:m"
    assert [(a.target, a.reason) for a in r.attempts] == [("a:m", "store_unavailable"),
                                                          ("b:m", None)]
    assert server.request_count == 1


async def test_fail_closed_skips_a_rate_limited_target_as_store_unavailable(
        server: OpenAIServer, events: Events) -> None:
    failed = await chat(server, "fail_closed", "rate_limit")
    assert isinstance(failed, RouteFailed)
    assert failed.error_class is ErrorClass.STORE_UNAVAILABLE
    (skip,) = failed.attempts
    assert (skip.target, skip.outcome, skip.reason) == ("a:m", "skipped", "store_unavailable")
    assert "state store unavailable" in (skip.detail or "")
    assert "rate limit" not in str(failed)
    assert server.request_count == 0
    (event,) = store_errors(events)
    assert (event["operation"], event["policy"]) == ("rate_limit", "fail_closed")


# -- fail_open ----------------------------------------------------------------------------------

async def test_fail_open_sends_a_budgeted_call_unaccounted_and_logs_it(
        server: OpenAIServer, events: Events) -> None:
    r = await chat(server, "fail_open", "budget")
    assert (r.target, r.text, r.cost_usd) == ("a:m", "ok", pytest.approx(110 / 1e6))
    assert server.request_count == 1
    (event,) = store_errors(events)  # the reserve; with no hold there is nothing to settle
    assert (event["operation"], event["policy"]) == ("reserve", "fail_open")
    assert "127.0.0.1:1" in event["error"]


async def test_fail_open_sends_a_rate_limited_call_and_logs_it(
        server: OpenAIServer, events: Events) -> None:
    r = await chat(server, "fail_open", "rate_limit")
    assert r.target == "a:m"
    assert server.request_count == 1
    (event,) = store_errors(events)
    assert (event["operation"], event["policy"]) == ("rate_limit", "fail_open")


# -- the password -------------------------------------------------------------------------------

@pytest.mark.usefixtures("router_logger")
async def test_store_password_never_in_errors_logs_or_records(server: OpenAIServer) -> None:
    out = io.StringIO()
    log.configure_output("json", stream=out)
    results = [await chat(server, policy, gate, model)
               for policy in ("fail_closed", "fail_open")
               for gate in ("budget", "rate_limit") for model in ("solo", "r")]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sum(line["event"] == "store_error" for line in lines) == 8
    texts = [out.getvalue()]
    for result in results:
        texts += [str(result), repr(result)]
        texts += [repr(a) + str(a.as_dict()) for a in result.attempts]
    assert any(isinstance(r, RouteFailed) for r in results)
    async with Router.from_dict(route_file(server.base_url, "fail_closed", "budget")) as router:
        texts += [repr(router), repr(router.plan), repr(router.plan.state)]
    async with make_store("redis", url=DEAD_REDIS) as store:
        with pytest.raises(StoreError) as info:
            await store.usage("budget|global|total|total")
    texts += [str(info.value), repr(info.value)]
    assert "127.0.0.1:1" in str(info.value)  # it says where, ...
    assert not [t for t in texts if PASSWORD in t]  # ... never with what password



# -- other stores and other ways of being down ----------------------------------------------------

def unwritable_paths(tmp: Path) -> dict[str, Path]:
    """SQLite files that cannot be created, even by root: in /proc, and below a plain file."""
    (tmp / "plain").write_text("not a directory")
    return {"proc": Path("/proc/router-test-state.db"), "under_a_file": tmp / "plain" / "s.db"}


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
async def test_an_unwritable_sqlite_file_fails_closed_as_store_unavailable(
        server: OpenAIServer, tmp_path: Path, where: str) -> None:
    path = unwritable_paths(tmp_path)[where]
    doc = route_file(server.base_url, "fail_closed", "budget",
                     state={"kind": "sqlite", "path": str(path)})
    async with Router.from_dict(doc) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("solo", MSG, max_tokens=10)
        r = await router.chat("r", MSG, max_tokens=10)
    assert info.value.error_class is ErrorClass.STORE_UNAVAILABLE
    (skip,) = info.value.attempts
    assert skip.reason == "store_unavailable"
    assert f"sqlite store {path}" in (skip.detail or "")
    assert str(path) in str(info.value)
    assert (r.target, r.attempts[0].reason) == ("b:m", "store_unavailable")
    assert server.request_count == 1


async def test_a_stream_fails_closed_as_store_unavailable_before_any_request(
        server: OpenAIServer) -> None:
    async with Router.from_dict(route_file(server.base_url, "fail_closed", "budget")) as router:
        with pytest.raises(RouteFailed) as info:
            async for _ in router.stream("solo", MSG, max_tokens=10):
                pass
    assert info.value.error_class is ErrorClass.STORE_UNAVAILABLE
    assert [a.reason for a in info.value.attempts] == ["store_unavailable"]
    assert server.request_count == 0


class Relay:
    """A loopback TCP relay to the real Redis that can be shut, connections and all: to the
    router, the Redis it used a moment ago is gone."""

    def __init__(self, port: int = 6379) -> None:
        self.upstream = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def shut(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def __aexit__(self, *exc: object) -> None:
        await self.shut()


def redis_up() -> bool:
    try:
        return bool(redis.Redis(port=6379, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.mark.skipif(not redis_up(), reason="no Redis at 127.0.0.1:6379")
async def test_a_redis_that_goes_away_between_calls_fails_the_next_call_closed(
        server: OpenAIServer) -> None:
    prefix = f"test-store-errors:{uuid.uuid4().hex}:"
    async with Relay() as relay:
        doc = route_file(server.base_url, "fail_closed", "budget", state={
            "kind": "redis", "url": f"redis://127.0.0.1:{relay.port}/0", "prefix": prefix})
        async with Router.from_dict(doc) as router:
            first = await router.chat("solo", MSG, max_tokens=10)
            await relay.shut()
            with pytest.raises(RouteFailed) as info:
                await router.chat("solo", MSG, max_tokens=10)
    client = redis.Redis(port=6379)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    assert (first.target, first.text) == ("a:m", "ok")
    assert info.value.error_class is ErrorClass.STORE_UNAVAILABLE
    assert [a.reason for a in info.value.attempts] == ["store_unavailable"]
    assert f"127.0.0.1:{relay.port}" in (info.value.attempts[0].detail or "")
    assert server.request_count == 1


def test_a_store_error_is_an_llm_error_of_class_store_unavailable() -> None:
    # What reaches a caller that reads the store itself (budget reports, dry-run with state)
    # is classified like every other failure.
    err = StoreError("redis 127.0.0.1:1/0: connection refused")
    assert isinstance(err, LlmError) and isinstance(err, StoreUnavailableError)
    assert err.error_class is ErrorClass.STORE_UNAVAILABLE and not err.retryable
    assert str(err) == "store_unavailable: redis 127.0.0.1:1/0: connection refused"
