"""The Redis state store: budgets, rate limits and breakers shared by every replica.

One ``redis.asyncio`` client (one connection pool) per store. Every operation that reads and
then writes, or touches several keys, is one Lua script (see ``_redis_scripts`` for the key
layout), so it is atomic on the server; redis-py's ``register_script`` sends EVALSHA and loads
the script again on NOSCRIPT (after a server restart or SCRIPT FLUSH).

Time comes from the client clock, passed to each script: the hold expiry, window ends, limiter
entries and breaker expiry are all epoch seconds from ``clock``, the same as in the memory and
SQLite stores. Replicas therefore need roughly synchronised clocks (NTP), which they need for
calendar budget windows anyway.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from router.state import _redis_scripts as lua
from router.state.base import BudgetKey, Refusal, StateStore, StoreError, Usage
from router.state.memory import check_reserve_args, unique_keys

# Housekeeping TTLs run this much longer than the entry they keep, so the server's clock
# (a little ahead of ours, or a slow script) never deletes an entry the client still counts.
_SLACK_MS = 5_000


def _ms(seconds: float) -> int:
    return max(math.ceil(seconds * 1000), 1)


class RedisStore(StateStore):
    """Budgets, rate limits and breaker state in one Redis (shared by processes and hosts)."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "router:",
                 clock: Callable[[], float] = time.time, timeout: float = 2.0,
                 retries: int = 1, max_connections: int = 50,
                 pool_timeout: float = 10.0) -> None:
        # A short timeout and one quick retry: a stale pooled connection after a Redis restart
        # is retried, an outage becomes StoreError (on_store_error) within ~2 timeouts, not the
        # client's default 10 retries. Retrying a script is safe: reserve under a live id and
        # settle/release of a finished id are no-ops.
        # A blocking pool: past max_connections concurrent calls wait for a free connection
        # (up to ``pool_timeout``), where redis-py's default pool raises "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, decode_responses=True,
            socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), retries))
        self._client = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
        kw = self._client.connection_pool.connection_kwargs
        self._where = f"redis {kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}" \
                      f"/{kw.get('db', 0)}"  # never the URL: it may hold a password
        self._prefix = prefix
        self._clock = clock
        self._closed = False
        register = self._client.register_script
        self._reserve = register(lua.RESERVE)
        self._finish = register(lua.FINISH)
        self._usage = register(lua.USAGE)
        self._add_spend = register(lua.ADD_SPEND)
        self._first_time = register(lua.FIRST_TIME)
        self._rate_acquire = register(lua.RATE_ACQUIRE)
        self._breaker_put = register(lua.BREAKER_PUT)

    def key(self, kind: str, name: str) -> str:
        """The Redis key of ``name`` in a table (``spend``, ``holds``, ``held``, ``res``,
        ``first``, ``rate``, ``breaker``); public for tests and operators."""
        return f"{self._prefix}{kind}:{name}"

    # -- budgets -------------------------------------------------------------------------------

    async def reserve(self, reservation_id: str, keys: Sequence[BudgetKey], amount_micro: int,
                      hold_seconds: float) -> Refusal | None:
        check_reserve_args(amount_micro, hold_seconds)
        keys = unique_keys(keys)
        now = self._clock()
        spec = json.dumps([[k.key, k.cap_micro, None if k.ttl is None else now + k.ttl]
                           for k in keys])
        redis_keys = [self.key("res", reservation_id)]
        for k in keys:
            redis_keys += [self.key("spend", k.key), self.key("holds", k.key),
                           self.key("held", k.key)]
        args: list[str | int | float] = [reservation_id, amount_micro, now, now + hold_seconds,
                _ms(hold_seconds) + _SLACK_MS, spec]
        with self._errors():
            result = await self._reserve(keys=redis_keys, args=args)
        if not isinstance(result, list):
            return None
        index, spent, reserved = (int(v) for v in result)
        k = keys[index - 1]
        return Refusal(k.key, k.cap_micro, spent, reserved, amount_micro)

    async def settle(self, reservation_id: str, actual_micro: int) -> None:
        await self._finish_reservation(reservation_id, max(actual_micro, 0))

    async def release(self, reservation_id: str) -> None:
        await self._finish_reservation(reservation_id, 0)

    async def usage(self, key: str) -> Usage:
        with self._errors():
            spent, reserved = await self._usage(
                keys=[self.key("spend", key), self.key("holds", key), self.key("held", key)],
                args=[self._clock()])
        return Usage(int(spent), int(reserved))

    async def add_spend(self, key: BudgetKey, amount_micro: int) -> int:
        now = self._clock()
        end: float | str = "" if key.ttl is None else now + key.ttl
        with self._errors():
            spent = await self._add_spend(keys=[self.key("spend", key.key)],
                                          args=[amount_micro, now, end])
        return int(spent)

    # -- warn once, rate limits, breakers ------------------------------------------------------

    async def first_time(self, key: str, ttl: float | None) -> bool:
        now = self._clock()
        args: list[str | float] = [now, "inf", ""]
        if ttl is not None:
            args = [now, now + ttl, _ms(ttl) + _SLACK_MS]
        with self._errors():
            return int(await self._first_time(keys=[self.key("first", key)], args=args)) == 1

    async def rate_acquire(self, key: str, limit: int, amount: int, window: float) -> float:
        if amount <= 0:
            return 0.0
        if amount > limit:
            return math.inf  # can never fit
        now = self._clock()
        args: list[str | float] = [now, limit, amount, now + window, os.urandom(8).hex(),
                                   _ms(window) + _SLACK_MS]
        with self._errors():
            return float(await self._rate_acquire(keys=[self.key("rate", key)], args=args))

    async def breaker_get(self, key: str) -> tuple[int, float | None]:
        with self._errors():
            failures, opened_at, expires_at = await self._client.hmget(
                self.key("breaker", key), ["f", "o", "x"])
        if failures is None or expires_at is None or float(expires_at) <= self._clock():
            return 0, None
        return int(failures), float(opened_at) if opened_at else None

    async def breaker_put(self, key: str, failures: int, opened_at: float | None,
                          ttl: float) -> None:
        args: list[str | float] = [failures, "" if opened_at is None else opened_at,
                                   self._clock() + ttl,
                _ms(ttl) + _SLACK_MS]
        with self._errors():
            await self._breaker_put(keys=[self.key("breaker", key)], args=args)

    async def aclose(self) -> None:
        """Close the connection pool; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.aclose()
        except (RedisError, OSError) as e:
            raise StoreError(f"{self._where}: {type(e).__name__}: {e}") from e

    # -- internals -----------------------------------------------------------------------------

    async def _finish_reservation(self, reservation_id: str, actual_micro: int) -> None:
        with self._errors():
            await self._finish(keys=[self.key("res", reservation_id)],
                               args=[self._prefix, reservation_id, self._clock(), actual_micro])

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Redis and socket failures (and use after aclose) as StoreError, original chained."""
        if self._closed:
            raise StoreError(f"{self._where}: store is closed")
        try:
            yield
        except (RedisError, OSError) as e:
            raise StoreError(f"{self._where}: {type(e).__name__}: {e}") from e
