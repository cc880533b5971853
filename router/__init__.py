"""router: route LLM calls across providers from one declarative YAML file.

    from router import Router
    async with Router.from_yaml("routes.yaml") as r:
        resp = await r.chat("fast", messages=[{"role": "user", "content": "hi"}])

Public names are loaded on first use, so that ``router validate`` and ``router schema`` do not
pay for the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from router.version import __version__

if TYPE_CHECKING:
    from router.engine.router import Router
    from router.errors import ConfigError, ErrorClass, LlmError, RouteFailed
    from router.types import (
        AttemptRecord,
        ChatChunk,
        ChatRequest,
        ChatResponse,
        FilePart,
        ImagePart,
        Message,
        ResponseFormat,
        TextPart,
        Tool,
        ToolCall,
        ToolCallDelta,
        Usage,
    )

_WHERE = {
    "Router": "router.engine.router",
    "ConfigError": "router.errors", "ErrorClass": "router.errors", "LlmError": "router.errors",
    "RouteFailed": "router.errors",
    **{name: "router.types" for name in (
        "AttemptRecord", "ChatChunk", "ChatRequest", "ChatResponse", "FilePart", "ImagePart",
        "Message",
        "ResponseFormat", "TextPart", "Tool", "ToolCall", "ToolCallDelta", "Usage")},
}

__all__ = [
    "AttemptRecord",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ConfigError",
    "ErrorClass",
    "FilePart",
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
    "__version__",
    "dry_run",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'router' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def dry_run(source: Any, model: str, **kw: Any) -> Any:
    """Dry-run ``model`` on a route file path, a Router or a Plan (see Router.dry_run); needs
    no API keys."""
    from router.engine.dryrun import dry_run as _dry_run
    from router.plan.routes import Plan

    if isinstance(source, Plan):
        plan = source
    elif hasattr(source, "plan"):
        plan = source.plan
    else:
        from pathlib import Path

        from router.config.validate import validate_file
        from router.errors import ConfigError as _ConfigError

        result = validate_file(Path(source))
        if result.plan is None or result.errors:
            raise _ConfigError(f"{source}: errors in the route file", result.errors)
        plan = result.plan
    messages = kw.pop("messages", None)
    return _dry_run(plan, model, messages, **kw)
