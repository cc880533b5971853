"""The ``router`` command: validate | dry-run | budgets | routes | schema | providers | chat |
demo.

Exit codes: 0 success, 1 problems found (or a failed call), 2 usage error. Never a traceback:
every failure is one clear line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from router.cli.chat_input import DEFAULT_FILE, UsageError, parse_tags
from router.cli.parser import Commands, build_parser, parse


def _default_file(value: str | None) -> Path:
    path = Path(value or DEFAULT_FILE)
    if value is None and not path.exists():
        print(f"router: no route file given and ./{DEFAULT_FILE} does not exist "
              "(pass a path, e.g. `router validate routes.example.yaml`)", file=sys.stderr)
        raise SystemExit(2)
    return path


def cmd_validate(args: argparse.Namespace) -> int:
    from router.config.report import exit_code, format_diagnostics
    from router.config.validate import validate_file

    files = [Path(f) for f in args.files] or [_default_file(None)]
    diags = []
    for f in files:
        diags += validate_file(f).diagnostics
    out = format_diagnostics(diags, args.format)
    if out:
        print(out)
    return exit_code(diags, args.strict)


def _load_result(path: Path) -> Any:
    """The validation result of a route file that compiles (else its errors, exit 1)."""
    from router.config.report import format_diagnostics
    from router.config.validate import validate_file

    result = validate_file(path)
    if result.errors or result.plan is None:
        print(format_diagnostics(result.errors, "text"), file=sys.stderr)
        raise SystemExit(1)
    return result


def _load_plan(path: Path) -> Any:
    return _load_result(path).plan


def _dry_run_call(args: argparse.Namespace
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


def cmd_dry_run(args: argparse.Namespace) -> int:
    from router.cli.budgets import store_unavailable
    from router.engine.dryrun import dry_run
    from router.errors import InvalidRequestError
    from router.state import StoreError

    plan = _load_plan(_default_file(args.file))
    simulate, messages, params = _dry_run_call(args)
    tags = parse_tags(args.tag)
    gate, usage, now, store_error = None, None, time.time(), None
    if not args.no_state:
        try:
            gate, usage = asyncio.run(_budget_snapshot(plan, args.model, tags, now))
        except StoreError as e:  # show the decision anyway, budgets unchecked (README)
            store_error = store_unavailable(plan.state, e)
    try:
        report = dry_run(plan, args.model, messages, simulate=simulate, params=params,
                         prompt_tokens=args.prompt_tokens, gate=gate, budget_usage=usage,
                         tags=tags, now=now)
    except InvalidRequestError as e:  # a bad --simulate: a usage error, like a bad flag
        print(f"router dry-run: {e.message}", file=sys.stderr)
        return 2
    if store_error is None:
        print(report.to_json() if args.format == "json" else str(report))
        return 0 if report.answered_by else 1
    return _unchecked_report(report, store_error, args.format)


def _unchecked_report(report: Any, store_error: str, fmt: str) -> int:
    """A dry-run whose budgets could not be read: the decision as if they had room, one line
    on stderr saying so, exit 1 (--no-state is the way to ask for this on purpose)."""
    import json

    if fmt == "json":
        out = report.as_dict()
        out["budgets_checked"] = False
        out["state_error"] = store_error
        print(json.dumps(out, indent=2))
    else:
        print(str(report))
    print(f"router dry-run: budgets not checked: {store_error} (--no-state skips the store)",
          file=sys.stderr)
    return 1


async def _budget_snapshot(plan: Any, model: str, tags: dict[str, str],
                           now: float) -> tuple[Any, Any]:
    """The admission gate of the plan's state store and the usage of the route's budgets."""
    from router.policy.admission import Gate
    from router.state import make_store

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


def cmd_budgets(args: argparse.Namespace) -> int:
    from router.cli.budgets import read_budgets, render, store_unavailable
    from router.state import StoreError

    plan = _load_plan(_default_file(args.file))
    try:
        rows = asyncio.run(read_budgets(plan))
    except StoreError as e:
        print(f"router budgets: {store_unavailable(plan.state, e)}", file=sys.stderr)
        return 1
    print(render(rows, args.format, plan.state.kind))
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from router.cli.routes import describe, render

    result = _load_result(_default_file(args.file))
    print(render(describe(result), args.format))
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    import json

    from router.providers import registry

    # With no plugin installed this is schemas/routes.schema.json, byte for byte.
    print(json.dumps(registry.route_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    import json

    from router.providers import registry

    kinds = registry.describe_kinds()
    skipped = registry.skipped_plugins()
    if args.format == "json":
        print(json.dumps({"kinds": [k.to_dict() for k in kinds], "skipped": skipped}, indent=2))
        return 0
    rows = [("KIND", "SOURCE", "KEY VARIABLE", "DEFAULT BASE URL", "CAPABILITIES")]
    for k in kinds:
        caps = [c for c, v in k.capabilities.items() if v is True]
        source = k.source if k.available else f"{k.source} (not installed)"
        rows.append((k.kind, source, k.key_env or "-", k.default_base_url or "-",
                     ", ".join(caps) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    if skipped:
        print("\nskipped plugins:")
        for line in skipped:
            print(f"  {line}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from router.cli.chat import run_chat
    from router.cli.chat_input import find_source, read_prompt, split_words

    file, prompt = split_words(args.words)
    args.prompt = read_prompt(prompt)
    args.tags = parse_tags(args.tag)
    return asyncio.run(run_chat(find_source(file), args))


def cmd_serve(args: argparse.Namespace) -> int:
    from router.cli.serve import cmd_serve as run_serve

    return run_serve(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from router.cli.demo import run_demo

    return asyncio.run(run_demo(fast=args.fast))


def _commands() -> Commands:
    return build_parser({
        "validate": cmd_validate, "dry-run": cmd_dry_run, "budgets": cmd_budgets,
        "routes": cmd_routes, "schema": cmd_schema, "providers": cmd_providers,
        "chat": cmd_chat, "demo": cmd_demo, "serve": cmd_serve})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``router`` console script."""
    from router.errors import ConfigError, LlmError

    args = parse(_commands(), list(sys.argv[1:] if argv is None else argv))
    try:
        code: int = args.func(args)
    except UsageError as e:
        print(f"router {args.command}: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"router: {e}", file=sys.stderr)
        return 1
    except LlmError as e:
        print(f"router: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("router: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # the promise: no traceback, whatever happens
        print(f"router: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main"]
