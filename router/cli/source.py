"""Which route file a command reads: FILE, else ``$ROUTER_CONFIG``, else ``./routes.yaml``.

Every command that reads routes (validate, dry-run, budgets, routes, chat, serve) asks here.
``chat`` alone goes on to the environment when there is no file (as ``Router()`` does); the
others need one (``route_file``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from router.cli.chat_input import UsageError

DEFAULT_FILE = "routes.yaml"
CONFIG_ENV = "ROUTER_CONFIG"
#: How a command's FILE help says where the file comes from without one.
FILE_DEFAULT = f"${CONFIG_ENV}, else ./{DEFAULT_FILE}"


@dataclass(frozen=True)
class Source:
    """Where the routes come from: a route file, or the environment (``path`` None)."""

    path: Path | None
    how: str  # "argument", "ROUTER_CONFIG", "./routes.yaml" or "environment"

    def describe(self) -> str:
        """A short phrase for ``-v``: which routes were used and why."""
        if self.path is None:
            return f"the environment (no FILE, no ${CONFIG_ENV}, no ./{DEFAULT_FILE})"
        if self.how == CONFIG_ENV:
            return f"{self.path} (from ${CONFIG_ENV})"
        if self.how == "argument":
            return str(self.path)
        return f"./{DEFAULT_FILE} (no FILE given)"


def find_source(file: str | None, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> Source:
    """The routes to use: FILE, else $ROUTER_CONFIG, else ./routes.yaml when it is a file,
    else the environment."""
    env = os.environ if env is None else env
    if file:
        return Source(Path(file), "argument")
    if env.get(CONFIG_ENV):
        return Source(Path(env[CONFIG_ENV]), CONFIG_ENV)
    if ((cwd or Path.cwd()) / DEFAULT_FILE).is_file():
        return Source(Path(DEFAULT_FILE), f"./{DEFAULT_FILE}")
    return Source(None, "environment")


def route_file(file: str | None, env: Mapping[str, str] | None = None,
               cwd: Path | None = None) -> Path:
    """The route file a command reads (``find_source``'s); a UsageError when there is none."""
    path = find_source(file, env, cwd).path
    if path is None:
        raise UsageError(f"no route file given, ${CONFIG_ENV} is not set and ./{DEFAULT_FILE} "
                         "does not exist (pass a path, e.g. routes.example.yaml)")
    return path


__all__ = ["CONFIG_ENV", "DEFAULT_FILE", "FILE_DEFAULT", "Source", "find_source", "route_file"]
