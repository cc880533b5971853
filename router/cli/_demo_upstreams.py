"""Loopback stand-ins for real providers, for ``router demo``: each answers on 127.0.0.1 in its
provider's documented wire format (status codes, error bodies, JSON, SSE, NDJSON), so the demo
shows the real provider modules at work with no keys and no network.

Scripted per path: Azure refuses with a content-filter 400, OpenAI fails with a 500, Anthropic
is overloaded (529), Gemini rate-limits once with a RetryInfo delay and then answers; Ollama
streams NDJSON. A vLLM-like OpenAI-compatible server streams a story and drops the connection
halfway; Ollama's model ``storyteller`` tells the same story whole.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from aiohttp import web

#: The story both story tellers tell, word by word.
STORY = ["Once", "upon", "a", "time,", "a", "stream", "broke", "halfway,", "and", "the",
         "router", "picked", "it", "up", "where", "it", "stopped."]
_CUT_AFTER = 8  # words the cut stream sends before its connection drops


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers or {})


async def _azure(_request: web.Request) -> web.Response:
    return _json(400, {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                   "content management policy.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "violence": {"filtered": True, "severity": "medium"}}}}})


async def _openai(_request: web.Request) -> web.Response:
    return _json(500, {"error": {"message": "The server had an error while processing your "
                                 "request. Sorry about that!", "type": "server_error",
                                 "param": None, "code": None}})


async def _anthropic(_request: web.Request) -> web.Response:
    return _json(529, {"type": "error", "error": {"type": "overloaded_error",
                                                  "message": "Overloaded"}},
                 {"request-id": "req_demo"})


async def _google(request: web.Request) -> web.StreamResponse:
    hits: Counter[str] = request.app["hits"]
    hits["google"] += 1
    if hits["google"] % 2 == 1:
        return _json(429, {"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "Resource has been exhausted (e.g. check quota).",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                         "retryDelay": "0.4s"}]}})
    body = await request.json()
    question = body["contents"][-1]["parts"][0].get("text", "")
    return _json(200, {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": f"Gemini here, after three other providers failed. You asked: {question}"}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 14,
                          "totalTokenCount": 26},
        "modelVersion": request.match_info["model"]})


async def _ollama(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    words = STORY if body["model"] == "storyteller" else [
        "Ollama", "streaming", "NDJSON,", "one", "line", "per", "piece."]
    for i, w in enumerate(words):
        line = {"model": body["model"], "created_at": "2026-11-25T00:00:00Z",
                "message": {"role": "assistant", "content": w if i == 0 else " " + w},
                "done": False}
        await resp.write(json.dumps(line).encode() + b"\n")
    done = {"model": body["model"], "created_at": "2026-11-25T00:00:00Z",
            "message": {"role": "assistant", "content": ""}, "done": True,
            "done_reason": "stop", "prompt_eval_count": 9, "eval_count": len(words)}
    await resp.write(json.dumps(done).encode() + b"\n")
    await resp.write_eof()
    return resp


async def _cut(request: web.Request) -> web.StreamResponse:
    """An OpenAI-compatible stream that breaks mid-answer: no finish_reason, no [DONE]."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i, w in enumerate(STORY[:_CUT_AFTER]):
        chunk = {"id": "chatcmpl-demo", "object": "chat.completion.chunk",
                 "created": 1_764_000_000, "model": "story-model", "choices": [
                     {"index": 0, "delta": {"content": w if i == 0 else " " + w},
                      "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    if request.transport is not None:
        request.transport.abort()  # the connection drops mid-stream
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app["hits"] = Counter()
    app.router.add_post("/azure/openai/deployments/{deployment}/chat/completions", _azure)
    app.router.add_post("/openai/v1/chat/completions", _openai)
    app.router.add_post("/anthropic/v1/messages", _anthropic)
    app.router.add_post("/google/v1beta/models/{model}:generateContent", _google)
    app.router.add_post("/ollama/api/chat", _ollama)
    app.router.add_post("/vllm/v1/chat/completions", _cut)
    return app


async def start() -> tuple[web.AppRunner, str]:
    """Start the stand-ins on 127.0.0.1 (a free port); returns the runner and the base URL."""
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"
