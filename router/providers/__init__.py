"""Provider kinds and the HTTP seam they share (``base``). Kind classes are looked up through
``router.providers.registry`` and imported on first use, so nothing else is imported here."""

from router.providers.base import (
    Capabilities,
    HttpPool,
    Provider,
    ProviderConfig,
    Timeouts,
)

__all__ = ["Capabilities", "HttpPool", "Provider", "ProviderConfig", "Timeouts"]
