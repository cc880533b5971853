"""``router chat``: one prompt, the answer streamed to the terminal, attempts on request."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from router.engine.router import Router
from router.errors import RouteFailed, StreamInterruptedError
from router.types import AttemptRecord


def format_record(r: AttemptRecord) -> str:
    """One attempt as a short line for humans."""
    if r.outcome == "skipped":
        return f"  -  {r.target}: skipped ({r.reason}: {r.detail})"
    if r.outcome == "ok":
        ttft = f", first token {r.ttft_ms:.0f}ms" if r.ttft_ms is not None else ""
        cost = "" if r.cost_usd is None else f", ${r.cost_usd:.6f}" if r.cost_usd else ", $0"
        return (f"  #{r.attempt} {r.target}: ok in {r.latency_ms or 0:.0f}ms{ttft}, "
                f"{r.input_tokens} in / {r.output_tokens} out tokens{cost}")
    status = f" HTTP {r.status}" if r.status else ""
    retry = ""
    if r.retry_in_ms is not None:
        src = "Retry-After" if r.retry_after_used else "backoff"
        retry = f" -> retry in {r.retry_in_ms:.0f}ms ({src})"
    ec = r.error_class.value if r.error_class is not None else "error"
    return f"  #{r.attempt} {r.target}: {ec}{status} after {r.latency_ms or 0:.0f}ms{retry}"


async def run_chat(path: Path, args: argparse.Namespace) -> int:
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    params: dict[str, Any] = {}
    if args.max_tokens:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    async with Router.from_yaml(path) as router:
        try:
            if args.no_stream:
                resp = await router.chat(args.model, messages, **params)
                print(resp.text)
                attempts = resp.attempts
            else:
                attempts = []
                async for chunk in router.stream(args.model, messages, **params):
                    sys.stdout.write(chunk.delta)
                    sys.stdout.flush()
                    if chunk.attempts is not None:
                        attempts = chunk.attempts
                sys.stdout.write("\n")
        except StreamInterruptedError as e:
            sys.stdout.write("\n")  # end the partial answer's line; the reason goes to stderr
            print(f"router: {e}", file=sys.stderr)
            return 1
        except RouteFailed as e:
            print(f"router: {e}", file=sys.stderr)
            if args.verbose:
                for r in e.attempts:
                    print(format_record(r), file=sys.stderr)
            return 1
    if args.verbose:
        print("attempts:", file=sys.stderr)
        for r in attempts:
            print(format_record(r), file=sys.stderr)
    return 0
