"""Shared fixtures: keep this small; fixtures used by one test file live in that file."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.providers.base import HttpPool
from tests.servers.openai import OpenAIServer


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
