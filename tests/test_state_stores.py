"""The three state stores behave alike: every behaviour runs against memory, a real SQLite file
and a real Redis (``ROUTER_TEST_REDIS_URL``, default redis://127.0.0.1:6379/0; Redis cases are
skipped when nothing answers there). Time is an injected clock, so expiry needs no sleeps."""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

from router.state import BudgetKey, MemoryStore, Refusal, StateStore, StoreError, Usage, make_store
from router.state.redis import RedisStore

REDIS_URL = os.environ.get("ROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000.0
CAP = 1_000


class Clock:
    """An epoch clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Opener = Callable[..., StateStore]


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_up() -> bool:
    return _redis_up()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_prefix(redis_up: bool) -> Iterator[str]:
    """A fresh key prefix; its keys are deleted afterwards."""
    if not redis_up:
        pytest.skip(f"no Redis at {REDIS_URL} (redis-server --port 6379 --save '')")
    prefix = f"test-router:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture
async def opener(request: pytest.FixtureRequest, tmp_path: Path,
                 clock: Clock) -> AsyncIterator[Opener]:
    """Opens stores of the parametrized kind, all on the same file / prefix (so a second one
    is a restart), and closes them after the test."""
    kind: str = request.param
    prefix = request.getfixturevalue("redis_prefix") if kind == "redis" else "router:"
    opened: list[StateStore] = []

    def open_store(clock: Callable[[], float] = clock) -> StateStore:
        store = make_store(kind, path=tmp_path / "state.db", url=REDIS_URL, prefix=prefix,
                           clock=clock)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.aclose()


ALL = pytest.mark.parametrize("opener", ["memory", "sqlite", "redis"], indirect=True)
SHARED = pytest.mark.parametrize("opener", ["sqlite", "redis"], indirect=True)


@pytest.fixture
def store(opener: Opener) -> StateStore:
    return opener()


def key(name: str = "global|w1", cap: int = CAP, ttl: float | None = 3600.0) -> BudgetKey:
    return BudgetKey(name, cap, ttl)


# -- reserve ------------------------------------------------------------------------------------

@ALL
async def test_reserve_within_cap_holds_the_amount(store: StateStore) -> None:
    assert await store.reserve("r1", [key()], 400, 60) is None
    assert await store.reserve("r2", [key()], 600, 60) is None  # exactly up to the cap
    assert await store.usage("global|w1") == Usage(0, 1000)


@ALL
async def test_reserve_over_cap_is_refused_with_the_numbers(store: StateStore) -> None:
    await store.add_spend(key(), 300)
    assert await store.reserve("r1", [key()], 500, 60) is None
    refusal = await store.reserve("r2", [key()], 201, 60)
    assert refusal == Refusal("global|w1", CAP, 300, 500, 201)
    assert await store.usage("global|w1") == Usage(300, 500)


@ALL
async def test_reserve_is_all_or_nothing_across_keys(store: StateStore) -> None:
    roomy, tight = key("global|w1", 10_000), key("provider:openai|w1", 100)
    await store.add_spend(tight, 50)
    refusal = await store.reserve("r1", [roomy, tight], 80, 60)
    assert refusal == Refusal("provider:openai|w1", 100, 50, 0, 80)
    assert await store.usage("global|w1") == Usage(0, 0)
    assert await store.usage("provider:openai|w1") == Usage(50, 0)
    assert await store.reserve("r2", [roomy, tight], 50, 60) is None
    assert await store.usage("global|w1") == Usage(0, 50)
    assert await store.usage("provider:openai|w1") == Usage(50, 50)


@ALL
async def test_refusal_names_the_first_key_over_its_cap(store: StateStore) -> None:
    a, b = key("a|w1", 10), key("b|w1", 10)
    assert await store.reserve("r1", [a, b], 11, 60) == Refusal("a|w1", 10, 0, 0, 11)
    assert await store.reserve("r1", [b, a], 11, 60) == Refusal("b|w1", 10, 0, 0, 11)


@ALL
async def test_reserve_under_a_live_id_holds_once(store: StateStore) -> None:
    assert await store.reserve("r1", [key()], 400, 60) is None
    assert await store.reserve("r1", [key()], 400, 60) is None  # a retried call
    assert await store.usage("global|w1") == Usage(0, 400)


@ALL
async def test_reserve_rejects_a_negative_amount(store: StateStore) -> None:
    with pytest.raises(ValueError):
        await store.reserve("r1", [key()], -1, 60)


# -- settle and release -------------------------------------------------------------------------

@ALL
@pytest.mark.parametrize("actual", [300, 700], ids=["below_hold", "above_hold"])
async def test_settle_moves_the_hold_to_spend(store: StateStore, actual: int) -> None:
    keys = [key("global|w1"), key("alias:fast|w1")]
    assert await store.reserve("r1", keys, 500, 60) is None
    await store.settle("r1", actual)
    assert await store.usage("global|w1") == Usage(actual, 0)
    assert await store.usage("alias:fast|w1") == Usage(actual, 0)


@ALL
async def test_settle_twice_spends_once(store: StateStore) -> None:
    await store.reserve("r1", [key()], 500, 60)
    await store.settle("r1", 200)
    await store.settle("r1", 200)
    await store.release("r1")
    assert await store.usage("global|w1") == Usage(200, 0)


@ALL
async def test_settle_and_release_of_an_unknown_id_do_nothing(store: StateStore) -> None:
    await store.settle("nobody", 500)
    await store.release("nobody")
    assert await store.usage("global|w1") == Usage(0, 0)


@ALL
async def test_release_frees_the_hold(store: StateStore) -> None:
    await store.reserve("r1", [key()], 900, 60)
    await store.release("r1")
    assert await store.usage("global|w1") == Usage(0, 0)
    assert await store.reserve("r2", [key()], 1000, 60) is None


@ALL
async def test_add_spend_returns_the_new_spend(store: StateStore) -> None:
    assert await store.add_spend(key(), 250) == 250
    assert await store.add_spend(key(), 50) == 300
    assert await store.usage("global|w1") == Usage(300, 0)


# -- expiry -------------------------------------------------------------------------------------

@ALL
async def test_expired_hold_stops_counting(store: StateStore, clock: Clock) -> None:
    await store.reserve("dead", [key()], 900, 30)
    clock.advance(29.9)
    assert await store.usage("global|w1") == Usage(0, 900)
    assert await store.reserve("r2", [key()], 200, 30) is not None
    clock.advance(0.1)
    assert await store.usage("global|w1") == Usage(0, 0)
    assert await store.reserve("r3", [key()], 1000, 30) is None
    assert await store.usage("global|w1") == Usage(0, 1000)


@ALL
async def test_settle_after_the_hold_expired_spends_nothing(store: StateStore,
                                                            clock: Clock) -> None:
    await store.reserve("r1", [key()], 500, 30)
    clock.advance(31)
    await store.settle("r1", 400)
    assert await store.usage("global|w1") == Usage(0, 0)


@ALL
async def test_spend_resets_when_its_window_ends(store: StateStore, clock: Clock) -> None:
    minute = key("global|m1", ttl=60)
    await store.add_spend(minute, 600)
    await store.reserve("r1", [minute], 300, 10)
    await store.settle("r1", 300)
    clock.advance(59.9)
    assert await store.usage("global|m1") == Usage(900, 0)
    clock.advance(0.1)
    assert await store.usage("global|m1") == Usage(0, 0)
    assert await store.reserve("r2", [minute], 1000, 10) is None


@SHARED
async def test_total_window_spend_never_expires(store: StateStore, clock: Clock) -> None:
    await store.add_spend(key("global|total", ttl=None), 700)
    clock.advance(10 * 365 * 86400)
    assert await store.usage("global|total") == Usage(700, 0)


@pytest.mark.parametrize("opener", ["redis"], indirect=True)
async def test_redis_keys_expire_with_their_window_and_holds(store: StateStore) -> None:
    assert isinstance(store, RedisStore)
    await store.reserve("r1", [key("global|h1", ttl=3600)], 500, 120)
    await store.reserve("r2", [key("global|h1", ttl=3600)], 100, 120)
    await store.settle("r2", 50)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert 3_599_000 < client.pttl(store.key("spend", "global|h1")) <= 3_600_000
        for table, name in [("holds", "global|h1"), ("held", "global|h1"), ("res", "r1")]:
            assert 120_000 < client.pttl(store.key(table, name)) <= 130_000
    finally:
        client.close()


@pytest.mark.parametrize("opener", ["sqlite"], indirect=True)
async def test_sqlite_sweep_deletes_ended_windows(store: StateStore, clock: Clock,
                                                  tmp_path: Path) -> None:
    await store.add_spend(key("global|m1", ttl=60), 100)
    await store.reserve("r1", [key("global|m1", ttl=60)], 100, 30)
    await store.add_spend(key("global|total", ttl=None), 100)
    clock.advance(120)
    await store.add_spend(key("global|m3", ttl=60), 1)  # any write sweeps, at most once a minute
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT key FROM spend ORDER BY key").fetchall() == [
            ("global|m3",), ("global|total",)]
        assert db.execute("SELECT count(*) FROM holds").fetchone() == (0,)


@pytest.mark.parametrize("opener", ["memory"], indirect=True)
async def test_memory_sweep_deletes_ended_windows(store: StateStore, clock: Clock) -> None:
    assert isinstance(store, MemoryStore)
    await store.add_spend(key("global|m1", ttl=60), 100)
    await store.reserve("r1", [key("global|m1", ttl=60)], 100, 30)
    await store.rate_acquire("openai:rpm", 10, 1, 60)
    clock.advance(120)
    await store.add_spend(key("global|m3", ttl=60), 1)
    assert store.footprint() == {"spend": 1, "holds": 0, "reservations": 0, "first": 0,
                                 "rates": 0, "breakers": 0}


# -- first_time ---------------------------------------------------------------------------------

@ALL
async def test_first_time_is_true_once_per_ttl(store: StateStore, clock: Clock) -> None:
    assert await store.first_time("warn:global|d1", 60) is True
    assert await store.first_time("warn:global|d1", 60) is False
    assert await store.first_time("warn:other|d1", 60) is True
    clock.advance(60)
    assert await store.first_time("warn:global|d1", 60) is True


@ALL
async def test_first_time_without_ttl_is_true_once(store: StateStore, clock: Clock) -> None:
    assert await store.first_time("warn:total", None) is True
    clock.advance(10 * 365 * 86400)
    assert await store.first_time("warn:total", None) is False


# -- rate limits --------------------------------------------------------------------------------

@ALL
async def test_rate_acquire_respects_the_limit_and_frees_after_the_window(
        store: StateStore, clock: Clock) -> None:
    for _ in range(3):
        assert await store.rate_acquire("openai:rpm", 3, 1, 60) == 0.0
    assert await store.rate_acquire("openai:rpm", 3, 1, 60) == pytest.approx(60)
    clock.advance(45)
    assert await store.rate_acquire("openai:rpm", 3, 1, 60) == pytest.approx(15)
    clock.advance(15)
    assert await store.rate_acquire("openai:rpm", 3, 1, 60) == 0.0


@ALL
async def test_rate_acquire_slides_over_token_amounts(store: StateStore, clock: Clock) -> None:
    assert await store.rate_acquire("openai:tpm", 100, 60, 60) == 0.0
    clock.advance(30)
    assert await store.rate_acquire("openai:tpm", 100, 30, 60) == 0.0
    clock.advance(10)
    # 90 used; 50 more needs the first entry (60 tokens, leaves at t=60) gone: 20 s from now
    assert await store.rate_acquire("openai:tpm", 100, 50, 60) == pytest.approx(20)
    assert await store.rate_acquire("openai:tpm", 100, 10, 60) == 0.0  # a small one still fits
    assert await store.rate_acquire("openai:tpm", 100, 101, 60) == math.inf


# -- breakers -----------------------------------------------------------------------------------

@ALL
async def test_breaker_state_round_trips_and_expires(store: StateStore, clock: Clock) -> None:
    assert await store.breaker_get("openai:gpt-4o") == (0, None)
    await store.breaker_put("openai:gpt-4o", 5, T0 + 0.25, ttl=30)
    assert await store.breaker_get("openai:gpt-4o") == (5, T0 + 0.25)
    await store.breaker_put("openai:gpt-4o", 1, None, ttl=30)
    assert await store.breaker_get("openai:gpt-4o") == (1, None)
    clock.advance(30)
    assert await store.breaker_get("openai:gpt-4o") == (0, None)


# -- lifetime, restart, failures ----------------------------------------------------------------

@SHARED
async def test_restart_keeps_spend_and_live_holds(opener: Opener) -> None:
    first = opener()
    await first.reserve("r1", [key()], 300, 60)
    await first.settle("r1", 250)
    await first.reserve("r2", [key()], 400, 60)
    await first.aclose()
    second = opener()
    assert await second.usage("global|w1") == Usage(250, 400)
    await second.settle("r2", 100)
    assert await second.usage("global|w1") == Usage(350, 0)


@ALL
async def test_aclose_is_idempotent(store: StateStore) -> None:
    await store.usage("global|w1")
    await store.aclose()
    await store.aclose()


@SHARED
async def test_a_closed_store_raises_store_error(store: StateStore) -> None:
    await store.aclose()
    with pytest.raises(StoreError):
        await store.usage("global|w1")


@pytest.mark.parametrize("opener", ["redis"], indirect=True)
async def test_redis_reloads_a_script_the_server_forgot(store: StateStore) -> None:
    assert isinstance(store, RedisStore)
    assert await store.reserve("r0", [key()], 1, 60) is None  # the scripts are loaded
    await store.release("r0")
    redis.Redis.from_url(REDIS_URL).script_flush()  # as after a restart: NOSCRIPT on EVALSHA
    assert await store.reserve("r1", [key()], 100, 60) is None
    assert await store.usage("global|w1") == Usage(0, 100)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _every_method(store: StateStore) -> list[StoreError]:
    calls = [store.reserve("r1", [key()], 1, 60), store.settle("r1", 1), store.release("r1"),
             store.usage("k"), store.add_spend(key(), 1), store.first_time("k", 1),
             store.rate_acquire("k", 1, 1, 1), store.breaker_get("k"),
             store.breaker_put("k", 1, None, 1)]
    errors = []
    for call in calls:
        with pytest.raises(StoreError) as info:
            await call
        errors.append(info.value)
    return errors


async def test_unreachable_redis_raises_store_error() -> None:
    store = make_store("redis", url=f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        for error in await _every_method(store):
            assert isinstance(error.__cause__, redis.exceptions.ConnectionError)
    finally:
        await store.aclose()


@pytest.mark.parametrize("where", ["missing_dir/state.db", "."], ids=["no_dir", "a_directory"])
async def test_unwritable_sqlite_path_raises_store_error(tmp_path: Path, where: str) -> None:
    store = make_store("sqlite", path=tmp_path / where)
    try:
        for error in await _every_method(store):
            assert isinstance(error.__cause__, sqlite3.Error)
    finally:
        await store.aclose()


@pytest.mark.parametrize(("kind", "missing"), [("sqlite", "path"), ("redis", "url"),
                                               ("etcd", "kind")])
def test_make_store_names_what_is_missing(kind: str, missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        make_store(kind)
