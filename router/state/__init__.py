"""State stores for budgets, local rate limits and shared breaker state: ``make_store`` picks
one by kind (memory, sqlite, redis); all of them implement ``StateStore``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Literal

from router.state.base import (
    MICRO,
    BudgetKey,
    OnStoreError,
    Refusal,
    StateStore,
    StoreError,
    Usage,
    to_micro,
)
from router.state.memory import MemoryStore

StoreKind = Literal["memory", "sqlite", "redis"]

__all__ = [
    "MICRO",
    "BudgetKey",
    "MemoryStore",
    "OnStoreError",
    "Refusal",
    "StateStore",
    "StoreError",
    "StoreKind",
    "Usage",
    "make_store",
    "to_micro",
]


def make_store(kind: StoreKind | str, *, path: str | os.PathLike[str] | None = None,
               url: str | None = None, prefix: str = "router:",
               clock: Callable[[], float] = time.time) -> StateStore:
    """A new state store of ``kind``: memory, sqlite (needs ``path``) or redis (needs ``url``;
    keys under ``prefix``). Opens nothing yet: the first operation connects."""
    if kind == "memory":
        return MemoryStore(clock=clock)
    if kind == "sqlite":
        if path is None:
            raise ValueError("the sqlite state store needs a path")
        from router.state.sqlite import SqliteStore

        return SqliteStore(path, clock=clock)
    if kind == "redis":
        if url is None:
            raise ValueError("the redis state store needs a url (redis://host:port/db)")
        from router.state.redis import RedisStore

        return RedisStore(url, prefix=prefix, clock=clock)
    raise ValueError(f"unknown state store kind {kind!r}: expected memory, sqlite or redis")
