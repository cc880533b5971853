"""A route file made from the environment, for ``Router.from_env()`` and ``Router()``.

Every provider kind the environment can describe is configured, with base URLs and settings
from the official SDKs' own variables (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``,
``OLLAMA_HOST``...), so a user's existing environment just works; which variables those are
is the kinds table's (``router.providers.kinds``). A kind whose key variable is unset is
configured without a key: the plan flags it (W107) and the engine skips its targets naming
the variable (``missing_key``), so an ad-hoc chain through it goes on to its next target.
There are no aliases: models are addressed as ``provider:model``, by bare model name, or as
a comma-separated ad-hoc chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.providers.kinds import KINDS, KindSpec, ollama_base_url

__all__ = ["OLLAMA_DEFAULT", "env_route_file", "ollama_base_url"]

OLLAMA_DEFAULT = ollama_base_url(None)


def _provider(spec: KindSpec, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The provider mapping of ``spec``'s kind that ``env`` describes (without api_key when
    its key variable is unset), or None."""
    key_var = next((v for v in (spec.key_env, *spec.key_env_aliases) if v and env.get(v)), None)
    out: dict[str, Any] = {"kind": spec.kind}
    if key_var is not None:
        out["api_key"] = f"${{{key_var}}}"
    for setting, var in spec.env_settings.items():
        if spec.kind == "ollama" and setting == "base_url":  # OLLAMA_HOST has its own forms
            out["base_url"] = ollama_base_url(env.get(var))
        elif env.get(var):
            out[setting] = f"${{{var}}}"
    if spec.requires_base_url and "base_url" not in out:
        return None
    return out


def env_route_file(env: Mapping[str, str]) -> dict[str, Any]:
    """The route file (as a dict) that the environment describes."""
    providers: dict[str, dict[str, Any]] = {}
    for spec in KINDS.values():
        if spec.env_name is None:
            continue
        provider = _provider(spec, env)
        if provider is not None:
            providers[spec.env_name] = provider
    return {"version": 1, "providers": providers}
