"""``router serve``: run the OpenAI- and Anthropic-compatible proxy (router.server) in front
of a route file.

Binding anything but a loopback address needs access keys (``ROUTER_PROXY_KEYS``), unless
``--insecure-no-auth`` says the network in front of it is trusted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from router.server.proxy import DEFAULT_DRAIN, DEFAULT_MAX_BODY  # light: no engine import

DEFAULT_FILE = "routes.yaml"


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The arguments of ``router serve``."""
    s.add_argument("file", nargs="?",
                   help=f"route file (default: $ROUTER_CONFIG, else ./{DEFAULT_FILE})")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0: any)")
    s.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback address without access keys")
    s.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY,
                   help=f"largest request body accepted (default {DEFAULT_MAX_BODY})")
    s.add_argument("--drain-timeout", type=_seconds, default=DEFAULT_DRAIN,
                   help=f"seconds in-flight calls may run on after SIGTERM "
                        f"(default {DEFAULT_DRAIN:g})")
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


def route_file(given: str | None, env: Mapping[str, str]) -> Path | None:
    """FILE, else $ROUTER_CONFIG, else ./routes.yaml when it exists; None when there is none."""
    if given:
        return Path(given)
    if env.get("ROUTER_CONFIG"):
        return Path(env["ROUTER_CONFIG"])
    default = Path(DEFAULT_FILE)
    return default if default.exists() else None


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

    path = route_file(args.file, os.environ)
    if path is None:
        print(f"router serve: no route file given, $ROUTER_CONFIG is not set and "
              f"./{DEFAULT_FILE} does not exist", file=sys.stderr)
        return 2
    keys = keys_from_env(os.environ)
    if not keys and not args.insecure_no_auth and not is_loopback(args.host):
        print(f"router serve: {args.host} is not a loopback address: set ROUTER_PROXY_KEYS "
              "(comma-separated access keys), or pass --insecure-no-auth", file=sys.stderr)
        return 2
    log.configure_output(args.log_format)
    settings = Settings(host=args.host, port=args.port, keys=keys,
                        max_body_bytes=args.max_body_bytes, drain_timeout=args.drain_timeout)
    return asyncio.run(_run(path, settings))


async def _run(path: Path, settings: Any) -> int:
    from router.server.run import open_proxy, serve

    proxy = await open_proxy(path, settings)
    try:
        await serve(proxy, lambda url: print(f"router serve: listening on {url}",
                                             file=sys.stderr, flush=True))
    except OSError as e:
        print(f"router serve: cannot listen on {settings.host}:{settings.port}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    return 0


__all__ = ["add_arguments", "cmd_serve", "is_loopback", "route_file"]
