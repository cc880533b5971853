"""A loopback OpenAI-shaped server for the benches, run in its own process.

    python bench/_server.py [--chunks 50]

It listens on 127.0.0.1, port 0, prints ``PORT <n>`` on stdout (the parent reads it through
the pipe) and serves until its stdin closes, so it never outlives the bench that started it.

It is a bare ``asyncio.Protocol`` speaking just enough HTTP/1.1 (keep-alive, Content-Length
request bodies) with every reply pre-serialized: its CPU per request is a few microseconds, far
below the client's, so a bench measures the client. Paths:

- ``POST /v1/chat/completions``: 200, a ``chat.completion`` JSON body; when the request body
  says ``"stream":true``, an SSE body of ``--chunks`` content chunks, a finish chunk, a usage
  chunk and ``data: [DONE]`` (the whole body in one write).
- ``POST /fail/v1/chat/completions``: 500 with OpenAI's ``server_error`` body.
- anything else: 404.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from _child import until_stdin_closes

_MODEL = "gpt-4o-mini-2024-07-18"
_USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
          "prompt_tokens_details": {"cached_tokens": 0},
          "completion_tokens_details": {"reasoning_tokens": 0}}


def _response(status: str, ctype: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "x-request-id: req_bench\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def completion_body() -> bytes:
    """A ``chat.completion`` as OpenAI sends it."""
    return _json({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
        "model": _MODEL,
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello there!",
                                 "refusal": None, "annotations": []}}],
        "usage": _USAGE, "service_tier": "default", "system_fingerprint": "fp_bench",
    })


def _chunk(delta: dict[str, Any] | None, finish: str | None = None,
           usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": _MODEL, "system_fingerprint": "fp_bench", "choices": [], "usage": usage}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                            "finish_reason": finish}]
    return b"data: " + _json(body) + b"\n\n"


def stream_body(chunks: int) -> bytes:
    """``chunks`` content events as OpenAI streams them with ``include_usage``."""
    frames = [_chunk({"role": "assistant", "content": ""})]
    frames += [_chunk({"content": f"tok{i} "}) for i in range(chunks)]
    frames.append(_chunk({}, finish="stop"))
    frames.append(_chunk(None, usage=_USAGE))
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


def error_body() -> bytes:
    return _json({"error": {"message": "The server had an error while processing your request.",
                            "type": "server_error", "param": None, "code": None}})


class _Replies:
    """Every answer, serialized once."""

    def __init__(self, chunks: int) -> None:
        self.ok = _response("200 OK", "application/json", completion_body())
        self.stream = _response("200 OK", "text/event-stream", stream_body(chunks))
        self.fail = _response("500 Internal Server Error", "application/json", error_body())
        self.missing = _response("404 Not Found", "text/plain", b"not found")

    def pick(self, path: bytes, body: bytes) -> bytes:
        if path == b"/v1/chat/completions":
            return self.stream if b'"stream":true' in body else self.ok
        if path == b"/fail/v1/chat/completions":
            return self.fail
        return self.missing


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests may arrive in pieces or back to back."""

    def __init__(self, replies: _Replies) -> None:
        self._replies = replies
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while (reply := self._next_request()) is not None:
            assert self._transport is not None
            self._transport.write(reply)

    def _next_request(self) -> bytes | None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self._buf[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop >= 0 else None])
        total = end + 4 + length
        if len(self._buf) < total:
            return None
        body = bytes(self._buf[end + 4:total])
        del self._buf[:total]
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        path = request_line[1] if len(request_line) > 1 else b""
        return self._replies.pick(path, body)


async def serve(chunks: int) -> None:
    loop = asyncio.get_running_loop()
    replies = _Replies(chunks)
    server = await loop.create_server(lambda: _Connection(replies), "127.0.0.1", 0,
                                      backlog=1024)
    async with server:
        await until_stdin_closes(server.sockets[0].getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per stream")
    args = parser.parse_args()
    asyncio.run(serve(args.chunks))


if __name__ == "__main__":
    main()
