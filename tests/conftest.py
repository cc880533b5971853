"""Shared fixtures: keep this small; fixtures used by one test file live in that file."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.exceptions
import structlog
from structlog.testing import capture_logs

from router import Router
from router.providers.base import HttpPool
from tests.engine_helpers import Events, Factory, make_router
from tests.servers.openai import OpenAIServer

REDIS_URL = os.environ.get("ROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    """A scripted OpenAI-shaped server on 127.0.0.1 (see tests/servers/openai.py)."""
    async with OpenAIServer() as server:
        yield server


@pytest.fixture
async def http_pool() -> AsyncIterator[HttpPool]:
    """One HttpPool, closed after the test."""
    async with HttpPool() as pool:
        yield pool


@pytest.fixture
async def router_for(openai_server: OpenAIServer) -> AsyncIterator[Factory]:
    """make_router bound to the test's server; every router it made is closed after the test."""
    routers: list[Router] = []

    def make(models: dict[str, Any], **kw: Any) -> Router:
        r = make_router(openai_server, models, **kw)
        routers.append(r)
        return r

    yield make
    for r in routers:
        await r.aclose()


@pytest.fixture
def router_logger() -> Iterator[logging.Logger]:
    """The ``router`` stdlib logger; its level, handlers and propagation, and structlog's
    configuration, are restored after the test."""
    std = logging.getLogger("router")
    saved = (std.level, list(std.handlers), std.propagate)
    config = structlog.get_config()
    config["processors"] = list(config["processors"])
    yield std
    std.setLevel(saved[0])
    std.handlers[:] = saved[1]
    std.propagate = saved[2]
    structlog.configure(**config)


@pytest.fixture
def events(router_logger: logging.Logger) -> Iterator[Events]:
    """Router's events, captured as dicts, with the ``router`` logger at INFO."""
    router_logger.setLevel(logging.INFO)
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def redis_state(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A route file's ``state:`` (also make_store's arguments) in the test Redis, under a key
    prefix of its own whose keys are removed afterwards; the test is skipped without Redis."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    module = request.module.__name__.rpartition(".")[2]
    prefix = f"{module}:{uuid.uuid4().hex}:"
    yield {"kind": "redis", "url": REDIS_URL, "prefix": prefix}
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()
