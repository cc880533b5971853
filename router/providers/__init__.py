"""Provider kinds and the HTTP seam they share (see ``base``)."""

from router.providers.base import (
    Capabilities,
    HttpPool,
    Provider,
    ProviderConfig,
    Timeouts,
)
from router.providers.openai import OpenAICompatibleProvider, OpenAIProvider

__all__ = [
    "Capabilities",
    "HttpPool",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "Timeouts",
]
