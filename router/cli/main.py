"""The ``router`` command: validate | dry-run | budgets | schema | providers | chat | demo.

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
from typing import Any, NoReturn

from router.version import __version__

DEFAULT_FILE = "routes.yaml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


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


def _load_plan(path: Path) -> Any:
    from router.config.report import format_diagnostics
    from router.config.validate import validate_file

    result = validate_file(path)
    if result.errors or result.plan is None:
        print(format_diagnostics(result.errors, "text"), file=sys.stderr)
        raise SystemExit(1)
    return result.plan


def cmd_dry_run(args: argparse.Namespace) -> int:
    from router.engine.dryrun import dry_run
    from router.errors import InvalidRequestError

    plan = _load_plan(_default_file(args.file))
    simulate: dict[str, list[str]] = {}
    for item in args.simulate or []:
        target, sep, outcome = item.rpartition("=")
        if not sep or not target:
            print(f"router dry-run: --simulate takes TARGET=OUTCOME, got {item!r}",
                  file=sys.stderr)
            return 2
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
        print("router dry-run: --prompt-tokens cannot be negative", file=sys.stderr)
        return 2
    tags = _tags(args.tag)
    gate, usage, now = None, None, time.time()
    if not args.no_state:
        gate, usage = asyncio.run(_budget_snapshot(plan, args.model, tags, now))
    try:
        report = dry_run(plan, args.model, [{"role": "user", "content": content}],
                         simulate=simulate, params=params, prompt_tokens=args.prompt_tokens,
                         gate=gate, budget_usage=usage, tags=tags, now=now)
    except InvalidRequestError as e:  # a bad --simulate: a usage error, like a bad flag
        print(f"router dry-run: {e.message}", file=sys.stderr)
        return 2
    print(report.to_json() if args.format == "json" else str(report))
    return 0 if report.answered_by else 1


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
    from router.cli.budgets import read_budgets, render

    plan = _load_plan(_default_file(args.file))
    rows = asyncio.run(read_budgets(plan))
    print(render(rows, args.format, plan.state.kind))
    return 0


def _tags(items: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"router: --tag takes KEY=VALUE, got {item!r}", file=sys.stderr)
            raise SystemExit(2)
        tags[key] = value
    return tags


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
    from router.obs import log

    if args.verbose:
        log.configure_output(args.log_format)
    return asyncio.run(run_chat(_default_file(args.file), args))


def cmd_demo(args: argparse.Namespace) -> int:
    from router.cli.demo import run_demo

    return asyncio.run(run_demo(fast=args.fast))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="router", description="Route LLM calls across providers from one YAML file.")
    p.add_argument("--version", action="version", version=f"router {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("validate", help="check route files; exit 1 on errors")
    v.add_argument("files", nargs="*", help=f"route files (default ./{DEFAULT_FILE})")
    v.add_argument("--format", choices=["text", "json", "github"], default="text")
    v.add_argument("--strict", action="store_true", help="warnings fail too")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("dry-run", help="show what the router would do for one call")
    d.add_argument("file", nargs="?", help=f"route file (default ./{DEFAULT_FILE})")
    d.add_argument("--model", "-m", required=True, help="alias, provider:model or model name")
    d.add_argument("--simulate", action="append", metavar="TARGET=OUTCOME",
                   help="e.g. openai:gpt-4o-mini=rate_limit@2s,ok (repeatable)")
    d.add_argument("--tools", action="store_true", help="the request carries tools")
    d.add_argument("--images", action="store_true", help="the request carries images")
    d.add_argument("--json-mode", action="store_true", help="the request asks for JSON output")
    d.add_argument("--stream", action="store_true", help="the request streams")
    d.add_argument("--prompt-tokens", type=int, help="prompt size in tokens")
    d.add_argument("--max-tokens", type=int, help="output limit in tokens")
    d.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="a caller tag, for tag:KEY=VALUE budgets (repeatable)")
    d.add_argument("--no-state", action="store_true",
                   help="do not read budgets from the state store")
    d.add_argument("--format", choices=["text", "json"], default="text")
    d.set_defaults(func=cmd_dry_run)

    b = sub.add_parser("budgets", help="show each budget's spend, holds and what is left")
    b.add_argument("file", nargs="?", help=f"route file (default ./{DEFAULT_FILE})")
    b.add_argument("--format", choices=["text", "json"], default="text")
    b.set_defaults(func=cmd_budgets)

    s = sub.add_parser("schema", help="print the route file's JSON Schema (plugin kinds "
                                      "included)")
    s.set_defaults(func=cmd_schema)

    pk = sub.add_parser("providers", help="list provider kinds, built-in and from plugins")
    pk.add_argument("--format", choices=["text", "json"], default="text")
    pk.set_defaults(func=cmd_providers)

    c = sub.add_parser("chat", help="send one prompt and stream the answer")
    c.add_argument("file", nargs="?", help=f"route file (default ./{DEFAULT_FILE})")
    c.add_argument("prompt", help="the user message")
    c.add_argument("--model", "-m", required=True)
    c.add_argument("--system", help="a system message")
    c.add_argument("--max-tokens", type=int)
    c.add_argument("--temperature", type=float)
    c.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    c.add_argument("-v", "--verbose", action="store_true", help="print every attempt")
    c.add_argument("--log-format", choices=["console", "json"], default="console")
    c.set_defaults(func=cmd_chat)

    m = sub.add_parser("demo", help="a live demo on fake providers: no keys, no network")
    m.add_argument("--fast", action="store_true", help="no pauses")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``router`` console script."""
    from router.errors import ConfigError, LlmError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
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
