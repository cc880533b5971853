"""Provider kinds: which class serves each kind, and how model references are parsed.

Kinds are registered explicitly here (no import tricks); ``register_provider_kind`` adds one at
run time.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.providers.base import Provider

#: kind -> "module:Class". Imported on first use so that `import router` stays light.
_BUILTIN: dict[str, str] = {
    "openai": "router.providers.openai:OpenAIProvider",
    "openai-compatible": "router.providers.openai:OpenAICompatibleProvider",
    "fake": "router.providers.fake:FakeProvider",
    "anthropic": "router.providers.anthropic:AnthropicProvider",
    "google": "router.providers.google:GoogleProvider",
    "ollama": "router.providers.ollama:OllamaProvider",
    "azure-openai": "router.providers.azure:AzureOpenAIProvider",
}
_LOADED: dict[str, type[Provider]] = {}


def register_provider_kind(kind: str, cls: type[Provider]) -> None:
    """Make ``kind`` usable in route files, served by ``cls``."""
    _LOADED[kind] = cls


def provider_class(kind: str) -> type[Provider]:
    """The Provider class of ``kind``; KeyError when no such kind is available."""
    cls = _LOADED.get(kind)
    if cls is None:
        module, _, name = _BUILTIN[kind].partition(":")
        cls = getattr(importlib.import_module(module), name)
        _LOADED[kind] = cls
    return cls


def available_kinds() -> list[str]:
    """Every kind this installation can serve."""
    return sorted(k for k in set(_BUILTIN) | set(_LOADED) if is_available(k))


@functools.cache
def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_available(kind: str) -> bool:
    """Whether a provider class for ``kind`` is registered and importable."""
    if kind in _LOADED:
        return True
    ref = _BUILTIN.get(kind)
    return ref is not None and _module_exists(ref.partition(":")[0])


#: Key variables of the built-in kinds (each class's ``key_env`` says the same).
_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GEMINI_API_KEY",
    "azure-openai": "AZURE_OPENAI_API_KEY",
}


def key_env(kind: str) -> str | None:
    """The environment variable a provider of ``kind`` reads its key from when none is set
    (built-in kinds from a table, so that compiling never imports the HTTP stack; a test
    checks the table against each class's ``key_env``)."""
    if kind in _LOADED:
        return _LOADED[kind].key_env
    return _KEY_ENV.get(kind)


def split_target(ref: str) -> tuple[str, str] | None:
    """``"provider:model"`` -> (provider, model); the model may contain ':' (``llama3.2:3b``)."""
    provider, sep, model = ref.partition(":")
    if not sep or not provider or not model:
        return None
    return provider, model
