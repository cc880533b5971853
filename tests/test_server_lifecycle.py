"""``router serve`` starting and stopping: SIGTERM drains (no new connections, in-flight
streams finish, or end with an error event once the drain timeout passes), and the command
refuses what it must (a non-loopback address without access keys, no route file, a bad
route file, a port in use) with one line and no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from router.cli.chat_input import UsageError
from router.cli.main import main
from router.cli.serve import is_loopback
from router.cli.source import route_file
from tests.servers.proxy import GatedUpstream, ProxyProcess

CHAT = "/v1/chat/completions"
STREAM_BODY = {"model": "gated", "messages": [{"role": "user", "content": "hi"}],
               "stream": True}


def write_routes(path: Path, gated_url: str = "http://127.0.0.1:9/v1") -> Path:
    path.write_text(yaml.safe_dump({
        "version": 1,
        "providers": {"gated": {"kind": "openai-compatible", "base_url": gated_url}},
        "models": {"gated": ["gated:gated-model"]}}))
    return path


async def refused(base_url: str) -> None:
    """Poll until the proxy refuses new connections (it stopped listening)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except (ConnectionRefusedError, ConnectionResetError):
                return  # reset: our connect sat in the backlog of the listener that closed
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def stream_in_flight(tmp_path: Path, *args: str,
                           ) -> AsyncIterator[tuple[GatedUpstream, ProxyProcess,
                                                    aiohttp.ClientResponse]]:
    """A proxy with one stream open: its first chunk read, the upstream holding the rest."""
    async with GatedUpstream() as gated:
        routes = write_routes(tmp_path / "routes.yaml", gated.base_url)
        async with ProxyProcess(routes, args=args) as proxy, aiohttp.ClientSession() as s:
            r = await s.post(proxy.base_url + CHAT, json=STREAM_BODY)
            assert r.status == 200
            await r.content.readuntil(b"\n\n")
            await asyncio.wait_for(gated.started.wait(), 10)
            yield gated, proxy, r


async def test_sigterm_stops_accepting_and_lets_the_stream_finish(tmp_path: Path) -> None:
    async with stream_in_flight(tmp_path) as (gated, proxy, r):
        proxy.signal(signal.SIGTERM)
        await refused(proxy.base_url)
        gated.gate.set()
        rest = await r.read()
        assert b'"content":"second"' in rest and rest.endswith(b"data: [DONE]\n\n")
        assert await proxy.wait() == 0
        assert "proxy_draining" in proxy.log() and "proxy_stopped" in proxy.log()


async def test_drain_timeout_ends_a_stream_with_an_error_event(tmp_path: Path) -> None:
    async with stream_in_flight(tmp_path, "--drain-timeout", "200ms") as (gated, proxy, r):
        proxy.signal(signal.SIGTERM)
        rest = ""  # the upstream never finishes: the drain cuts the reply (no last chunk)
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in r.content.iter_any():
                rest += data.decode()
        events = [line[6:] for line in rest.split("\n") if line.startswith("data: ")]
        assert "[DONE]" not in events
        assert json.loads(events[-1])["error"]["code"] == "draining"
        assert await proxy.wait() == 0
        await asyncio.wait_for(gated.cancelled.wait(), 10)


async def test_second_signal_ends_the_drain_at_once(tmp_path: Path) -> None:
    async with stream_in_flight(tmp_path, "--drain-timeout", "10m") as (_, proxy, r):
        proxy.signal(signal.SIGTERM)
        await refused(proxy.base_url)  # the first signal was taken
        proxy.signal(signal.SIGINT)
        rest = ""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in r.content.iter_any():
                rest += data.decode()
        assert '"code":"draining"' in rest and "[DONE]" not in rest
        assert await proxy.wait() == 0


def run_serve(*args: str, cwd: Path, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", "serve", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env)


def test_non_loopback_without_keys_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ROUTER_PROXY_KEYS", raising=False)
    routes = write_routes(tmp_path / "routes.yaml")
    assert main(["serve", str(routes), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "ROUTER_PROXY_KEYS" in err and "--insecure-no-auth" in err


def test_no_route_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROUTER_CONFIG", raising=False)
    assert main(["serve"]) == 2
    assert "ROUTER_CONFIG" in capsys.readouterr().err


def test_route_file_comes_from_argument_then_router_config_then_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert route_file("a.yaml", {"ROUTER_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert route_file(None, {"ROUTER_CONFIG": "b.yaml"}) == Path("b.yaml")
    with pytest.raises(UsageError, match="ROUTER_CONFIG"):
        route_file(None, {})
    (tmp_path / "routes.yaml").write_text("version: 1\n")
    assert route_file(None, {}) == Path("routes.yaml")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.1.2.3", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("proxy.internal", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bad_route_file_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("version: 1\nmodels: {fast: [nowhere:m]}\n")
    done = run_serve("routes.yaml", "--port", "0", cwd=tmp_path)
    assert done.returncode == 1 and "E020" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    write_routes(tmp_path / "routes.yaml")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve("routes.yaml", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 1 and "cannot listen on 127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr
