"""The one table of built-in provider kinds: which class serves each, where its key and base URL
come from, which settings it takes, and what its models can do by default.

The registry, the route-file checks and models, zero-config, ``router providers`` and the plan's
capabilities all read this table (tests/test_provider_template.py holds the JSON Schema, the
config models and every class to it). Importing it loads neither aiohttp nor pydantic, so that
``import router`` and ``router validate`` stay light; the classes are imported on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from router.providers import catalog
from router.specs import Capabilities

__all__ = [
    "CAPABILITY_FIELDS",
    "COMMON_SETTINGS",
    "KINDS",
    "KindSpec",
    "kind_capabilities",
    "model_capabilities",
    "ollama_base_url",
]

#: Settings every provider mapping accepts, whatever its kind.
COMMON_SETTINGS = frozenset({
    "kind", "api_key", "base_url", "headers", "timeout", "retry", "breaker", "models",
    "rate_limit", "unknown_price", "max_connections", "on", "max_tokens",
})
#: The names of ``Capabilities`` fields (what a route file's ``models:`` entry may override).
CAPABILITY_FIELDS = frozenset(f.name for f in dataclasses.fields(Capabilities))

_ALL = Capabilities(tools=True, vision=True, json_object=True, json_schema=True,
                    streaming=True, streaming_usage=True, n=True, parallel_tool_calls=True,
                    documents=True, document_urls=True)
#: The Chat Completions wire takes a file only inline (file_data), never by URL.
_CHAT_COMPLETIONS = dataclasses.replace(_ALL, document_urls=False)
#: Anthropic: no ``n``; ``parallel_tool_calls: false`` is ``disable_parallel_tool_use``.
_ANTHROPIC = dataclasses.replace(_ALL, n=False)
#: Gemini: no switch for parallel function calls.
_GOOGLE = dataclasses.replace(_ALL, n=False, parallel_tool_calls=False)
#: Ollama cannot fetch image URLs (images go inline only), has no n, no parallel switch and no
#: documents.
_OLLAMA = dataclasses.replace(_ALL, image_urls=False, n=False, parallel_tool_calls=False,
                              documents=False, document_urls=False)
_FAKE = dataclasses.replace(_ALL, n=False, parallel_tool_calls=False)

# Request parameters one vendor's API owns, as callers pass them beside the router's own
# (they reach ``ChatRequest.extra``). A kind whose API refuses fields it does not know is not
# sent another vendor's: a 400 for ``thinking`` on OpenAI, or ``frequency_penalty`` on
# Anthropic, would fail a call that a fallback was meant to save. Names from openai-python's
# ``CompletionCreateParams`` and anthropic-sdk-python's ``MessageCreateParams`` (those the
# router does not itself read), Gemini's and Ollama's as this package's kinds take them.
# A name no vendor here owns goes to every kind, as given.
_OPENAI_PARAMS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "modalities", "moderation", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "safety_identifier", "store",
    "stream_options", "top_logprobs", "verbosity", "web_search_options"})
_ANTHROPIC_PARAMS = frozenset({
    "betas", "cache_control", "container", "context_management", "inference_geo",
    "mcp_servers", "output_config", "server_tools", "speed", "thinking", "top_k"})
_GOOGLE_PARAMS = frozenset({"generationConfig", "include_thoughts", "safety_settings",
                            "thinking_budget", "thinking_level", "top_k"})
_OLLAMA_PARAMS = frozenset({"format", "keep_alive", "options", "think"})


def _foreign(own: frozenset[str]) -> frozenset[str]:
    """Every vendor's parameters but ``own``."""
    return (_OPENAI_PARAMS | _ANTHROPIC_PARAMS | _GOOGLE_PARAMS | _OLLAMA_PARAMS) - own


@dataclass(frozen=True, slots=True)
class KindSpec:
    """The facts of one built-in kind."""

    kind: str
    provider_class: str  # "module:Class", imported on first use
    key_env: str | None  # the variable a key is read from when the file sets none
    requires_key: bool  # False: calls go out without a key (local servers, open proxies)
    default_base_url: str | None  # None: the route file must give one
    #: Whether base_url includes the API version (each official SDK's convention).
    base_url_has_version: bool
    base_url_example: str  # shown in hints
    settings: frozenset[str] = frozenset()  # the kind's own settings, beside COMMON_SETTINGS
    requires_base_url: bool = False  # the route file must give base_url
    #: What a model of this kind can do unless the catalog or the route file says otherwise.
    capabilities: Capabilities = _ALL
    #: Zero-config: the provider name, other key variables the vendor's SDKs read, and setting
    #: -> variable for the settings those SDKs read from the environment.
    env_name: str | None = None
    key_env_aliases: tuple[str, ...] = ()
    env_settings: Mapping[str, str] = field(default_factory=dict)
    #: Other vendors' request parameters this kind's API refuses: left out of its requests.
    #: (Empty for a kind whose servers vary: an OpenAI-compatible server gets everything.)
    foreign_params: frozenset[str] = frozenset()



KINDS: Mapping[str, KindSpec] = MappingProxyType({s.kind: s for s in (
    KindSpec("openai", "router.providers.openai:OpenAIProvider", "OPENAI_API_KEY", True,
             "https://api.openai.com/v1", True, "https://api.openai.com/v1",
             frozenset({"organization", "project"}),
             env_name="openai",
             env_settings={"base_url": "OPENAI_BASE_URL", "organization": "OPENAI_ORG_ID",
                           "project": "OPENAI_PROJECT_ID"},
             capabilities=_CHAT_COMPLETIONS, foreign_params=_foreign(_OPENAI_PARAMS)),
    # An unknown server: assume its models can, so no target is skipped on a guess; a route
    # file says otherwise per model (models: {NAME: {vision: false}}).
    KindSpec("openai-compatible", "router.providers.openai:OpenAICompatibleProvider", None,
             False, None, True,
             "https://api.openai.com/v1 (the server's OpenAI-compatible root, /v1 included)",
             frozenset({"max_tokens_field", "stream_usage", "cache_control"}),
             requires_base_url=True,
             capabilities=_CHAT_COMPLETIONS),
    KindSpec("azure-openai", "router.providers.azure:AzureOpenAIProvider",
             "AZURE_OPENAI_API_KEY", True, None, False,
             "https://YOUR-RESOURCE.openai.azure.com",
             frozenset({"api_version", "deployments"}), requires_base_url=True,
             env_name="azure",
             env_settings={"base_url": "AZURE_OPENAI_ENDPOINT",
                           "api_version": "OPENAI_API_VERSION"},
             capabilities=_CHAT_COMPLETIONS, foreign_params=_foreign(_OPENAI_PARAMS)),
    KindSpec("anthropic", "router.providers.anthropic:AnthropicProvider", "ANTHROPIC_API_KEY",
             True, "https://api.anthropic.com", False, "https://api.anthropic.com",
             frozenset({"anthropic_version"}), capabilities=_ANTHROPIC,
             env_name="anthropic", env_settings={"base_url": "ANTHROPIC_BASE_URL"},
             foreign_params=_foreign(_ANTHROPIC_PARAMS)),
    KindSpec("google", "router.providers.google:GoogleProvider", "GEMINI_API_KEY", True,
             "https://generativelanguage.googleapis.com", False,
             "https://generativelanguage.googleapis.com", capabilities=_GOOGLE,
             env_name="google", key_env_aliases=("GOOGLE_API_KEY",),
             env_settings={"base_url": "GOOGLE_GEMINI_BASE_URL"},
             foreign_params=_foreign(_GOOGLE_PARAMS)),
    KindSpec("ollama", "router.providers.ollama:OllamaProvider", None, False,
             "http://127.0.0.1:11434", False, "http://127.0.0.1:11434",
             frozenset({"keep_alive"}), capabilities=_OLLAMA,
             env_name="ollama", env_settings={"base_url": "OLLAMA_HOST"},
             foreign_params=_foreign(_OLLAMA_PARAMS)),
    KindSpec("fake", "router.providers.fake:FakeProvider", None, False, None, False,
             "http://127.0.0.1:8080", frozenset({"script", "text", "latency"}),
             capabilities=_FAKE),
)})


def ollama_base_url(host: str | None) -> str:
    """OLLAMA_HOST as the ollama client reads it: ``host``, ``host:port`` or a URL."""
    default = KINDS["ollama"].default_base_url or ""
    if not host:
        return default
    url = host if "://" in host else f"http://{host}"
    scheme, _, rest = url.partition("://")
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("0.0.0.0"):  # a bind address, not one to connect to
        hostport = "127.0.0.1" + hostport[len("0.0.0.0"):]
    if ":" not in hostport.rsplit("]", 1)[-1]:
        hostport += ":11434"
    return f"{scheme}://{hostport}"


def kind_capabilities(kind: str, default: Capabilities | None = None) -> Capabilities:
    """What a model of ``kind`` can do by default: the table's entry, else ``default`` (a
    plugin class's ``capabilities_default``), else everything."""
    spec = KINDS.get(kind)
    if spec is not None:
        return spec.capabilities
    return default if default is not None else _ALL


def model_capabilities(kind: str, model: str, overrides: Mapping[str, Any] | None = None, *,
                       options: Mapping[str, Any] | None = None,
                       default: Capabilities | None = None) -> Capabilities:
    """The one answer to "what can ``model`` on a provider of ``kind`` do?", for the plan and
    the provider alike: the kind's default, the catalog's facts of the model (prefill from
    ``catalog.accepts_prefill``), the provider's settings (``stream_usage: false``), then
    ``overrides`` (a route file's ``models:`` entry; keys that are no capability, such as
    ``price``, are ignored)."""
    caps = kind_capabilities(kind, default)
    facts = catalog.facts_for(kind, model)
    if facts is not None:
        caps = dataclasses.replace(caps, tools=facts.tools, vision=facts.vision,
                                   documents=caps.documents and facts.vision,
                                   document_urls=caps.document_urls and facts.vision,
                                   json_schema=facts.json_schema,
                                   context_window=facts.context_window,
                                   max_output_tokens=facts.max_output_tokens)
    if catalog.accepts_prefill(kind, model):
        caps = dataclasses.replace(caps, prefill=True)
    if options and options.get("stream_usage") is False:
        caps = dataclasses.replace(caps, streaming_usage=False)
    if overrides:
        picked = {k: v for k, v in overrides.items() if k in CAPABILITY_FIELDS}
        if picked:
            caps = dataclasses.replace(caps, **picked)
    return caps
