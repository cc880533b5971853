"""``router dry-run``: what the router would do for one call, budgets read from the state
store. A store that cannot be reached is shown as the router would meet it: under
``on_store_error: fail_closed`` every target under a budget is skipped (store_unavailable);
under ``fail_open`` the call goes on unaccounted. One line on stderr says so; exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from router.cli.budgets import store_unavailable
from router.cli.chat_input import UsageError, parse_tags
from router.engine.dryrun import DryRunReport, dry_run
from router.errors import InvalidRequestError
from router.plan.routes import Plan
from router.policy.admission import Gate
from router.state import StoreError, make_store


def call_of(args: argparse.Namespace
            ) -> tuple[dict[str, list[str]], list[dict[str, Any]], dict[str, Any]]:
    """The simulated outcomes, messages and params that dry-run's flags describe."""
    simulate: dict[str, list[str]] = {}
    for item in args.simulate or []:
        target, sep, outcome = item.rpartition("=")
        if not sep or not target:
            raise UsageError(f"--simulate takes TARGET=OUTCOME, got {item!r}")
        simulate.setdefault(target, []).extend(outcome.split(","))
    content: Any = "(dry run)"
    if args.images:
        content = [{"type": "text", "text": "(dry run)"},
                   {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]
    params: dict[str, Any] = {"need_tools": args.tools, "stream": args.stream}
    if args.max_tokens:
        params["max_tokens"] = args.max_tokens
    if args.json_mode:
        params["response_format"] = {"type": "json_object"}
    if args.prompt_tokens is not None and args.prompt_tokens < 0:
        raise UsageError("--prompt-tokens cannot be negative")
    return simulate, [{"role": "user", "content": content}], params


async def budget_snapshot(plan: Plan, model: str, tags: Mapping[str, str],
                          now: float) -> tuple[Gate | None, Any]:
    """The admission gate of the plan's state store and the usage of the route's budgets
    (None, None when the route has no budget: the store is not opened)."""
    route = plan.resolve(model)
    if not (plan.budgets_by_scope or route.budgets):
        return None, None
    st = plan.state
    store = make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix)
    try:
        gate = Gate(plan, store)
        return gate, await gate.snapshot(route, tags, now)
    finally:
        await store.aclose()


def with_outage(plan: Plan, model: str, tags: Mapping[str, str],
                simulate: dict[str, list[str]]) -> dict[str, list[str]]:
    """``simulate`` plus ``store_unavailable`` for each target under a budget that it does
    not already script: what a fail_closed router does while its store is down."""
    route = plan.resolve(model)
    out = dict(simulate)
    for t in route.targets:
        if t.key not in out and t.provider not in out and plan.budgets_for(t, route, tags):
            out[t.key] = ["store_unavailable"]
    return out


def run(plan: Plan, args: argparse.Namespace) -> int:
    """The dry-run of ``args`` on ``plan``: 0 when a target answers, 1 when none does or the
    store could not be read, 2 for a bad --simulate."""
    simulate, messages, params = call_of(args)
    tags = parse_tags(args.tag)
    gate, usage, now, problem = None, None, time.time(), None
    if not args.no_state:
        try:
            gate, usage = asyncio.run(budget_snapshot(plan, args.model, tags, now))
        except StoreError as e:
            problem = store_unavailable(plan.state, e)
            if plan.state.on_store_error == "fail_closed":
                simulate = with_outage(plan, args.model, tags, simulate)
    try:
        report = dry_run(plan, args.model, messages, simulate=simulate, params=params,
                         prompt_tokens=args.prompt_tokens, gate=gate, budget_usage=usage,
                         tags=tags, now=now)
    except InvalidRequestError as e:  # a bad --simulate: a usage error, like a bad flag
        print(f"router dry-run: {e.message}", file=sys.stderr)
        return 2
    if problem is None:
        print(report.to_json() if args.format == "json" else str(report))
        return 0 if report.answered_by else 1
    return _report_outage(report, problem, plan.state.on_store_error, args.format)


def _report_outage(report: DryRunReport, problem: str, policy: str, fmt: str) -> int:
    """The decision with the store down, and one line on stderr saying what that means."""
    if fmt == "json":
        out = report.as_dict()
        out["state_error"] = problem
        out["on_store_error"] = policy
        print(json.dumps(out, indent=2))
    else:
        print(str(report))
    effect = ("targets under a budget are skipped (on_store_error: fail_closed)"
              if policy == "fail_closed" else
              "calls go on without budgets (on_store_error: fail_open)")
    print(f"router dry-run: {problem}; while it is down, {effect}; --no-state shows the "
          "decision without the store", file=sys.stderr)
    return 1


__all__ = ["budget_snapshot", "call_of", "run", "with_outage"]
