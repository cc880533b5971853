"""A state store that cannot be reached follows ``on_store_error``: fail_closed skips the gated
target (a budget or a rate limit) without sending it anything, fail_open sends the call
unaccounted; both log ``store_error``. The store's password never shows in an error, an
event or a record. The Redis here is a port nothing listens on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from router import Router
from router.errors import ErrorClass, RouteFailed
from router.obs import log
from router.state import StoreError, make_store
from tests.servers.openai import OpenAIServer, Reply, completion, usage

PASSWORD = "s3cretpass"
DEAD_REDIS = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # port 1: connection refused at once
MSG = [{"role": "user", "content": "x" * 100}]
Events = list[MutableMapping[str, Any]]


def route_file(base_url: str, policy: str, gate: str) -> dict[str, Any]:
    """Providers a and b; a is gated by a global budget (``gate="budget"``) or a rate limit
    (``gate="rate_limit"``), b by nothing. Route ``solo`` is [a:m], ``r`` is [a:m, b:m]."""
    models = {"m": {"price": {"input": 1, "output": 1}}}
    doc: dict[str, Any] = {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}, "timeout": {"total": "5s"}},
        "providers": {
            "a": {"kind": "openai-compatible", "base_url": base_url, "models": models},
            "b": {"kind": "openai-compatible", "base_url": base_url, "models": models},
        },
        "models": {"solo": ["a:m"], "r": ["a:m", "b:m"]},
        "state": {"kind": "redis", "url": DEAD_REDIS, "prefix": "test-store-errors:",
                  "on_store_error": policy},
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


@pytest.fixture
def router_logger() -> Iterator[logging.Logger]:
    """The ``router`` stdlib logger at INFO; it and structlog's configuration are restored."""
    std = logging.getLogger("router")
    saved = (std.level, list(std.handlers), std.propagate)
    config = structlog.get_config()
    config["processors"] = list(config["processors"])
    std.setLevel(logging.INFO)
    yield std
    std.setLevel(saved[0])
    std.handlers[:] = saved[1]
    std.propagate = saved[2]
    structlog.configure(**config)


@pytest.fixture
def events(request: pytest.FixtureRequest) -> Iterator[Events]:
    request.getfixturevalue("router_logger")  # events are emitted at INFO
    with capture_logs() as captured:
        yield captured


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

async def test_fail_closed_skips_a_budgeted_target_without_a_request(
        server: OpenAIServer, events: Events) -> None:
    failed = await chat(server, "fail_closed", "budget")
    assert isinstance(failed, RouteFailed)
    assert failed.error_class is ErrorClass.BUDGET_EXCEEDED
    (skip,) = failed.attempts
    assert (skip.target, skip.outcome, skip.reason) == ("a:m", "skipped", "budget")
    assert "state store unavailable" in (skip.detail or "")
    assert server.request_count == 0
    (event,) = store_errors(events)
    assert (event["operation"], event["policy"]) == ("reserve", "fail_closed")


async def test_fail_closed_moves_on_to_a_target_the_store_does_not_gate(
        server: OpenAIServer) -> None:
    r = await chat(server, "fail_closed", "budget", model="r")
    assert r.target == "b:m"
    assert [(a.target, a.reason) for a in r.attempts] == [("a:m", "budget"), ("b:m", None)]
    assert server.request_count == 1


async def test_fail_closed_skips_a_rate_limited_target_without_a_request(
        server: OpenAIServer, events: Events) -> None:
    failed = await chat(server, "fail_closed", "rate_limit")
    assert isinstance(failed, RouteFailed)
    assert failed.error_class is ErrorClass.RATE_LIMITED_LOCALLY
    (skip,) = failed.attempts
    assert (skip.target, skip.outcome, skip.reason) == ("a:m", "skipped",
                                                        "rate_limited_locally")
    assert "state store unavailable" in (skip.detail or "")
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

