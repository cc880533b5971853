"""The SQLite state store: one file, shared by every process on one host, surviving restarts.

Every method is one ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock before
reading, so two processes can never both read "room left" and both hold it. WAL mode keeps
readers off the writers' backs; ``busy_timeout`` makes a process wait for the lock instead of
failing. The blocking sqlite3 calls run on one dedicated thread per store, which owns the
store's only connection (sqlite3 connections are not for sharing between threads), so the
store's operations also queue up in order within the process.

``synchronous=NORMAL``: in WAL mode a committed transaction survives a process crash (the
case that matters here); only a power loss can drop the last few commits.
https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html#pragma_synchronous
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from router.state.base import BudgetKey, Refusal, StateStore, StoreError, Usage
from router.state.memory import (
    SWEEP_EVERY,
    check_reserve_args,
    sliding_log_wait,
    unique_keys,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
  key TEXT PRIMARY KEY, spent INTEGER NOT NULL, expires_at REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
  rid TEXT NOT NULL, key TEXT NOT NULL, amount INTEGER NOT NULL, expires_at REAL NOT NULL,
  window_end REAL, PRIMARY KEY (rid, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_by_key ON holds (key, expires_at);
CREATE TABLE IF NOT EXISTS first_seen (key TEXT PRIMARY KEY, expires_at REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_log (key TEXT NOT NULL, expires_at REAL NOT NULL,
  amount INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rate_by_key ON rate_log (key, expires_at);
CREATE TABLE IF NOT EXISTS breaker (
  key TEXT PRIMARY KEY, failures INTEGER NOT NULL, opened_at REAL, expires_at REAL NOT NULL)
  WITHOUT ROWID;
"""

# A spend row of an ended window reads as 0 and is restarted by the next write, just as if
# it had expired (what Redis does with the key).
_ADD_SPEND = """
INSERT INTO spend (key, spent, expires_at) VALUES (:key, :amount, :end)
ON CONFLICT (key) DO UPDATE SET
  spent = CASE WHEN spend.expires_at IS NOT NULL AND spend.expires_at <= :now
               THEN excluded.spent ELSE spend.spent + excluded.spent END,
  expires_at = excluded.expires_at
RETURNING spent
"""


class SqliteStore(StateStore):
    """Budgets, rate limits and breaker state in one SQLite file (several processes, one host)."""

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 10.0) -> None:
        self._path = os.fspath(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None  # opened and used on the store thread only
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="router-sqlite")
        self._closed = False
        self._next_sweep = 0.0

    # -- budgets -------------------------------------------------------------------------------

    async def reserve(self, reservation_id: str, keys: Sequence[BudgetKey], amount_micro: int,
                      hold_seconds: float) -> Refusal | None:
        check_reserve_args(amount_micro, hold_seconds)
        keys = unique_keys(keys)

        def tx(db: sqlite3.Connection, now: float) -> Refusal | None:
            if db.execute("SELECT 1 FROM holds WHERE rid = ? AND expires_at > ? LIMIT 1",
                          (reservation_id, now)).fetchone():
                return None  # already held: a retried reserve must not hold twice
            db.executemany("DELETE FROM holds WHERE key = ? AND expires_at <= ?",
                           [(k.key, now) for k in keys])
            for k in keys:
                spent = _spent(db, k.key, now)
                (reserved,) = db.execute("SELECT COALESCE(SUM(amount), 0) FROM holds "
                                         "WHERE key = ?", (k.key,)).fetchone()
                if spent + reserved + amount_micro > k.cap_micro:
                    return Refusal(k.key, k.cap_micro, spent, reserved, amount_micro)
            db.execute("DELETE FROM holds WHERE rid = ?", (reservation_id,))  # expired leftovers
            db.executemany(
                "INSERT INTO holds (rid, key, amount, expires_at, window_end) "
                "VALUES (?, ?, ?, ?, ?)",
                [(reservation_id, k.key, amount_micro, now + hold_seconds,
                  None if k.ttl is None else now + k.ttl) for k in keys])
            return None

        return await self._write(tx)

    async def settle(self, reservation_id: str, actual_micro: int) -> None:
        await self._write(lambda db, now: _finish(db, now, reservation_id, max(actual_micro, 0)))

    async def release(self, reservation_id: str) -> None:
        await self._write(lambda db, now: _finish(db, now, reservation_id, 0))

    async def usage(self, key: str) -> Usage:
        def read(db: sqlite3.Connection) -> Usage:
            now = self._clock()
            db.execute("BEGIN")  # one snapshot for both reads (WAL: writers go on meanwhile)
            try:
                (reserved,) = db.execute("SELECT COALESCE(SUM(amount), 0) FROM holds WHERE "
                                         "key = ? AND expires_at > ?", (key, now)).fetchone()
                return Usage(_spent(db, key, now), reserved)
            finally:
                db.execute("COMMIT")

        return await self._run(read)

    async def add_spend(self, key: BudgetKey, amount_micro: int) -> int:
        def tx(db: sqlite3.Connection, now: float) -> int:
            end = None if key.ttl is None else now + key.ttl
            return _add_spend(db, key.key, amount_micro, end, now)

        return await self._write(tx)

    # -- warn once, rate limits, breakers ------------------------------------------------------

    async def first_time(self, key: str, ttl: float | None) -> bool:
        def tx(db: sqlite3.Connection, now: float) -> bool:
            row = db.execute("SELECT expires_at FROM first_seen WHERE key = ?", (key,)).fetchone()
            if row is not None and (row[0] is None or row[0] > now):
                return False
            db.execute("INSERT OR REPLACE INTO first_seen (key, expires_at) VALUES (?, ?)",
                       (key, None if ttl is None else now + ttl))
            return True

        return await self._write(tx)

    async def rate_acquire(self, key: str, limit: int, amount: int, window: float) -> float:
        if amount <= 0:
            return 0.0
        if amount > limit:
            return math.inf  # can never fit

        def tx(db: sqlite3.Connection, now: float) -> float:
            db.execute("DELETE FROM rate_log WHERE key = ? AND expires_at <= ?", (key, now))
            entries = db.execute("SELECT expires_at, amount FROM rate_log WHERE key = ?",
                                 (key,)).fetchall()
            used = sum(a for _, a in entries)
            if used + amount <= limit:
                db.execute("INSERT INTO rate_log (key, expires_at, amount) VALUES (?, ?, ?)",
                           (key, now + window, amount))
                return 0.0
            return sliding_log_wait(entries, used, limit, amount, now)

        return await self._write(tx)

    async def breaker_get(self, key: str) -> tuple[int, float | None]:
        def read(db: sqlite3.Connection) -> tuple[int, float | None]:
            row = db.execute("SELECT failures, opened_at FROM breaker WHERE key = ? "
                             "AND expires_at > ?", (key, self._clock())).fetchone()
            return (0, None) if row is None else (row[0], row[1])

        return await self._run(read)

    async def breaker_put(self, key: str, failures: int, opened_at: float | None,
                          ttl: float) -> None:
        def tx(db: sqlite3.Connection, now: float) -> None:
            db.execute("INSERT OR REPLACE INTO breaker (key, failures, opened_at, expires_at) "
                       "VALUES (?, ?, ?, ?)", (key, failures, opened_at, now + ttl))

        await self._write(tx)

    async def aclose(self) -> None:
        """Close the connection and stop the store thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_db)
        except sqlite3.Error as e:
            raise StoreError(f"sqlite store {self._path}: {e}") from e
        finally:
            self._executor.shutdown(wait=False)

    # -- the store thread ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the store thread; sqlite and OS errors become StoreError."""
        if self._closed:
            raise StoreError(f"sqlite store {self._path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: fn(self._db()))
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"sqlite store {self._path}: {e}") from e

    async def _write(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run ``fn(connection, now)`` in one BEGIN IMMEDIATE transaction on the store thread."""

        def tx(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()  # read under the write lock: no one commits in between
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP_EVERY
                    _sweep(db, now)
                result = fn(db, now)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return await self._run(tx)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            # isolation_level=None: no implicit transactions, we issue BEGIN IMMEDIATE ourselves.
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
            try:
                self._set_up(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the schema. Processes that open a new file at once can be refused
        the switch to WAL at once ("database is locked": SQLite does not wait on a lock it
        could deadlock on), so it is tried again, a few ms apart, for up to busy_timeout."""
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() + pause > deadline:
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _spent(db: sqlite3.Connection, key: str, now: float) -> int:
    row = db.execute("SELECT spent FROM spend WHERE key = ? AND "
                     "(expires_at IS NULL OR expires_at > ?)", (key, now)).fetchone()
    return 0 if row is None else int(row[0])


def _add_spend(db: sqlite3.Connection, key: str, amount: int, end: float | None,
               now: float) -> int:
    (spent,) = db.execute(_ADD_SPEND, {"key": key, "amount": amount, "end": end,
                                       "now": now}).fetchone()
    return int(spent)


def _finish(db: sqlite3.Connection, now: float, reservation_id: str, actual: int) -> None:
    """Settle (actual > 0) or release a reservation; unknown, done or expired: spend nothing."""
    rows = db.execute("DELETE FROM holds WHERE rid = ? RETURNING key, expires_at, window_end",
                      (reservation_id,)).fetchall()
    for key, expires_at, window_end in rows:
        if expires_at > now and actual:
            _add_spend(db, key, actual, window_end, now)


def _sweep(db: sqlite3.Connection, now: float) -> None:
    """Drop whatever has expired: old windows' spend, dead holds, stale limiter state."""
    db.execute("DELETE FROM spend WHERE expires_at <= ?", (now,))
    db.execute("DELETE FROM holds WHERE expires_at <= ?", (now,))
    db.execute("DELETE FROM first_seen WHERE expires_at <= ?", (now,))
    db.execute("DELETE FROM rate_log WHERE expires_at <= ?", (now,))
    db.execute("DELETE FROM breaker WHERE expires_at <= ?", (now,))
