"""The ``router`` command line: one sub-parser per command, usage errors as exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from router.cli import keys, serve
from router.cli.source import FILE_DEFAULT
from router.version import __version__

Command = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one usage line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class Commands:
    """The top-level parser and the sub-parsers by command name (aliases included)."""

    def __init__(self, top: Parser, by_name: dict[str, argparse.ArgumentParser]) -> None:
        self.top = top
        self.by_name = by_name


def _file_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help=f"route file (default: {FILE_DEFAULT})")


def _dry_run(p: argparse.ArgumentParser) -> None:
    _file_arg(p)
    p.add_argument("--model", "-m", required=True, help="alias, provider:model or model name")
    p.add_argument("--simulate", action="append", metavar="TARGET=OUTCOME",
                   help="e.g. openai:gpt-4o-mini=rate_limit@2s,ok (repeatable)")
    p.add_argument("--tools", action="store_true", help="the request carries tools")
    p.add_argument("--images", action="store_true", help="the request carries images")
    p.add_argument("--json-mode", action="store_true", help="the request asks for JSON output")
    p.add_argument("--stream", action="store_true", help="the request streams")
    p.add_argument("--prompt-tokens", type=int, help="prompt size in tokens")
    p.add_argument("--max-tokens", type=int, help="output limit in tokens")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="a caller tag, for tag:KEY=VALUE budgets (repeatable)")
    p.add_argument("--no-state", action="store_true",
                   help="do not read budgets from the state store")
    p.add_argument("--format", choices=["text", "json"], default="text")


def _chat(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="*", metavar="[FILE] PROMPT",
                   help="the route file (default: $ROUTER_CONFIG, ./routes.yaml, else the "
                        "environment) and the user message ('-' or none: read stdin), in any "
                        "order")
    p.add_argument("--model", "-m", help="alias, provider:model or model name (required)")
    p.add_argument("--system", help="a system message")
    p.add_argument("--attach", action="append", metavar="PATH",
                   help="an image (png, jpeg, gif, webp) or a PDF sent with the prompt "
                        "(repeatable); targets that cannot read it are skipped")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="a caller tag passed to the call (repeatable)")
    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="json: one JSON object on stdout (text, target, usage, cost_usd, "
                        "attempts), after the whole answer")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no summary line on stderr")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say which routes were used, log every attempt")
    p.add_argument("--log-format", choices=["console", "json"], default="console",
                   help="stderr as console lines or JSON lines only")


def build_parser(commands: dict[str, Command]) -> Commands:
    """The parser; ``commands`` maps each command name to the function that runs it."""
    p = Parser(prog="router", description="Route LLM calls across providers from one YAML file.")
    p.add_argument("--version", action="version", version=f"router {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    by_name: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help_: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, aliases=list(aliases))
        sp.set_defaults(func=commands[name])
        for n in (name, *aliases):
            by_name[n] = sp
        return sp

    v = add("validate", "check route files; exit 1 on errors")
    v.add_argument("files", nargs="*", help=f"route files (default: {FILE_DEFAULT})")
    v.add_argument("--format", choices=["text", "json", "github"], default="text")
    v.add_argument("--strict", action="store_true", help="warnings fail too")
    _dry_run(add("dry-run", "show what the router would do for one call"))
    b = add("budgets", "show each budget's spend, holds and what is left")
    _file_arg(b)
    b.add_argument("--format", choices=["text", "json"], default="text")
    r = add("routes", "list aliases and their chains, providers and their keys, budgets",
            aliases=("ls",))
    _file_arg(r)
    r.add_argument("--format", choices=["text", "json"], default="text")
    add("schema", "print the route file's JSON Schema (plugin kinds included)")
    pk = add("providers", "list provider kinds, built-in and from plugins")
    pk.add_argument("--format", choices=["text", "json"], default="text")
    _chat(add("chat", "send one prompt and stream the answer"))
    serve.add_arguments(add("serve", "run the OpenAI- and Anthropic-compatible proxy"))
    keys.add_arguments(add("keys", "the proxy's access keys: add, list, revoke (hashes only)"))
    m = add("demo", "a live demo on fake providers: no keys, no network")
    m.add_argument("--fast", action="store_true", help="no pauses")
    return Commands(p, by_name)


def parse(commands: Commands, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; chat's options and positionals may come in any order (``--`` ends the
    options: what follows is positional even when it starts with '-')."""
    if argv and argv[0] == "chat":
        rest, tail = argv[1:], []
        if "--" in rest:
            i = rest.index("--")
            rest, tail = rest[:i], rest[i + 1:]
        args = commands.by_name["chat"].parse_intermixed_args(rest)
        args.words = [*args.words, *tail]
        args.command = "chat"
        return args
    return commands.top.parse_args(argv)


__all__ = ["Command", "Commands", "Parser", "build_parser", "parse"]
