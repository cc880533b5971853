"""The provider protocol and its configuration. The HTTP exchange itself lives in
``router.providers.http`` (the only module that imports aiohttp); status classification,
Retry-After and error bodies in ``router.providers._status``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from router.errors import AuthError
from router.providers._status import (
    ErrorBody,
    classify_status,
    make_status_error,
    parse_retry_after,
    parse_should_retry,
    redact_secrets,
)
from router.providers.http import HttpPool, HttpResponse, dumps_json
from router.secret import Secret
from router.specs import Capabilities, Timeouts
from router.types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "Capabilities",
    "ErrorBody",
    "HttpPool",
    "HttpResponse",
    "Provider",
    "ProviderConfig",
    "Timeouts",
    "classify_status",
    "dumps_json",
    "make_status_error",
    "parse_retry_after",
    "parse_should_retry",
    "redact_secrets",
]

@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider. ``options`` holds kind-specific settings (organization, ...).

    The repr shows header names only and never the key (``Secret`` masks it).
    """

    name: str
    kind: str
    base_url: str | None = None
    api_key: Secret | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "Secret('**********')"
        return (
            f"ProviderConfig(name={self.name!r}, kind={self.kind!r}, base_url={self.base_url!r}, "
            f"api_key={key}, headers=<{', '.join(sorted(self.headers))}>, "
            f"options={sorted(self.options)!r})"
        )

    __str__ = __repr__


# --------------------------------------------------------------------------------------------
# The provider protocol


class Provider(abc.ABC):
    """What every provider kind implements: convert our types to its wire and back, and map its
    errors to ``router.errors`` classes (``target`` left None: the engine sets it)."""

    kind: ClassVar[str]
    key_env: ClassVar[str | None] = None
    default_base_url: ClassVar[str | None] = None
    capabilities_default: ClassVar[Capabilities] = Capabilities()

    #: Whether calls need an API key (False for servers that take none, e.g. ollama).
    requires_key: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        self.config = config
        self.http = http
        self._secret = config.api_key.get_secret_value() if config.api_key is not None else ""

    def check_key(self) -> None:
        """Raise AuthError naming the key variable when a key is required and missing, before
        any request is sent."""
        if self.requires_key and not self._secret:
            where = f": set {self.key_env}" if self.key_env else ": set api_key"
            raise AuthError(f"no API key for provider {self.config.name!r}{where}",
                            retryable=False)

    @property
    def name(self) -> str:
        return self.config.name

    def capabilities(self, model: str) -> Capabilities:
        """What ``model`` can do on this provider (default: the class default)."""
        return self.capabilities_default

    @abc.abstractmethod
    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One non-streamed call. ``ChatResponse.target`` is left "" for the engine to fill."""

    @abc.abstractmethod
    def stream(self, model: str, request: ChatRequest,
               timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """An async generator of chunks; the last one has finish_reason, usage and
        final_tool_calls. It closes the upstream response in ``finally``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.config.name!r}, kind={self.kind!r})"
