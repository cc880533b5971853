"""A loopback server speaking OpenAI's Chat Completions wire: real status codes, headers,
error bodies and SSE bytes, scripted per request.

    async with OpenAIServer() as server:          # 127.0.0.1, port 0
        server.enqueue(json_reply(completion("hi")), error_reply("rate_limit_exceeded"))
        ...  # point a provider at server.base_url ("http://127.0.0.1:<port>/v1")
        server.requests[0].json["max_completion_tokens"]
        server.open_connections                  # sockets open right now

It is the scripted server of ``tests/servers/base.py`` (queues, recorded requests, connection
counting, misbehaviours) with OpenAI's framing: ``events`` are ``data: <json>`` SSE events
followed by ``data: [DONE]`` when ``done``. Replies are taken from a FIFO queue per path; when
it is empty ``server.default`` answers (a plain completion).

Opt-in request validation: ``OpenAIServer(validator=fn)`` calls ``fn(RecordedRequest)`` on every
request; a non-empty list of problems is answered as the real API answers a bad body (a 400
``invalid_request_error`` naming them, see ``_rejection``) before any scripted reply, and kept
in ``server.problems``. Validators live in ``tests/wire_validators.py``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from tests.servers.base import (
    RecordedRequest,
    Reply,
    Script,
    ScriptedServer,
    json_reply,
    redirect_reply,
    stream_reply,
)

__all__ = ["CHAT_PATH", "ERRORS", "MODEL", "OpenAIServer", "RecordedRequest", "Reply", "Script",
           "Validator", "broken_reply", "chunk", "completion", "diverged", "error_body",
           "error_reply", "json_reply", "redirect_reply", "sse_frame", "stream_reply",
           "text_events", "tool_call", "tool_call_events", "usage"]

CHAT_PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini-2024-07-18"

#: Why the real API would refuse a request ([] when it would accept it).
Validator = Callable[[RecordedRequest], list[str]]


class OpenAIServer(ScriptedServer):
    """The scripted server at OpenAI's paths (see the module docstring)."""

    def __init__(self, *, seed: int = 0, validator: Validator | None = None) -> None:
        super().__init__(seed=seed)
        self.validator = validator
        self.problems: list[list[str]] = []  # per refused request (only with a validator)
        self.default = json_reply(completion("Hello!"))
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Script, path: str | None = CHAT_PATH) -> None:
        """Answer the next requests to ``path`` with these replies, in order."""
        super().enqueue(*replies, path=path)

    def reply_for(self, recorded: RecordedRequest) -> Reply:
        problems = self.validator(recorded) if self.validator is not None else []
        if problems:  # refused before any scripted reply, which stays queued
            self.problems.append(problems)
            return self._rejection(problems)
        return self.next_reply(recorded)

    def reply_headers(self, reply: Reply) -> dict[str, str]:
        return {"x-request-id": f"req_{next(self._ids):06d}", "openai-processing-ms": "7",
                **reply.headers}

    def frame(self, event: Any) -> bytes:
        return sse_frame(event)

    def trailer(self, reply: Reply) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    def _rejection(self, problems: list[str]) -> Reply:
        """The answer to a request the validator refused: OpenAI's 400 for a bad body."""
        return json_reply({"error": {"message": "; ".join(problems),
                                     "type": "invalid_request_error", "param": None,
                                     "code": None}}, status=400)


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


#: How a stream breaks: the connection reset, the server going silent (a stall: the client's
#: idle timeout ends it), an error event (no [DONE]), or the body ending without finish_reason
#: or [DONE] (truncated).
Break = Literal["reset", "stall", "error", "truncate"]


def broken_reply(events: Sequence[Any], *, after: int, how: Break = "reset") -> Reply:
    """``events`` (a streamed answer) broken after its first ``after`` events."""
    if how == "reset":
        return Reply(events=events, reset_after=after)
    if how == "stall":
        return Reply(events=events, stall_after=after)
    if how == "error":
        return Reply(events=[*events[:after], error_body("server_error")], done=False)
    return Reply(events=events[:after], done=False)


def diverged(parts: Sequence[str], at: int, *, mark: str = "#") -> list[str]:
    """``parts`` with the character at offset ``at`` of their text replaced by ``mark``."""
    out, pos = [], 0
    for p in parts:
        if pos <= at < pos + len(p):
            p = p[:at - pos] + mark + p[at - pos + 1:]
        out.append(p)
        pos += len(p)
    return out
