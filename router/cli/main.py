"""The ``router`` command: validate | dry-run | budgets | routes | schema | providers | chat |
demo.

Exit codes: 0 success, 1 problems found (or a failed call), 2 usage error. Never a traceback:
every failure is one clear line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from router.cli.chat_input import UsageError, parse_tags
from router.cli.parser import Commands, build_parser, parse
from router.cli.source import route_file


def cmd_validate(args: argparse.Namespace) -> int:
    from router.config.report import exit_code, format_diagnostics
    from router.config.validate import validate_file

    files = [Path(f) for f in args.files] or [route_file(None)]
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


def cmd_dry_run(args: argparse.Namespace) -> int:
    from router.cli.dry_run import run

    return run(_load_plan(route_file(args.file)), args)


def cmd_budgets(args: argparse.Namespace) -> int:
    from router.cli.budgets import read_budgets, render, store_unavailable
    from router.state import StoreError

    plan = _load_plan(route_file(args.file))
    try:
        rows = asyncio.run(read_budgets(plan))
    except StoreError as e:
        print(f"router budgets: {store_unavailable(plan.state, e)}", file=sys.stderr)
        return 1
    print(render(rows, args.format, plan.state.kind))
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from router.cli.routes import describe, render

    result = _load_result(route_file(args.file))
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
    from router.cli.chat_input import read_prompt, split_words
    from router.cli.source import find_source

    file, prompt = split_words(args.words)
    args.prompt = read_prompt(prompt)
    args.tags = parse_tags(args.tag)
    return asyncio.run(run_chat(find_source(file), args))


def cmd_serve(args: argparse.Namespace) -> int:
    from router.cli.serve import cmd_serve as run_serve

    return run_serve(args)


def cmd_keys(args: argparse.Namespace) -> int:
    from router.cli.keys import cmd_keys as run_keys

    return run_keys(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from router.cli.demo import run_demo

    return asyncio.run(run_demo(fast=args.fast))


def _commands() -> Commands:
    return build_parser({
        "validate": cmd_validate, "dry-run": cmd_dry_run, "budgets": cmd_budgets,
        "routes": cmd_routes, "schema": cmd_schema, "providers": cmd_providers,
        "chat": cmd_chat, "demo": cmd_demo, "serve": cmd_serve, "keys": cmd_keys})


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
