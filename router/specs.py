"""Values the plan and the providers share: per-attempt timeouts and what a model can do.
(Kept apart from providers/base.py so that compiling a route file never imports aiohttp.)"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt timeouts in seconds. HttpPool enforces connect, first_token and idle; the
    engine enforces total with ``asyncio.timeout``."""

    connect: float
    first_token: float
    total: float
    idle: float


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider (or one of its models) can do; checked before any I/O."""

    tools: bool = True
    vision: bool = False
    json_object: bool = True
    json_schema: bool = False
    streaming: bool = True
    streaming_usage: bool = True
    image_urls: bool = True  # False: images only as data: URLs (the server cannot fetch)
    context_window: int | None = None
    max_output_tokens: int | None = None
