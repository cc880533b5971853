"""The seam's typed errors reach the chain: for every HTTP kind, a reply of the wrong shape and
a redirect end the attempt as a `server` error and the next target answers; a stream cut after
its first chunk is a StreamInterruptedError that carries every attempt. Each kind runs on its
own loopback stand-in, with two providers of that kind on the same server (its reply queue is
FIFO, so the first provider gets the first scripted reply)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, StreamInterruptedError
from tests.servers.base import Reply, ScriptedServer, json_reply, redirect_reply, stream_reply
from tests.test_provider_contract import KINDS, Kind

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=KINDS, ids=[k.kind for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    k: Kind = request.param
    return k


@pytest.fixture
async def server(kind: Kind) -> AsyncIterator[ScriptedServer]:
    async with kind.server() as s:
        yield s


def two_of(kind: Kind, server: ScriptedServer) -> Router:
    """Providers ``a`` and ``b`` of ``kind`` on ``server``; route ``r`` is [a, b], one try each."""
    spec: dict[str, Any] = {"kind": kind.kind, "base_url": server.base_url, **kind.options}
    if kind.key:
        spec["api_key"] = "${SEAM_KEY}"
    return Router.from_dict({
        "version": 1,
        "defaults": {"retry": {"attempts": 1},
                     "timeout": {"connect": "2s", "first_token": "2s", "total": "5s"}},
        "providers": {"a": dict(spec), "b": dict(spec)},
        "models": {"r": [f"a:{kind.model}", f"b:{kind.model}"]},
    }, env={"SEAM_KEY": kind.key or ""})


async def test_a_reply_of_the_wrong_shape_falls_back_to_the_next_target(
        kind: Kind, server: ScriptedServer) -> None:
    server.enqueue(Reply(json=kind.wrong_shape), json_reply(kind.reply("from b")))
    async with two_of(kind, server) as router:
        r = await router.chat("r", MSG)
    assert (r.text, r.target) == ("from b", f"b:{kind.model}")
    first = r.attempts[0]
    assert (first.target, first.outcome, first.error_class) == (
        f"a:{kind.model}", "error", ErrorClass.SERVER)


async def test_a_redirect_falls_back_without_reaching_the_redirect_target(
        kind: Kind, server: ScriptedServer) -> None:
    async with kind.server() as elsewhere:
        server.enqueue(redirect_reply(elsewhere.base_url + "/v1/anything"),
                       json_reply(kind.reply("from b")))
        async with two_of(kind, server) as router:
            r = await router.chat("r", MSG)
        assert elsewhere.request_count == 0
    assert r.target == f"b:{kind.model}"
    assert (r.attempts[0].error_class, r.attempts[0].status) == (ErrorClass.SERVER, 307)


async def test_a_stream_cut_after_its_first_chunk_is_interrupted_with_every_attempt(
        kind: Kind, server: ScriptedServer) -> None:
    server.enqueue(stream_reply(kind.cut(["Hel", "lo"])))
    seen: list[str] = []
    async with two_of(kind, server) as router:
        with pytest.raises(StreamInterruptedError) as info:
            async for chunk in router.stream("r", MSG):
                seen.append(chunk.delta or "")
    err = info.value
    assert "".join(seen) == "Hello" == err.partial_text
    assert [(a.target, a.outcome, a.error_class) for a in err.attempts] == [
        (f"a:{kind.model}", "error", ErrorClass.NETWORK)]
    assert server.request_count == 1  # nothing already sent is repeated elsewhere
