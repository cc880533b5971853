"""``router demo``: the engine at work on scripted ``fake`` providers, with no keys and no network.

It shows, live, a retry that honours Retry-After, a fallback after retries run out, a circuit
breaker that opens and is then skipped, streamed answers, and a stream cut mid-answer that
is recovered on the next target, each with its attempt log.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from router.cli.chat import format_record
from router.config.validate import validate_text
from router.engine.router import Router
from router.types import AttemptRecord

DEMO_ROUTES = """\
version: 1
defaults:
  timeout: {connect: 1s, first_token: 2s, total: 5s}
  retry: {attempts: 2, initial: 200ms, max: 1s}
  breaker: {failures: 2, cooldown: 60s}
providers:
  primary:                      # rate-limited once, then fine
    kind: fake
    latency: 150ms
    script: [{outcome: rate_limit, retry_after: 400ms}, ok]
    text: "Retried after the rate limit and answered: {target}."
  flaky:                        # always failing with HTTP 500
    kind: fake
    latency: 100ms
    script: [server]
  backup:
    kind: fake
    latency: 200ms
    text: "The backup answered: {target}. Fallback works."
models:
  assistant: [primary:demo-large]
  resilient:
    chain: [flaky:demo-large, backup:demo-small]
    deadline: 20s
"""

WIRE_ROUTES = """\
version: 1
defaults:
  timeout: {connect: 1s, first_token: 3s, total: 5s}
  retry: {attempts: 1}
providers:                      # loopback stand-ins speaking each provider's real format
  azure:  {kind: azure-openai, base_url: "${UPSTREAM}/azure", api_key: "${DEMO_KEY:-demo}"}
  openai: {kind: openai, base_url: "${UPSTREAM}/openai/v1", api_key: "${DEMO_KEY:-demo}"}
  claude: {kind: anthropic, base_url: "${UPSTREAM}/anthropic", api_key: "${DEMO_KEY:-demo}"}
  gemini:
    kind: google
    base_url: "${UPSTREAM}/google"
    api_key: "${DEMO_KEY:-demo}"
    retry: {attempts: 2}
  local:  {kind: ollama, base_url: "${UPSTREAM}/ollama"}
  vllm:   {kind: openai-compatible, base_url: "${UPSTREAM}/vllm/v1"}
models:
  everywhere:
    chain:
      - azure:gpt-4o-mini
      - openai:gpt-4o-mini
      - claude:claude-haiku-4-5
      - gemini:gemini-2.5-flash
    on: {content_policy: fallback}    # a content filter fails by default; this route goes on
  local: [local:llama3.2]
  story:                          # a stream cut mid-answer is replayed on the next target
    chain: [vllm:story-model, local:storyteller]
    stream: {recover: replay}
"""

_WIRE_SCENES = [
    ("4. Real wire formats, offline: Azure's content filter (this route falls back on it), "
     "OpenAI's 500, Anthropic's 529 and Gemini's 429 with a RetryInfo delay, each "
     "classified, until Gemini answers.",
     "everywhere", False),
    ("5. Ollama streams NDJSON; the answer arrives piece by piece.", "local", True),
    ("6. A stream cut mid-answer: vLLM drops the connection after 8 words. The router asks "
     "the next target, reads its answer silently until it has caught up, and streams on: one "
     "answer, nothing repeated.", "story", True),
]

_SCENES = [
    ("1. A rate limit with Retry-After: the router waits and retries the same target.",
     "assistant", False),
    ("2. A target that keeps failing with 500: retried, then the chain falls back.",
     "resilient", False),
    ("3. Two failures in a row opened flaky's circuit breaker: it is skipped, not called.",
     "resilient", True),
]


def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    name = event.get("event")
    target = event.get("target", "")
    if name == "attempt_failed":
        status = f" HTTP {event['status']}" if event.get("status") else ""
        return f"    x {target}: {event.get('error_class')}{status}"
    if name == "retry_scheduled":
        how = "Retry-After" if event.get("retry_after_used") else "backoff with jitter"
        return f"      retry in {event.get('retry_in_ms', 0):.0f}ms ({how})"
    if name == "target_skipped":
        return f"    - {target}: skipped ({event.get('reason')})"
    if name == "breaker_opened":
        return f"    ! circuit breaker of {target} opened"
    if name == "attempt_ok":
        return f"    ok {target} in {event.get('latency_ms', 0):.0f}ms"
    return ""


def _live_log() -> None:
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[_render]))
    handler.addFilter(lambda rec: bool(_render(None, "", rec.msg)) if isinstance(
        rec.msg, dict) else False)
    std = logging.getLogger("router")
    std.handlers[:] = [handler]
    std.setLevel(logging.INFO)
    std.propagate = False


async def _play(router: Router, scenes: list[tuple[str, str, bool]], pause: float) -> None:
    for title, model, stream in scenes:
        print(f"\n{title}\n  router.{'stream' if stream else 'chat'}({model!r}, ...)")
        await asyncio.sleep(pause)
        messages = [{"role": "user", "content": "Say hello."}]
        if stream:
            text, attempts, pieces = "", list[AttemptRecord](), 0
            async for chunk in router.stream(model, messages):
                text += chunk.delta
                pieces += bool(chunk.delta)
                attempts = chunk.attempts or attempts
            print(f"  answer ({pieces} streamed pieces): {text}")
        else:
            resp = await router.chat(model, messages)
            text, attempts = resp.text, resp.attempts
            print(f"  answer: {text}")
        print("  attempt log:")
        for rec in attempts:
            print("  " + format_record(rec))


async def run_demo(*, fast: bool = False) -> int:
    """Play the demo scenes; returns the exit code."""
    from router.cli import _demo_upstreams

    _live_log()
    pause = 0.0 if fast else 0.6
    print("router demo: fake providers, no keys, no network. The route file:\n")
    print("    " + DEMO_ROUTES.replace("\n", "\n    ").rstrip())
    async with Router.from_result(validate_text(DEMO_ROUTES, "demo-routes.yaml", env={})) as r:
        await _play(r, _SCENES, pause)
    runner, url = await _demo_upstreams.start()
    try:
        print("\nNext, the provider modules themselves, against loopback servers on " + url)
        result = validate_text(WIRE_ROUTES, "demo-wire.yaml", env={"UPSTREAM": url})
        async with Router.from_result(result) as r:
            await _play(r, _WIRE_SCENES, pause)
    finally:
        await runner.cleanup()
    print("\nTry it on your own file: router validate routes.example.yaml; "
          "router dry-run routes.example.yaml --model fast --simulate "
          "openai:gpt-4o-mini=rate_limit")
    return 0
