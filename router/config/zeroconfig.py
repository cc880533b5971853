"""A route file made from the environment, for ``Router.from_env()`` and ``Router()``.

Every provider whose key variable is set is configured, with base URLs from the official SDKs'
own variables (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, ``OLLAMA_HOST``...), so a user's
existing environment just works. There are no aliases: models are addressed as
``provider:model``, by bare model name, or as a comma-separated ad-hoc chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OLLAMA_DEFAULT = "http://127.0.0.1:11434"


def ollama_base_url(host: str | None) -> str:
    """OLLAMA_HOST as the ollama client reads it: ``host``, ``host:port`` or a URL."""
    if not host:
        return OLLAMA_DEFAULT
    url = host if "://" in host else f"http://{host}"
    scheme, _, rest = url.partition("://")
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("0.0.0.0"):  # a bind address, not one to connect to
        hostport = "127.0.0.1" + hostport[len("0.0.0.0"):]
    if ":" not in hostport.rsplit("]", 1)[-1]:
        hostport += ":11434"
    return f"{scheme}://{hostport}"


def env_route_file(env: Mapping[str, str]) -> dict[str, Any]:
    """The route file (as a dict) that the environment describes."""
    providers: dict[str, dict[str, Any]] = {}
    if env.get("OPENAI_API_KEY"):
        providers["openai"] = {"kind": "openai", "api_key": "${OPENAI_API_KEY}"}
        if env.get("OPENAI_BASE_URL"):
            providers["openai"]["base_url"] = "${OPENAI_BASE_URL}"
        if env.get("OPENAI_ORG_ID"):
            providers["openai"]["organization"] = "${OPENAI_ORG_ID}"
        if env.get("OPENAI_PROJECT_ID"):
            providers["openai"]["project"] = "${OPENAI_PROJECT_ID}"
    if env.get("ANTHROPIC_API_KEY"):
        providers["anthropic"] = {"kind": "anthropic", "api_key": "${ANTHROPIC_API_KEY}"}
        if env.get("ANTHROPIC_BASE_URL"):
            providers["anthropic"]["base_url"] = "${ANTHROPIC_BASE_URL}"
    google_key = "GEMINI_API_KEY" if env.get("GEMINI_API_KEY") else (
        "GOOGLE_API_KEY" if env.get("GOOGLE_API_KEY") else None)
    if google_key:
        providers["google"] = {"kind": "google", "api_key": f"${{{google_key}}}"}
        if env.get("GOOGLE_GEMINI_BASE_URL"):
            providers["google"]["base_url"] = "${GOOGLE_GEMINI_BASE_URL}"
    if env.get("AZURE_OPENAI_API_KEY") and env.get("AZURE_OPENAI_ENDPOINT"):
        providers["azure"] = {"kind": "azure-openai", "api_key": "${AZURE_OPENAI_API_KEY}",
                              "base_url": "${AZURE_OPENAI_ENDPOINT}"}
        if env.get("OPENAI_API_VERSION"):
            providers["azure"]["api_version"] = "${OPENAI_API_VERSION}"
    providers["ollama"] = {"kind": "ollama", "base_url": ollama_base_url(env.get("OLLAMA_HOST"))}
    return {"version": 1, "providers": providers}
