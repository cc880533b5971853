"""A loopback server speaking Ollama's ``/api/chat``: real status codes, ``{"error": "..."}``
bodies and NDJSON streams, scripted per request.

    async with OllamaServer() as server:          # 127.0.0.1, port 0
        server.enqueue(json_reply(chat_response("hi")), error_reply("model_not_found"))
        ...  # point a provider at server.base_url ("http://127.0.0.1:<port>", the server root)
        server.requests[0].json["options"]["num_predict"]

It is the scripted server of ``tests/servers/base.py`` (same ``Reply`` / ``enqueue`` /
``open_connections`` / misbehaviours), except that a streamed reply's ``events`` are NDJSON
lines: a dict is written as one JSON line, bytes as they are (for torn or hand-made lines).
With a ``validator`` (opt-in, as there) a refused request gets Ollama's own 400,
``{"error": "<why>"}``, as its handlers answer a body they cannot bind.
Shapes follow ollama's ``api/types.go`` (``ChatResponse`` with ``Metrics``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tests.servers.openai import OpenAIServer, Reply, Script, Validator, redirect_reply

__all__ = ["ERRORS", "OllamaServer", "Reply", "chat_response", "delta", "done_line",
           "error_body", "error_reply", "json_reply", "metrics", "ndjson_line", "redirect_reply",
           "stream_reply",
           "text_lines", "tool_call"]

CHAT_PATH = "/api/chat"
MODEL = "llama3.2"
CREATED_AT = "2024-12-06T00:48:09.983619Z"
NDJSON = "application/x-ndjson"
JSON = "application/json; charset=utf-8"


class OllamaServer(OpenAIServer):
    """The scripted server answering like ``ollama serve`` (see the module docstring)."""

    stream_content_type = NDJSON

    def __init__(self, *, seed: int = 0, validator: Validator | None = None) -> None:
        super().__init__(seed=seed, validator=validator)
        self.default = json_reply(chat_response("Hello!"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Script, path: str | None = CHAT_PATH) -> None:
        """Answer the next requests to ``path`` (default ``/api/chat``) with these replies."""
        super().enqueue(*replies, path=path)

    def frame(self, event: Any) -> bytes:
        return ndjson_line(event)

    def trailer(self, reply: Reply) -> list[bytes]:
        return []  # the last line says done: true; nothing follows it

    def _rejection(self, problems: list[str]) -> Reply:
        """Ollama's 400 for a body it cannot bind: ``{"error": "..."}``."""
        return json_reply({"error": "; ".join(problems)}, status=400)


# --------------------------------------------------------------------------------------------
# Payload builders


def ndjson_line(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"  # as Go's json.Marshal


def metrics(prompt: int = 26, output: int = 12) -> dict[str, Any]:
    """The ``Metrics`` of a final line (durations in nanoseconds)."""
    return {"total_duration": 2254970291, "load_duration": 574751416,
            "prompt_eval_count": prompt, "prompt_eval_duration": 1502000000,
            "eval_count": output, "eval_duration": 175000000}


def tool_call(name: str, arguments: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    return {"function": {"index": index, "name": name, "arguments": dict(arguments)}}


def chat_response(text: str = "Hello!", *, done_reason: str | None = "stop",
                  tool_calls: list[dict[str, Any]] | None = None, thinking: str | None = None,
                  model: str = MODEL, prompt: int = 26, output: int = 12) -> dict[str, Any]:
    """A ``stream: false`` answer."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {"model": model, "created_at": CREATED_AT, "message": message}
    if done_reason is not None:
        body["done_reason"] = done_reason
    body["done"] = True
    body.update(metrics(prompt, output))
    return body


def delta(text: str = "", *, thinking: str | None = None,
          tool_calls: list[dict[str, Any]] | None = None, model: str = MODEL) -> dict[str, Any]:
    """One ``done: false`` line of a stream."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"model": model, "created_at": CREATED_AT, "message": message, "done": False}


def done_line(done_reason: str = "stop", *, prompt: int = 26, output: int = 12,
              model: str = MODEL) -> dict[str, Any]:
    """The last line of a stream: empty content, ``done: true``, the reason and the counts."""
    return {"model": model, "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ""},
            "done_reason": done_reason, "done": True, **metrics(prompt, output)}


def text_lines(parts: Sequence[str], *, done_reason: str = "stop", prompt: int = 26,
               output: int = 12) -> list[dict[str, Any]]:
    """A streamed text answer as Ollama sends it."""
    return [*(delta(p) for p in parts), done_line(done_reason, prompt=prompt, output=output)]


def json_reply(body: Any, *, status: int = 200) -> Reply:
    return Reply(status=status, json=body, content_type=JSON)


def stream_reply(lines: Sequence[Any], **kw: Any) -> Reply:
    return Reply(events=lines, **kw)


#: Real Ollama error bodies: name -> (status, message). Wordings from the server
#: (``handleScheduleError``, the scheduler's ErrMaxQueue, the runner's context checks).
ERRORS: dict[str, tuple[int, str]] = {
    "model_not_found": (404, 'model "llama9" not found, try pulling it first'),
    "model_not_found_quoted": (404, "model 'llama9' not found, try pulling it first"),
    "no_tools": (400, "registry.ollama.ai/library/gemma:2b does not support tools"),
    "bad_request": (400, "invalid message format"),
    "context_truncate_off": (400, '{"error":{"code":400,"message":"request (8889 tokens) '
                                  'exceeds the available context size (4096 tokens), try '
                                  'increasing it","type":"exceed_context_size_error",'
                                  '"n_prompt_tokens":8889,"n_ctx":4096}}'),
    "context_shift_off": (400, "the prompt is longer than the context length currently "
                               "available to the model"),
    "input_too_long": (500, "the input length exceeds the context length"),
    "runner_crashed": (500, "llama runner process has terminated: signal: killed"),
    "queue_full": (503, "server busy, please try again.  maximum pending requests exceeded"),
}


def error_body(name: str) -> dict[str, Any]:
    return {"error": ERRORS[name][1]}


def error_reply(name: str) -> Reply:
    """The real status and body of Ollama error ``name`` (a key of ERRORS)."""
    return json_reply(error_body(name), status=ERRORS[name][0])
