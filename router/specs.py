"""Values the plan and the providers share: per-attempt timeouts and what a model can do.
(Kept apart from providers/base.py so that compiling a route file never imports aiohttp.)"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt timeouts in seconds. HttpPool enforces all four, each counted from the
    grant of a connection slot; the engine adds a timer of its own only for a provider that
    does not enforce them (``Provider.enforces_timeouts``) or a nearer call deadline."""

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
    documents: bool = False  # PDF files in messages (``FilePart``)
    document_urls: bool = False  # ... given by http(s) URL, fetched by the provider
    n: bool = False  # several choices per call (``n`` > 1)
    #: ``parallel_tool_calls: false`` is honoured (else it is not sent: the switch is absent)
    parallel_tool_calls: bool = False
    #: An assistant message last in the request is continued (an assistant prefill), not
    #: answered with a new turn: what ``stream: {recover: continue}`` needs.
    prefill: bool = False
    context_window: int | None = None
    max_output_tokens: int | None = None
