"""What well-known models can do: context window, output limit, tools, vision, JSON schema,
assistant prefill.

Route files override any entry per provider (``providers.NAME.models.MODEL``). Names match by
longest prefix, so dated snapshots (``gpt-4o-2024-08-06``) inherit their family's entry.
Figures from each provider's model pages.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """Facts of one model family."""

    context_window: int
    max_output_tokens: int
    tools: bool = True
    vision: bool = True
    json_schema: bool = True
    #: Thinks before it answers by default (its first token comes late): the adaptive
    #: first-token limit is larger for it (router.plan.first_token).
    reasoning: bool = False


_OPENAI: dict[str, ModelFacts] = {
    "gpt-5": ModelFacts(400_000, 128_000, reasoning=True),
    "gpt-5-mini": ModelFacts(400_000, 128_000, reasoning=True),
    "gpt-5-nano": ModelFacts(400_000, 128_000, reasoning=True),
    "gpt-4.1": ModelFacts(1_047_576, 32_768),
    "gpt-4.1-mini": ModelFacts(1_047_576, 32_768),
    "gpt-4.1-nano": ModelFacts(1_047_576, 32_768),
    "gpt-4o": ModelFacts(128_000, 16_384),
    "gpt-4o-mini": ModelFacts(128_000, 16_384),
    "gpt-4-turbo": ModelFacts(128_000, 4_096, json_schema=False),
    "gpt-4": ModelFacts(8_192, 8_192, vision=False, json_schema=False),
    "gpt-3.5-turbo": ModelFacts(16_385, 4_096, vision=False, json_schema=False),
    "o1": ModelFacts(200_000, 100_000, reasoning=True),
    "o1-mini": ModelFacts(128_000, 65_536, tools=False, vision=False, json_schema=False,
                          reasoning=True),
    "o3": ModelFacts(200_000, 100_000, reasoning=True),
    "o3-mini": ModelFacts(200_000, 100_000, vision=False, reasoning=True),
    "o4-mini": ModelFacts(200_000, 100_000, reasoning=True),
}

_ANTHROPIC: dict[str, ModelFacts] = {
    "claude-opus-4-1": ModelFacts(200_000, 32_000),
    "claude-opus-4": ModelFacts(200_000, 32_000),
    "claude-sonnet-4-5": ModelFacts(200_000, 64_000),
    "claude-sonnet-4": ModelFacts(200_000, 64_000),
    "claude-haiku-4-5": ModelFacts(200_000, 64_000),
    # 4.6 models refuse an assistant prefill with a 400 (the 4.6 migration guide); listed so
    # that the prefix "claude-opus-4" / "claude-sonnet-4" does not claim them.
    "claude-opus-4-6": ModelFacts(200_000, 128_000),
    "claude-sonnet-4-6": ModelFacts(200_000, 64_000),
    "claude-opus-4-5": ModelFacts(200_000, 64_000),
    "claude-3-7-sonnet": ModelFacts(200_000, 64_000),
    "claude-3-5-sonnet": ModelFacts(200_000, 8_192),
    "claude-3-5-haiku": ModelFacts(200_000, 8_192, vision=False),
    "claude-3-opus": ModelFacts(200_000, 4_096),
    "claude-3-haiku": ModelFacts(200_000, 4_096),
}

_GOOGLE: dict[str, ModelFacts] = {
    "gemini-2.5-pro": ModelFacts(1_048_576, 65_536, reasoning=True),
    "gemini-2.5-flash": ModelFacts(1_048_576, 65_536, reasoning=True),
    "gemini-2.5-flash-lite": ModelFacts(1_048_576, 65_536),
    "gemini-2.0-flash": ModelFacts(1_048_576, 8_192),
    "gemini-2.0-flash-lite": ModelFacts(1_048_576, 8_192),
    "gemini-1.5-pro": ModelFacts(2_097_152, 8_192),
    "gemini-1.5-flash": ModelFacts(1_048_576, 8_192),
}

#: Catalog per provider kind. Kinds that serve arbitrary models (ollama, openai-compatible,
#: fake) have none: their models are whatever the server has.
CATALOG: dict[str, dict[str, ModelFacts]] = {
    "openai": _OPENAI,
    "azure-openai": _OPENAI,
    "anthropic": _ANTHROPIC,
    "google": _GOOGLE,
}

#: Families that continue a final assistant message (Anthropic's "prefill Claude's response";
#: not with extended thinking, and never for OpenAI chat models, which answer a trailing
#: assistant message with a new turn). Only the family itself or a dated snapshot of it
#: counts: a newer model that a family's prefix would match is not assumed to accept it.
PREFILL_FAMILIES: dict[str, frozenset[str]] = {
    "anthropic": frozenset({
        "claude-opus-4-5", "claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5",
        "claude-sonnet-4", "claude-haiku-4-5", "claude-3-7-sonnet", "claude-3-5-sonnet",
        "claude-3-5-haiku", "claude-3-opus", "claude-3-haiku"}),
}
_SNAPSHOT = re.compile(r"(?:-\d{8}|-latest|@\d{8})?")


@functools.lru_cache(maxsize=1024)
def accepts_prefill(kind: str, model: str) -> bool:
    """Whether ``model`` on a provider of ``kind`` is known to continue an assistant prefill:
    a family of PREFILL_FAMILIES itself or a dated snapshot of it (``-20250929``)."""
    families = PREFILL_FAMILIES.get(kind, frozenset())
    family = family_of(kind, model) if families else None
    if family is None or family not in families:
        return False
    rest = model.removeprefix("models/")[len(family):]
    return _SNAPSHOT.fullmatch(rest) is not None


#: Kinds whose servers take images only inline (data: URLs), never by fetching a URL.
NO_IMAGE_URLS = frozenset({"ollama"})

#: Model-name prefixes that identify a kind, for bare names and the "looks like" check.
KIND_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:gpt-", "codex-"),
    "anthropic": ("claude-",),
    "google": ("gemini-", "gemma-", "learnlm-"),
}


@functools.lru_cache(maxsize=4096)
def family_of(kind: str, model: str) -> str | None:
    """The known model family of ``kind`` that ``model`` belongs to: the longest one that is
    ``model`` itself or a prefix of it followed by ``-`` (a date, a variant), else None."""
    table = CATALOG.get(kind)
    if not table:
        return None
    name = model.removeprefix("models/")
    best: str | None = None
    for family in table:
        if (name == family or name.startswith(family + "-")) and (
            best is None or len(family) > len(best)
        ):
            best = family
    return best


def facts_for(kind: str, model: str) -> ModelFacts | None:
    """The facts of ``model`` on a provider of ``kind``, by longest matching prefix."""
    family = family_of(kind, model)
    return CATALOG[kind][family] if family is not None else None


#: Name parts of open-weight reasoning models served by kinds with no catalog (DeepSeek's
#: deepseek-reasoner and R1 distills, Qwen's QwQ and thinking variants, gpt-oss).
_REASONING_NAMES = ("reasoner", "-r1", "qwq", "thinking", "gpt-oss")


def is_reasoning_model(kind: str, model: str) -> bool:
    """Whether ``model`` thinks before answering by default: the catalog's fact for a known
    family, else a guess from well-known names (for kinds that serve any model)."""
    facts = facts_for(kind, model)
    if facts is not None:
        return facts.reasoning
    name = model.lower()
    return any(part in name for part in _REASONING_NAMES)


def detect_kind(model: str) -> str | None:
    """The provider kind a bare model name belongs to (gpt-/o1/o3/o4 openai, claude- anthropic,
    gemini- google), or None."""
    for kind, prefixes in KIND_PREFIXES.items():
        if model.startswith(prefixes):
            if kind == "openai" and model[:1] == "o" and not _is_o_series(model):
                continue
            return kind
    return None


def _is_o_series(model: str) -> bool:
    # "o1", "o3-mini", "o4-mini-2025-04-16" but not "ollama-thing" or "o1x"
    head = model.split("-", 1)[0]
    return head in {"o1", "o3", "o4"}


def looks_like(kind: str, model: str) -> bool:
    """Whether ``model`` is plausibly a model of ``kind`` (True for kinds with open catalogs)."""
    prefixes = KIND_PREFIXES.get("openai" if kind == "azure-openai" else kind)
    if prefixes is None or kind == "azure-openai":  # azure names deployments freely
        return True
    return detect_kind(model.removeprefix("models/")) == kind


def closest_model(kind: str, model: str, cutoff: float = 0.5) -> str | None:
    """The known model of ``kind`` nearest to ``model`` by spelling, for hints."""
    table = CATALOG.get(kind)
    if not table:
        return None
    found = difflib.get_close_matches(model, list(table), n=1, cutoff=cutoff)
    return found[0] if found else None
