"""``router chat``: one prompt, the answer streamed to stdout; a summary, the attempts and the
log events on stderr, never in the middle of the answer."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from router.cli.chat_input import UsageError, read_attachment
from router.cli.console import HeldStream, Reporter
from router.cli.source import Source
from router.engine.router import Router
from router.errors import ConfigError, LlmError, RouteFailed
from router.obs import log
from router.types import AttemptRecord, ToolCall, Usage


@dataclass
class Answer:
    """What one chat call produced, streamed or not."""

    text: str
    target: str
    usage: Usage | None
    cost_usd: float | None
    attempts: list[AttemptRecord]
    finish_reason: str | None = None
    request_id: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    refusal: str | None = None  # the model's refusal, sent instead of (or beside) text

    def as_dict(self) -> dict[str, Any]:
        """The ``--format json`` object."""
        return {"text": self.text, "refusal": self.refusal, "target": self.target,
                "finish_reason": self.finish_reason,
                "usage": None if self.usage is None else dataclasses.asdict(self.usage),
                "cost_usd": self.cost_usd,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                               for c in self.tool_calls],
                "request_id": self.request_id,
                "attempts": [r.as_dict() for r in self.attempts]}


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


def summary(a: Answer) -> tuple[str, dict[str, Any]]:
    """The one-line summary after an answer, as text and as fields."""
    tried = [r for r in a.attempts if r.outcome != "skipped"]
    failed = sum(r.outcome == "error" for r in tried)
    skipped = len(a.attempts) - len(tried)
    usage = a.usage or Usage()
    cost = "cost unknown" if a.cost_usd is None else _dollars(a.cost_usd)
    extra = "".join([f", {failed} failed" if failed else "",
                     f", {skipped} skipped" if skipped else ""])
    n = len(tried)
    verb = "refused" if a.refusal and not a.text else "answered"
    text = (f"router: {verb} by {a.target} ({n} attempt{'s' if n != 1 else ''}{extra}), "
            f"tokens {usage.input_tokens} in / {usage.output_tokens} out, {cost}")
    fields = {"target": a.target, "refused": verb == "refused", "attempts": n,
              "failed": failed, "skipped": skipped,
              "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
              "cost_usd": a.cost_usd}
    return text, fields


def _dollars(usd: float) -> str:
    if 0 < usd < 0.0000005:
        return "<$0.000001"
    return "$" + (f"{usd:.6f}".rstrip("0").rstrip(".") or "0")


def _make_router(source: Source) -> Router:
    if source.path is None:
        return Router.from_env()
    return Router.from_yaml(source.path)


def _check_model(model: str | None, router: Router, source: Source) -> str:
    if model:
        return model
    aliases = sorted(router.plan.routes)
    providers = ", ".join(sorted(router.plan.providers)) or "none"
    if aliases:
        shown = ", ".join(aliases[:8]) + (", ..." if len(aliases) > 8 else "")
        raise UsageError(f"--model is required: an alias of {source.path} ({shown}), "
                         "or provider:model")
    raise UsageError("--model is required: provider:model or a model name (providers: "
                     f"{providers})")


def _messages(args: argparse.Namespace) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    attached = [read_attachment(path) for path in args.attach or ()]
    messages.append({"role": "user", "content": [{"type": "text", "text": args.prompt},
                                                 *attached] if attached else args.prompt})
    return messages


def _call_options(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.max_tokens:
        kw["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        kw["temperature"] = args.temperature
    if args.tags:
        kw["tags"] = args.tags
    return kw


async def _ask_whole(router: Router, model: str, args: argparse.Namespace) -> Answer:
    r = await router.chat(model, _messages(args), **_call_options(args))
    if args.format != "json":
        # A refusal sent instead of content is the model's answer: it goes where text would.
        print(r.text or r.refusal or "", flush=True)
    return Answer(r.text, r.target, r.usage, r.cost_usd, r.attempts, r.finish_reason,
                  r.request_id, list(r.tool_calls), r.refusal)


async def _ask_streamed(router: Router, model: str, args: argparse.Namespace,
                        held: HeldStream) -> Answer:
    parts: list[str] = []
    refused: list[str] = []
    last: Any = None
    started = done = False
    try:
        async for chunk in router.stream(model, _messages(args), **_call_options(args)):
            if not started:  # from here until the answer ends, stderr waits
                started = True
                held.hold()
            if chunk.delta:
                sys.stdout.write(chunk.delta)
                sys.stdout.flush()
                parts.append(chunk.delta)
            if chunk.refusal:
                if not parts:  # instead of content: shown as the answer
                    sys.stdout.write(chunk.refusal)
                    sys.stdout.flush()
                refused.append(chunk.refusal)
            last = chunk
        done = True
    finally:
        if done or parts or refused:  # end the answer's (or the partial answer's) line
            sys.stdout.write("\n")
            sys.stdout.flush()
    return Answer("".join(parts), last.target if last else "", last.usage if last else None,
                  last.cost_usd if last else None, (last.attempts or []) if last else [],
                  last.finish_reason if last else None,
                  tool_calls=list(last.final_tool_calls or []) if last else [],
                  refusal="".join(refused) or None)


def _failed(e: LlmError, args: argparse.Namespace, report: Reporter) -> int:
    attempts: list[AttemptRecord] = list(getattr(e, "attempts", None) or [])
    if args.format == "json":
        print(json.dumps({"error": {"class": e.error_class.value, "message": str(e)},
                          "attempts": [r.as_dict() for r in attempts]}, indent=2))
    report.error("chat_failed", str(e), error_class=e.error_class.value)
    if args.verbose and not report.json and isinstance(e, RouteFailed):
        for r in attempts:
            report.line("attempt", format_record(r))
    return 1


def _done(answer: Answer, args: argparse.Namespace, report: Reporter) -> None:
    if args.format == "json":
        print(json.dumps(answer.as_dict(), indent=2, ensure_ascii=False), flush=True)
    if args.verbose and not report.json:  # JSON logs carry each attempt as its own event
        report.line("attempts", "attempts:")
        for r in answer.attempts:
            report.line("attempt", format_record(r))
    if not args.quiet:
        text, fields = summary(answer)
        report.line("chat_done", text, **fields)


async def run_chat(source: Source, args: argparse.Namespace) -> int:
    """Send ``args.prompt`` by the routes of ``source``; 0 on an answer, 1 on a failure."""
    held = HeldStream()
    report = Reporter(args.log_format, held)
    if args.verbose:
        log.configure_output(args.log_format, stream=held)
        report.line("routes_loaded", f"router: routes from {source.describe()}",
                    source=str(source.path) if source.path else "environment", how=source.how)
    try:
        router = _make_router(source)
    except ConfigError as e:
        if args.format == "json":
            print(json.dumps({"error": {"class": "config", "message": str(e)}, "attempts": []},
                             indent=2))
        report.error("config_error", str(e))
        return 1
    async with router:
        try:
            model = _check_model(args.model, router, source)
            if args.no_stream or args.format == "json":
                answer = await _ask_whole(router, model, args)
            else:
                answer = await _ask_streamed(router, model, args, held)
        except UsageError as e:
            report.line("usage_error", f"router chat: {e}", level="error", message=str(e))
            return 2
        except LlmError as e:
            held.release()
            return _failed(e, args, report)
        finally:
            held.release()
    _done(answer, args, report)
    return 0


__all__ = ["Answer", "format_record", "run_chat", "summary"]
