"""A loopback server speaking OpenAI's Chat Completions wire: real status codes, headers,
error bodies and SSE bytes, scripted per request.

    async with OpenAIServer() as server:          # 127.0.0.1, port 0
        server.enqueue(json_reply(completion("hi")), error_reply("rate_limit_exceeded"))
        ...  # point a provider at server.base_url ("http://127.0.0.1:<port>/v1")
        server.requests[0].json["max_completion_tokens"]
        server.open_connections                  # sockets open right now

Replies are taken from a FIFO queue per path; when it is empty ``server.default`` answers
(a plain completion). A queue entry may also be a callable ``(RecordedRequest) -> Reply``.

Opt-in request validation: ``OpenAIServer(validator=fn)`` calls ``fn(RecordedRequest)`` on every
request; a non-empty list of problems is answered as the real API answers a bad body (a 400
``invalid_request_error`` naming them, see ``_rejection``) before any scripted reply, and kept
in ``server.problems``. Validators live in ``tests/wire_validators.py``.
Every wait inside the server (delays, stalls) ends as soon as the server closes, so a test
never waits on a handler.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

CHAT_PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini-2024-07-18"


@dataclass
class Reply:
    """One scripted answer.

    ``json`` → a JSON body; ``events`` → an SSE body (dict: ``data: <json>``, str: ``data: <str>``,
    bytes: written as is), followed by ``data: [DONE]`` when ``done``; ``raw`` → bytes as is.
    SSE bytes go out in random pieces of ``piece_sizes`` bytes. ``delay`` holds the headers
    back; ``first_byte_delay`` holds the body back after the headers. After ``stall_after``
    events the server goes silent (until it closes); after ``reset_after`` events it aborts
    the connection.
    """

    status: int = 200
    json: Any = None
    events: Sequence[Any] | None = None
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    done: bool = True
    piece_sizes: tuple[int, int] = (1, 9)
    delay: float = 0.0
    first_byte_delay: float = 0.0
    stall_after: int | None = None
    reset_after: int | None = None
    content_type: str | None = None


@dataclass
class RecordedRequest:
    """What the server received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    peer: tuple[str, int] | None = None  # client address: one per connection

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Script = Reply | Callable[[RecordedRequest], Reply]
#: Why the real API would refuse a request ([] when it would accept it).
Validator = Callable[[RecordedRequest], list[str]]


class OpenAIServer:
    """The scripted server; an async context manager (see the module docstring)."""

    def __init__(self, *, seed: int = 0, validator: Validator | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.validator = validator
        self.problems: list[list[str]] = []  # per refused request (only with a validator)
        self.default: Script = json_reply(completion("Hello!"))
        self._queues: dict[str, collections.deque[Script]] = collections.defaultdict(
            collections.deque)
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> OpenAIServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a handler stops when its client goes, so open_connections is true
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None,
                                     handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> OpenAIServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- scripting and inspection ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Script, path: str = CHAT_PATH) -> None:
        """Answer the next requests to ``path`` with these replies, in order."""
        self._queues[path].extend(replies)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        if self._runner is None or self._runner.server is None:
            return 0
        return len(self._runner.server.connections)

    async def wait_connections(self, count: int, timeout: float = 2.0) -> int:
        """Wait (up to ``timeout``) until ``open_connections <= count``; return the last value."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.open_connections > count and loop.time() < end:
            await asyncio.sleep(0.005)
        return self.open_connections

    # -- serving ------------------------------------------------------------------------

    async def _pause(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: forever), or until the server closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        recorded = RecordedRequest(request.method, request.path, dict(request.headers),
                                   await request.read(), tuple(peer) if peer else None)
        self.requests.append(recorded)
        problems = self.validator(recorded) if self.validator is not None else []
        if problems:  # refused before any scripted reply, which stays queued
            self.problems.append(problems)
            reply = self._rejection(problems)
        else:
            queue = self._queues.get(request.path)
            script = queue.popleft() if queue else self.default
            reply = script(recorded) if callable(script) else script
        headers = {"x-request-id": f"req_{next(self._ids):06d}", "openai-processing-ms": "7",
                   **reply.headers}
        if reply.delay:
            await self._pause(reply.delay)
        if reply.events is not None:
            return await self._stream(request, reply, headers)
        if reply.json is not None:
            body, ctype = json.dumps(reply.json).encode(), "application/json"
        else:
            body, ctype = reply.raw or b"", "text/plain"
        resp = web.StreamResponse(status=reply.status, headers=headers)
        resp.content_type = reply.content_type or ctype
        resp.content_length = len(body)
        await resp.prepare(request)
        if reply.first_byte_delay:
            await self._pause(reply.first_byte_delay)
        await resp.write(body)
        await resp.write_eof()
        return resp

    def _rejection(self, problems: list[str]) -> Reply:
        """The answer to a request the validator refused: OpenAI's 400 for a bad body."""
        return json_reply({"error": {"message": "; ".join(problems),
                                     "type": "invalid_request_error", "param": None,
                                     "code": None}}, status=400)

    async def _stream(self, request: web.Request, reply: Reply,
                      headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=reply.status, headers=headers)
        resp.content_type = reply.content_type or "text/event-stream"
        await resp.prepare(request)
        if reply.first_byte_delay:
            await self._pause(reply.first_byte_delay)
        frames = [sse_frame(e) for e in reply.events or ()]
        if reply.done:
            frames.append(b"data: [DONE]\n\n")
        try:
            for i, frame in enumerate(frames):
                if i == reply.stall_after:
                    await self._pause(None)
                    return resp
                if i == reply.reset_after:
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                for piece in self._split(frame, reply.piece_sizes):
                    await resp.write(piece)
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away; that is what some tests are about
        return resp

    def _split(self, data: bytes, sizes: tuple[int, int]) -> Iterable[bytes]:
        i = 0
        while i < len(data):
            n = self._rng.randint(*sizes)
            yield data[i:i + n]
            i += n


# --------------------------------------------------------------------------------------------
# Payload builders (the shapes of openai-python's ChatCompletion / ChatCompletionChunk)


def sse_frame(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


def usage(prompt: int = 12, completion_: int = 5, *, cached: int = 0,
          reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt, "completion_tokens": completion_,
        "total_tokens": prompt + completion_,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def tool_call(id_: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion(text: str | None = "Hello!", *, tool_calls: list[dict[str, Any]] | None = None,
               finish_reason: str = "stop", model: str = MODEL,
               usage_: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None,
                               "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test123", "object": "chat.completion", "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": usage_ if usage_ is not None else usage(),
        "service_tier": "default", "system_fingerprint": "fp_test",
    }


def chunk(delta: dict[str, Any] | None = None, *, finish_reason: str | None = None,
          usage_: dict[str, Any] | None = None, choices: bool = True,
          model: str = MODEL) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``choices=False`` gives the final usage-only chunk."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test123", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "service_tier": "default", "system_fingerprint": "fp_test",
        "choices": [], "usage": usage_,
    }
    if choices:
        body["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None,
                            "finish_reason": finish_reason}]
    return body


def text_events(parts: Sequence[str], *, finish_reason: str = "stop",
                usage_: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A streamed text answer as OpenAI sends it with ``include_usage``."""
    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": p}) for p in parts]
    events.append(chunk({}, finish_reason=finish_reason))
    events.append(chunk(choices=False, usage_=usage_ if usage_ is not None else usage()))
    return events


def tool_call_events(calls: Sequence[tuple[str, str, str]], *, fragment: int = 4,
                     usage_: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Parallel tool calls streamed as OpenAI does: per call, a first delta with index, id,
    type and name (empty arguments), then argument fragments keyed by index only."""
    events = [chunk({"role": "assistant", "content": None})]
    for index, (id_, name, arguments) in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": index, "id": id_, "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        for i in range(0, len(arguments), fragment):
            events.append(chunk({"tool_calls": [
                {"index": index, "function": {"arguments": arguments[i:i + fragment]}}]}))
    events.append(chunk({}, finish_reason="tool_calls"))
    events.append(chunk(choices=False, usage_=usage_ if usage_ is not None else usage()))
    return events


def json_reply(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
               ) -> Reply:
    return Reply(status=status, json=body, headers=dict(headers or {}))


def stream_reply(events: Sequence[Any], **kw: Any) -> Reply:
    return Reply(events=events, **kw)


#: Real OpenAI error bodies: name -> (status, message, type, code, param).
ERRORS: dict[str, tuple[int, str, str, str | None, str | None]] = {
    "invalid_request": (400, "Unrecognized request argument supplied: frobnicate",
                        "invalid_request_error", None, None),
    "context_length_exceeded": (
        400, "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130512 tokens. Please reduce the length of the messages.",
        "invalid_request_error", "context_length_exceeded", "messages"),
    "content_policy_violation": (
        400, "Your request was rejected as a result of our safety system.",
        "invalid_request_error", "content_policy_violation", None),
    "invalid_api_key": (
        401, "Incorrect API key provided: sk-test-******************1234. You can find your "
        "API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error", "invalid_api_key", None),
    "unsupported_country_region_territory": (
        403, "Country, region, or territory not supported", "request_forbidden",
        "unsupported_country_region_territory", None),
    "model_not_found": (
        404, "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error", "model_not_found", None),
    "rate_limit_exceeded": (
        429, "Rate limit reached for gpt-4o-mini in organization org-test on tokens per min "
        "(TPM): Limit 200000, Used 199500, Requested 1200. Please try again in 210ms. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        "tokens", "rate_limit_exceeded", None),
    "insufficient_quota": (
        429, "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota", "insufficient_quota", None),
    "server_error": (500, "The server had an error while processing your request. Sorry about "
                     "that!", "server_error", None, None),
    "overloaded": (503, "The engine is currently overloaded, please try again later.",
                   "server_error", None, None),
}


def error_body(name: str) -> dict[str, Any]:
    _, message, type_, code, param = ERRORS[name]
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_reply(name: str, *, headers: Mapping[str, str] | None = None) -> Reply:
    """The real status and body of OpenAI error ``name`` (a key of ERRORS)."""
    return json_reply(error_body(name), status=ERRORS[name][0], headers=headers)
