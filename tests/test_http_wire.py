"""The HTTP seam's own client (router.providers._wire) against a raw loopback TCP server that
answers with exact bytes: the framings of a body (length, chunked, to the end of the
connection), gzip and raw deflate, interim 1xx answers, keep-alive and ``Connection: close``,
bodies far over the read-ahead (flow control), replies that are not HTTP, header injection,
and the aiohttp path kept for ``trust_env`` and a caller's session."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.errors import NetworkError, ServerError
from router.providers.http import HttpPool
from router.specs import Timeouts

T = Timeouts(connect=5, first_token=5, total=10, idle=5)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

Answer = Callable[[bytes], bytes | None]  # the request's head and body -> the reply's bytes


class RawServer:
    """Answers each request with ``answer(request bytes)`` (None: close without a byte);
    counts connections and requests; ``close_after`` closes the connection after a reply."""

    def __init__(self, answer: Answer, *, close_after: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


def json_reply(value: Any, *headers: str) -> bytes:
    body = json.dumps(value).encode()
    return reply(body, "Content-Type: application/json", f"Content-Length: {len(body)}",
                 *headers)


def chunked(*parts: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    async with HttpPool() as p:
        yield p


async def get_json(pool: HttpPool, url: str, **kw: Any) -> Any:
    async with pool.post(url, BODY, headers={"Authorization": "Bearer k"}, timeouts=T,
                         **kw) as resp:
        return await resp.json()


async def test_keep_alive_connection_serves_the_next_request(pool: HttpPool) -> None:
    async with RawServer(lambda _: json_reply({"n": 1})) as server:
        for _ in range(3):
            assert await get_json(pool, server.url) == {"n": 1}
    assert server.connections == 1 and len(server.requests) == 3


async def test_request_head_carries_host_length_and_the_callers_headers(pool: HttpPool) -> None:
    async with RawServer(lambda _: json_reply({})) as server:
        await get_json(pool, server.url + "?api-version=1")
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/x?api-version=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Authorization: Bearer k" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == BODY


async def test_connection_close_is_not_pooled(pool: HttpPool) -> None:
    async with RawServer(lambda _: json_reply({}, "Connection: close"),
                         close_after=True) as server:
        for _ in range(2):
            assert await get_json(pool, server.url) == {}
    assert server.connections == 2


async def test_chunked_body(pool: HttpPool) -> None:
    body = chunked(b'{"a":', b' "b"', b"}")
    async with RawServer(lambda _: reply(body, "Transfer-Encoding: chunked")) as server:
        assert await get_json(pool, server.url) == {"a": "b"}
        assert await get_json(pool, server.url) == {"a": "b"}
    assert server.connections == 1


async def test_body_delimited_by_the_end_of_the_connection(pool: HttpPool) -> None:
    async with RawServer(lambda _: reply(b'{"until": "close"}', "Connection: close"),
                         close_after=True) as server:
        assert await get_json(pool, server.url) == {"until": "close"}


@pytest.mark.parametrize("encoding,pack", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
])
async def test_compressed_bodies_are_decoded(pool: HttpPool, encoding: str,
                                             pack: Callable[[bytes], bytes]) -> None:
    packed = pack(json.dumps({"text": "hello " * 50}).encode())
    async with RawServer(lambda _: reply(packed, f"Content-Encoding: {encoding}",
                                         f"Content-Length: {len(packed)}")) as server:
        assert await get_json(pool, server.url) == {"text": "hello " * 50}
    assert b"Accept-Encoding: gzip, deflate" in server.requests[0]


async def test_a_body_that_does_not_decompress_is_a_network_error(pool: HttpPool) -> None:
    async with RawServer(lambda _: reply(b"not gzip at all", "Content-Encoding: gzip",
                                         "Content-Length: 15")) as server:
        with pytest.raises(NetworkError, match="invalid HTTP response"):
            await get_json(pool, server.url)


async def test_interim_100_continue_is_skipped(pool: HttpPool) -> None:
    async with RawServer(lambda _: b"HTTP/1.1 100 Continue\r\n\r\n" + json_reply({"ok": 1})
                         ) as server:
        assert await get_json(pool, server.url) == {"ok": 1}


async def test_a_reply_that_is_not_http_is_a_network_error(pool: HttpPool) -> None:
    async with RawServer(lambda _: b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as server:
        with pytest.raises(NetworkError, match="invalid HTTP response"):
            await get_json(pool, server.url)


async def test_body_cut_short_is_a_network_error(pool: HttpPool) -> None:
    cut = reply(b'{"a": 1', "Content-Length: 100")
    async with RawServer(lambda _: cut, close_after=True) as server:
        with pytest.raises(NetworkError, match="cut short"):
            await get_json(pool, server.url)


async def test_no_answer_on_a_new_connection_is_a_network_error(pool: HttpPool) -> None:
    async with RawServer(lambda _: None) as server:
        with pytest.raises(NetworkError, match="server disconnected"):
            await get_json(pool, server.url)
    assert len(server.requests) == 1  # not re-sent: the connection was new


async def test_refused_connection_names_the_host() -> None:
    async with RawServer(lambda _: None) as server:
        url = server.url
    async with HttpPool() as pool:
        with pytest.raises(NetworkError, match=r"cannot connect \(127\.0\.0\.1\)"):
            await get_json(pool, url)


async def test_a_body_far_over_the_read_ahead_arrives_whole(pool: HttpPool) -> None:
    big = json.dumps({"text": "x" * (3 << 20)}).encode()  # 3 MiB: reading pauses and resumes
    async with RawServer(lambda _: reply(big, f"Content-Length: {len(big)}")) as server:
        assert len((await get_json(pool, server.url))["text"]) == 3 << 20
        assert await get_json(pool, server.url) is not None  # and the connection is pooled
    assert server.connections == 1


async def test_a_stream_read_chunk_by_chunk_pauses_nothing_it_needs(pool: HttpPool) -> None:
    events = [f"data: {json.dumps({'i': i})}\n\n".encode() for i in range(200)]
    async with (RawServer(lambda _: reply(chunked(*events), "Transfer-Encoding: chunked",
                                          "Content-Type: text/event-stream")) as server,
                pool.post(server.url, BODY, headers={}, timeouts=T) as resp):
        got = [json.loads(e.data)["i"] async for e, _ in resp.iter_sse()]
    assert got == list(range(200))


async def test_header_with_a_line_break_is_refused_before_sending(pool: HttpPool) -> None:
    async with RawServer(lambda _: json_reply({})) as server:
        with pytest.raises(NetworkError, match="CR or LF"):
            async with pool.post(server.url, BODY, headers={"X-A": "b\r\nX-Injected: 1"},
                                 timeouts=T):
                pass
    assert server.requests == []


async def test_redirect_from_the_wire_client_is_not_followed(pool: HttpPool) -> None:
    async with RawServer(lambda _: reply(b"", "Location: http://elsewhere.example/",
                                         "Content-Length: 0", status="307 Temporary Redirect")
                         ) as server:
        with pytest.raises(ServerError, match=r"redirect to elsewhere\.example not followed"):
            await get_json(pool, server.url)


@pytest.mark.parametrize("how", ["trust_env", "session"])
async def test_aiohttp_still_serves_proxies_from_the_environment_and_a_callers_session(
        how: str) -> None:
    async with RawServer(lambda _: json_reply({"via": "aiohttp"})) as server:
        if how == "trust_env":
            async with HttpPool(trust_env=True) as pool:
                assert await get_json(pool, server.url) == {"via": "aiohttp"}
        else:
            async with aiohttp.ClientSession() as session:
                pool = HttpPool(session=session)
                assert await get_json(pool, server.url) == {"via": "aiohttp"}
                await pool.aclose()
    assert b"aiohttp" in server.requests[0]  # aiohttp's User-Agent: it took the request


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl's command line) and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


async def test_https_with_a_trusted_certificate(certificate: tuple[Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # what the default context trusts
    async with RawServer(lambda _: json_reply({"tls": True}), tls=server_tls(certificate)
                         ) as server, HttpPool() as pool:
        assert await get_json(pool, server.url) == {"tls": True}
        assert await get_json(pool, server.url) == {"tls": True}
    assert server.connections == 1


async def test_https_with_an_untrusted_certificate_is_refused(
        certificate: tuple[Path, Path]) -> None:
    async with RawServer(lambda _: json_reply({}), tls=server_tls(certificate)) as server, \
            HttpPool() as pool:
        with pytest.raises(NetworkError, match="cannot connect"):
            await get_json(pool, server.url)
    assert server.requests == []


# -- both clients: the same failures, the same router errors ---------------------------------

CLIENTS = pytest.mark.parametrize("trust_env", [False, True], ids=["wire", "aiohttp"])


@CLIENTS
async def test_both_clients_cut_body_is_a_network_error(trust_env: bool) -> None:
    cut = reply(b'{"a": 1', "Content-Length: 100")
    async with RawServer(lambda _: cut, close_after=True) as server, \
            HttpPool(trust_env=trust_env) as pool:
        with pytest.raises(NetworkError, match="cut short"):
            await get_json(pool, server.url)


@CLIENTS
async def test_both_clients_no_answer_is_server_disconnected(trust_env: bool) -> None:
    async with RawServer(lambda _: None) as server, HttpPool(trust_env=trust_env) as pool:
        with pytest.raises(NetworkError, match="server disconnected"):
            await get_json(pool, server.url)


@CLIENTS
async def test_both_clients_refused_is_cannot_connect(trust_env: bool) -> None:
    async with RawServer(lambda _: None) as server:
        url = server.url
    async with HttpPool(trust_env=trust_env) as pool:
        with pytest.raises(NetworkError, match="cannot connect"):
            await get_json(pool, url)


@CLIENTS
async def test_both_clients_resend_once_when_a_pooled_connection_was_closed(
        trust_env: bool) -> None:
    answered: set[asyncio.Task[Any]] = set()  # the tasks themselves: an id() can be reused

    def once_per_connection(request: bytes) -> bytes | None:
        # RawServer serves one connection per task: the second request on it gets nothing.
        task = asyncio.current_task()
        assert task is not None
        if task in answered:
            return None
        answered.add(task)
        return json_reply({"n": len(answered)})

    async with RawServer(once_per_connection) as server, \
            HttpPool(trust_env=trust_env) as pool:
        assert await get_json(pool, server.url) == {"n": 1}
        assert await get_json(pool, server.url) == {"n": 2}  # dropped, then re-sent
    assert len(server.requests) == 3 and server.connections == 2
