"""Hot reload of ``router serve``: a changed route file (or SIGHUP) puts its plan in force
for new requests; a bad one keeps the old plan and /readyz shows its diagnostics
(file:line:col); a stream open across a reload finishes on the plan it began with, and the
old Router is closed only after it. Every wait polls (the proxy looks at the file about once
a second)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.servers.proxy import GatedUpstream, ProxyProcess

pytestmark = pytest.mark.asyncio

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
WAIT = 20.0  # seconds a poll may take on a busy machine before the test fails


def routes(fast: str, gated_url: str = "http://127.0.0.1:9/v1") -> dict[str, Any]:
    return {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"a": {"kind": "fake"}, "b": {"kind": "fake"},
                          "gated": {"kind": "openai-compatible", "base_url": gated_url}},
            "models": {"fast": [fast], "gated": ["gated:gated-model"]}}


def write(path: Path, doc: dict[str, Any] | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


async def until(check: Callable[[], Any], proxy: ProxyProcess) -> Any:
    """Poll ``check`` (a coroutine function) until it returns something true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < end, proxy.log()
        await asyncio.sleep(0.05)


async def served_by(http: aiohttp.ClientSession) -> str:
    async with http.post(CHAT, json={"model": "fast", "messages": USER}) as r:
        assert r.status == 200, await r.text()
        return r.headers["x-router-target"]


async def readyz(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/readyz") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Path, ProxyProcess,
                                                         aiohttp.ClientSession]]:
    path = write(tmp_path / "routes.yaml", routes("a:m"))
    async with ProxyProcess(path) as proxy, \
            aiohttp.ClientSession(base_url=proxy.base_url) as http:
        yield path, proxy, http


async def test_a_changed_file_changes_the_chain(
        running: tuple[Path, ProxyProcess, aiohttp.ClientSession]) -> None:
    path, proxy, http = running
    assert await served_by(http) == "a:m"
    write(path, routes("b:m"))

    async def moved() -> bool:
        return await served_by(http) == "b:m"

    await until(moved, proxy)
    body = await readyz(http)
    assert body["plan"]["generation"] == 2 and body["reload_errors"] == {}
    assert "routes_reloaded" in proxy.log()


async def test_sighup_reloads_an_unchanged_looking_file(
        running: tuple[Path, ProxyProcess, aiohttp.ClientSession]) -> None:
    path, proxy, http = running
    before = path.stat()
    write(path, routes("b:m"))  # same size, in place: same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the poll sees no change
    proxy.signal(signal.SIGHUP)

    async def moved() -> bool:
        return await served_by(http) == "b:m"

    await until(moved, proxy)


async def test_a_bad_file_keeps_the_old_plan_and_readyz_says_why(
        running: tuple[Path, ProxyProcess, aiohttp.ClientSession]) -> None:
    path, proxy, http = running
    write(path, routes("nope:m"))

    async def failed() -> list[str]:
        errors: list[str] = (await readyz(http))["reload_errors"].get("routes", [])
        return errors

    errors = await until(failed, proxy)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error\[E020\]", errors[0]), errors
    assert await served_by(http) == "a:m"  # the old plan serves on
    assert "routes_reload_failed" in proxy.log()
    write(path, routes("b:m"))

    async def mended() -> bool:
        return (await readyz(http))["reload_errors"] == {}

    await until(mended, proxy)
    assert await served_by(http) == "b:m"


async def test_invalid_yaml_is_a_diagnostic_too(
        running: tuple[Path, ProxyProcess, aiohttp.ClientSession]) -> None:
    path, proxy, http = running
    write(path, "version: 1\nmodels: [unclosed\n")

    async def failed() -> list[str]:
        errors: list[str] = (await readyz(http))["reload_errors"].get("routes", [])
        return errors

    assert str(path) in (await until(failed, proxy))[0]
    assert await served_by(http) == "a:m"


async def test_a_stream_open_across_a_reload_finishes_on_the_old_plan(tmp_path: Path) -> None:
    async with GatedUpstream() as gated:
        path = write(tmp_path / "routes.yaml", routes("a:m", gated.base_url))
        async with ProxyProcess(path) as proxy, \
                aiohttp.ClientSession(base_url=proxy.base_url) as http:
            r = await http.post(CHAT, json={"model": "gated", "messages": USER,
                                            "stream": True})
            assert r.status == 200
            await r.content.readuntil(b"\n\n")
            await asyncio.wait_for(gated.started.wait(), WAIT)
            new = routes("a:m")
            new["models"]["gated"] = ["b:m"]  # the alias leaves the gated upstream
            write(path, new)

            async def reloaded() -> bool:
                return bool((await readyz(http))["plan"]["generation"] == 2)

            await until(reloaded, proxy)
            async with http.post(CHAT, json={"model": "gated", "messages": USER}) as other:
                assert other.headers["x-router-target"] == "b:m"  # new calls: the new plan
            assert "plan_retired" not in proxy.log()  # the old Router still streams
            gated.gate.set()
            rest = (await r.read()).decode()
            r.close()
            assert '"content":"second"' in rest and rest.endswith("data: [DONE]\n\n")
            assert not gated.cancelled.is_set()

            async def retired() -> bool:
                return "plan_retired" in proxy.log()

            await until(retired, proxy)  # then the old Router is closed
