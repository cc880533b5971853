"""The adaptive first-token limit: how long a target may stay silent before its first token when
the route file sets no ``first_token:`` timeout at any layer.

    limit = min(total, base x (6 if reasoning else 1) + 1 s per full 4,000 prompt tokens)

- ``base``: ``timeout.first_token_base`` (any layer; 10 s when unset), the wait for an ordinary
  model on a short prompt.
- reasoning: the model thinks before it answers by default (the catalog's ``reasoning`` fact:
  o-series, gpt-5, Gemini 2.5 Pro/Flash; open models named ``*reasoner*``, ``*-r1*``, ...), or
  the request turns thinking on (``reasoning_effort`` other than ``none``, Anthropic's
  ``thinking``, Gemini's ``thinking_budget`` / ``thinking_level`` / ``thinkingConfig``).
- the prompt term: a long prompt takes time to be read before anything comes back; the prompt
  size is the router's estimate (about 4 characters a token).

The per-target part (the two bases, capped at ``total``) is worked out once, when the plan is
compiled (``adaptive_bases``); a call adds only the prompt term (``first_token_limit``), and
only for prompts of 4,000 tokens or more or a request that turns reasoning on. An explicit
``first_token:`` always wins. (This lives in ``plan``, not ``policy``: the plan computes it, and
the pipeline's layers let ``plan`` import nothing above it.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.plan.values import Target
from router.types import ChatRequest

#: The base of an ordinary model when the route file sets none (seconds).
DEFAULT_BASE = 10.0
#: How much longer a reasoning model (or a request that turns reasoning on) may stay silent.
REASONING_FACTOR = 6.0
#: Prompt tokens that add one second (whole steps: a short prompt adds nothing).
TOKENS_PER_SECOND = 4000

#: Effort words that turn reasoning off or (nearly) off.
_NO_EFFORT = frozenset({"none", "minimal"})
#: ``extra`` keys through which a caller may turn thinking on (Anthropic, Gemini, servers that
#: speak OpenAI's wire: OpenRouter's ``reasoning``, Qwen/vLLM's ``enable_thinking``).
_THINKING_KEYS = ("thinking", "thinking_budget", "thinking_level", "generationConfig",
                  "reasoning", "enable_thinking")


def adaptive_bases(base: float, reasoning_model: bool, total: float) -> tuple[float, float]:
    """(limit for a plain request, limit for a request that turns reasoning on) of one target,
    before the prompt term, capped at ``total``."""
    thinking = base * REASONING_FACTOR
    return min(thinking if reasoning_model else base, total), min(thinking, total)


def first_token_limit(bases: tuple[float, float], total: float, prompt_tokens: int,
                      reasoning: bool) -> float:
    """The first-token limit of one call on a target whose adaptive ``bases`` are given."""
    return min(bases[reasoning] + prompt_tokens // TOKENS_PER_SECOND, total)


def first_token_for(target: Target, prompt_tokens: int | None,
                    reasoning: bool) -> float | None:
    """One call's first-token limit on ``target`` when it is not ``timeouts.first_token``
    (None for most calls): only an adaptive limit moves, by the prompt term and a request
    that turns reasoning on."""
    bases = target.first_token_adaptive
    if bases is None:
        return None
    tokens = prompt_tokens or 0
    if tokens < TOKENS_PER_SECOND and not reasoning:
        return None
    limit = first_token_limit(bases, target.timeouts.total, tokens, reasoning)
    return None if limit == target.timeouts.first_token else limit


def asks_reasoning(request: ChatRequest) -> bool:
    """Whether ``request`` turns reasoning or thinking on."""
    effort = request.reasoning_effort
    if effort is not None and effort not in _NO_EFFORT:
        return True
    extra = request.extra
    return bool(extra) and any(_thinking_on(k, extra[k]) for k in _THINKING_KEYS if k in extra)


def _thinking_on(key: str, value: Any) -> bool:
    if key == "thinking":  # Anthropic: {"type": "enabled" | "adaptive", ...}
        return isinstance(value, Mapping) and value.get("type") in ("enabled", "adaptive")
    if key == "thinking_budget":  # Gemini 2.5: 0 turns thinking off, -1 is dynamic
        return bool(value != 0)
    if key == "generationConfig":
        config = value.get("thinkingConfig") if isinstance(value, Mapping) else None
        return isinstance(config, Mapping) and config.get("thinkingBudget") != 0
    if key == "reasoning":  # OpenRouter-style {"effort": ...} / {"enabled": true}
        if not isinstance(value, Mapping) or value.get("enabled", True) is False:
            return False
        effort = value.get("effort")
        return not (isinstance(effort, str) and effort in _NO_EFFORT)
    return bool(value)  # thinking_level, enable_thinking


__all__ = ["DEFAULT_BASE", "REASONING_FACTOR", "TOKENS_PER_SECOND", "adaptive_bases",
           "asks_reasoning", "first_token_for", "first_token_limit"]
