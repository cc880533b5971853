"""``router keys add | list | revoke``: the proxy's access keys, in a key file holding their
hashes only (router.server.keys). ``add`` prints the new key once, on stdout; nothing can
show it again. ``router serve --keys-file FILE`` reads the file, and reloads it when it
changes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from router.server.keys import (
    AccessKey,
    KeyFileError,
    check_name,
    load_key_file,
    make_entry,
    new_key,
    save_key_file,
)

DEFAULT_KEYS_FILE = "router-keys.json"
KEYS_FILE_ENV = "ROUTER_KEYS_FILE"


def keys_file(given: str | None, env: Mapping[str, str]) -> Path:
    """--file, else $ROUTER_KEYS_FILE, else ./router-keys.json."""
    return Path(given or env.get(KEYS_FILE_ENV) or DEFAULT_KEYS_FILE)


def add_arguments(k: argparse.ArgumentParser) -> None:
    """The sub-commands of ``router keys``."""
    sub = k.add_subparsers(dest="keys_command", required=True, parser_class=type(k))
    file_help = f"key file (default: ${KEYS_FILE_ENV}, else ./{DEFAULT_KEYS_FILE})"
    a = sub.add_parser("add", help="make a key, print it once, store its hash")
    a.add_argument("--file", help=file_help)
    a.add_argument("--name", help="a unique name for the key (default key-N)")
    a.add_argument("--alias", action="append", metavar="ALIAS",
                   help="a model the key may use (repeatable, or comma-separated; "
                        "default: every model)")
    a.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="a tag on every call made with the key, for tag: budgets "
                        "(repeatable)")
    ls = sub.add_parser("list", help="the keys: names, aliases, tags (never keys or hashes)")
    ls.add_argument("--file", help=file_help)
    ls.add_argument("--format", choices=["text", "json"], default="text")
    r = sub.add_parser("revoke", help="remove a key (a running proxy drops it within seconds)")
    r.add_argument("name")
    r.add_argument("--file", help=file_help)


def _aliases(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [a.strip() for v in values for a in v.split(",") if a.strip()]


def _tags(values: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values or ():
        key, sep, val = value.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(f"--tag {value!r}: expected KEY=VALUE")
        tags[key.strip()] = val.strip()
    return tags


def _free_name(keys: list[AccessKey]) -> str:
    taken = {k.name for k in keys}
    n = len(keys) + 1
    while f"key-{n}" in taken:
        n += 1
    return f"key-{n}"


def _add(args: argparse.Namespace, path: Path) -> int:
    keys = load_key_file(path, missing_ok=True)
    name = check_name(args.name) if args.name else _free_name(keys)
    if any(k.name == name for k in keys):
        raise ValueError(f"a key named {name!r} exists in {path} (revoke it first, or pick "
                         "another --name)")
    key = new_key()
    save_key_file(path, [*keys, make_entry(key, name, _aliases(args.alias), _tags(args.tag))])
    print(key)
    print(f"router keys: added {name!r} to {path} (its hash only): the key above is shown "
          "once, store it now", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, path: Path) -> int:
    keys = load_key_file(path)
    if args.format == "json":
        print(json.dumps([k.describe() for k in keys], indent=2))
        return 0
    if not keys:
        print(f"no keys in {path}")
    for k in keys:
        aliases = ", ".join(sorted(k.aliases)) if k.aliases is not None else "(every model)"
        tags = ", ".join(f"{t}={v}" for t, v in sorted(k.tags.items())) or "-"
        print(f"{k.name}  aliases: {aliases}  tags: {tags}  created: {k.created or '-'}")
    return 0


def _revoke(args: argparse.Namespace, path: Path) -> int:
    keys = load_key_file(path)
    kept = [k for k in keys if k.name != args.name]
    if len(kept) == len(keys):
        print(f"router keys: no key named {args.name!r} in {path}", file=sys.stderr)
        return 1
    save_key_file(path, kept)
    print(f"router keys: revoked {args.name!r} ({len(kept)} left in {path})", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Run ``router keys``: one line on stderr and exit code 1 (2 for usage) on failure."""
    path = keys_file(args.file, os.environ)
    run = {"add": _add, "list": _list, "revoke": _revoke}[args.keys_command]
    try:
        return run(args, path)
    except KeyFileError as e:
        print(f"router keys: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"router keys: {e}", file=sys.stderr)
        return 2


__all__ = ["DEFAULT_KEYS_FILE", "KEYS_FILE_ENV", "add_arguments", "cmd_keys", "keys_file"]
