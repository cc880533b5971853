"""``router serve``: run the OpenAI- and Anthropic-compatible proxy (router.server) in front
of a route file.

Binding anything but a loopback address needs access keys (``--keys-file`` or
``ROUTER_PROXY_KEYS``), unless ``--insecure-no-auth`` says the network in front of it is
trusted.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from router.cli.source import FILE_DEFAULT, route_file
from router.server.proxy import (  # light: no engine import
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_DRAIN,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY,
)


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The arguments of ``router serve``."""
    s.add_argument("file", nargs="?",
                   help=f"route file (default: {FILE_DEFAULT})")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0: any)")
    s.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback address without access keys")
    s.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY,
                   help=f"largest request body accepted (default {DEFAULT_MAX_BODY})")
    s.add_argument("--drain-timeout", type=_seconds, default=DEFAULT_DRAIN,
                   help=f"seconds in-flight calls may run on after SIGTERM "
                        f"(default {DEFAULT_DRAIN:g})")
    s.add_argument("--keys-file", metavar="PATH",
                   help="access keys made by 'router keys add' (default: $ROUTER_KEYS_FILE); "
                        "reloaded when it changes")
    s.add_argument("--header-timeout", type=_seconds, default=DEFAULT_HEADER_TIMEOUT,
                   help=f"seconds a client may take to send a request head; a kept-alive "
                        f"connection idle this long is closed too "
                        f"(default {DEFAULT_HEADER_TIMEOUT:g})")
    s.add_argument("--body-timeout", type=_seconds, default=DEFAULT_BODY_TIMEOUT,
                   help=f"seconds a client may take to send a request body "
                        f"(default {DEFAULT_BODY_TIMEOUT:g})")
    s.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="worker processes on the one port (SO_REUSEPORT), sharing budgets, "
                        "rate limits and breakers through the state store (default 1)")
    s.add_argument("--log-format", choices=["console", "json"], default="console")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _seconds(text: str) -> float:
    from router.config.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from router.obs import log
    from router.server.proxy import Settings, keys_from_env

    path = route_file(args.file)  # none: a usage error, exit 2
    keys = keys_from_env(os.environ)
    keys_file = args.keys_file or os.environ.get("ROUTER_KEYS_FILE") or None
    if not keys and not keys_file and not args.insecure_no_auth and not is_loopback(args.host):
        print(f"router serve: {args.host} is not a loopback address: give --keys-file (made "
              "by 'router keys add') or set ROUTER_PROXY_KEYS (comma-separated access keys), "
              "or pass --insecure-no-auth", file=sys.stderr)
        return 2
    log.configure_output(args.log_format)
    settings = Settings(host=args.host, port=args.port, keys=keys,
                        max_body_bytes=args.max_body_bytes, drain_timeout=args.drain_timeout,
                        keys_file=Path(keys_file) if keys_file else None,
                        header_timeout=args.header_timeout, body_timeout=args.body_timeout)
    from router.server.processes import run_async

    if args.workers > 1:
        return _run_workers(path, settings, args.workers, args.log_format)
    return run_async(_run(path, settings))


def _run_workers(path: Path, settings: Any, workers: int, log_format: str) -> int:
    from router.server.processes import Supervisor, run_async, unshared_state

    problem = unshared_state(path)
    if problem:
        print(f"router serve: --workers {workers}: {problem}", file=sys.stderr)
        return 2
    supervisor = Supervisor(path, settings, workers, log_format, _announce)
    try:
        return run_async(supervisor.run())
    except OSError as e:
        print(settings.cannot_listen(e), file=sys.stderr)
        return 1


async def _run(path: Path, settings: Any) -> int:
    from router.server.run import run_proxy

    return await run_proxy(path, settings, _announce)


def _announce(url: str) -> None:
    print(f"router serve: listening on {url}", file=sys.stderr, flush=True)


__all__ = ["add_arguments", "cmd_serve", "is_loopback"]
