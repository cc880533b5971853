"""router: route LLM calls across providers from one declarative YAML file.

    from router import Router
    async with Router.from_yaml("routes.yaml") as r:
        resp = await r.chat("fast", messages=[{"role": "user", "content": "hi"}])
"""

from router.engine import Router
from router.errors import ConfigError, ErrorClass, LlmError, RouteFailed
from router.types import (
    AttemptRecord,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "AttemptRecord",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ConfigError",
    "ErrorClass",
    "ImagePart",
    "LlmError",
    "Message",
    "ResponseFormat",
    "RouteFailed",
    "Router",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "dry_run",
]
__version__ = "0.1.0"


def dry_run(path_or_router: "str | Router", model: str, **kw: object) -> object:
    """Dry-run ``model`` on a route file path or a Router (see Router.dry_run)."""
    r = path_or_router if isinstance(path_or_router, Router) else Router.from_yaml(path_or_router)
    return r.dry_run(model, **kw)  # type: ignore[arg-type]
