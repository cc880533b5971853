"""Anthropic Messages API, the reasoning side: the thinking config and the output budget it
needs, the signed thinking blocks a turn must send back unchanged (``provider_state``), and
refusals (``stop_reason: "refusal"`` with ``stop_details``). Pure; no I/O.

Field names follow anthropic-sdk-python's ``thinking_block_param.py``,
``redacted_thinking_block_param.py`` ("pass it back unchanged") and ``refusal_stop_details.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.providers.catalog import facts_for
from router.types import ChatRequest

DEFAULT_MAX_TOKENS = 4096  # unknown model: the smallest output limit of any current Claude
MAX_DEFAULT_MAX_TOKENS = 8192  # a known model's limit is capped here when the caller gave none
MIN_THINKING_BUDGET = 1024  # the API rejects smaller budget_tokens
EFFORT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}


def thinking_config(request: ChatRequest) -> dict[str, Any] | None:
    """``extra["thinking"]`` as given, else a budget from ``reasoning_effort`` (None: off)."""
    given = request.extra.get("thinking")
    if isinstance(given, dict):
        return dict(given) if given.get("type") in ("enabled", "adaptive") else None
    budget = EFFORT_BUDGETS.get(request.reasoning_effort or "")
    return {"type": "enabled", "budget_tokens": budget} if budget else None


def default_max_tokens(model: str) -> int:
    """The model's output limit capped at 8192, or 4096 for a model the catalog lacks."""
    facts = facts_for("anthropic", model)
    return min(facts.max_output_tokens, MAX_DEFAULT_MAX_TOKENS) if facts else DEFAULT_MAX_TOKENS


def size_budget(model: str, request: ChatRequest,
                 thinking: dict[str, Any] | None) -> tuple[int, dict[str, Any] | None]:
    """(max_tokens, thinking). The API wants ``MIN_THINKING_BUDGET <= budget < max_tokens``:
    with no max_tokens from the caller the budget is added on top of the default; a caller's
    max_tokens is a cost cap, so a budget from ``reasoning_effort`` shrinks to fit it instead
    (or thinking is dropped). An explicit ``extra["thinking"]`` is sent as given."""
    budget = thinking.get("budget_tokens") if thinking else None
    if not isinstance(budget, int) or thinking is None:
        return request.max_tokens or default_max_tokens(model), thinking
    explicit = "thinking" in request.extra
    if request.max_tokens is None:
        facts = facts_for("anthropic", model)
        max_tokens = default_max_tokens(model) + budget
        if facts is not None:
            max_tokens = min(max_tokens, facts.max_output_tokens)
        if budget >= max_tokens and not explicit:
            thinking["budget_tokens"] = max(max_tokens // 2, MIN_THINKING_BUDGET)
        return max_tokens, thinking
    max_tokens = request.max_tokens
    if explicit or budget < max_tokens:
        return max_tokens, thinking
    if max_tokens <= MIN_THINKING_BUDGET:
        return max_tokens, None
    thinking["budget_tokens"] = max(max_tokens // 2, MIN_THINKING_BUDGET)
    return max_tokens, thinking


def thinking_state(block: Mapping[str, Any]) -> dict[str, Any]:
    """A thinking or redacted_thinking block as it must go back: its fields unchanged."""
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data")}
    return {"type": "thinking", "thinking": block.get("thinking"),
            "signature": block.get("signature")}


def provider_state(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reasoning state of a turn: its signed thinking blocks, in order (None: none)."""
    return {"kind": "anthropic", "thinking": blocks} if blocks else None


def refusal_text(details: Any) -> str:
    """What ``stop_details`` says of a refusal (``explanation``, else its ``category``)."""
    details = details if isinstance(details, dict) else {}
    explanation, category = details.get("explanation"), details.get("category")
    if isinstance(explanation, str) and explanation:
        return explanation
    return f"stop_reason refusal ({category})" if isinstance(category, str) else \
        "stop_reason refusal"


_THINKING_BLOCKS = ("thinking", "redacted_thinking")


def _answers_tools(turn: Mapping[str, Any]) -> bool:
    content = turn["content"]
    return isinstance(content, list) and bool(content) and content[0]["type"] == "tool_result"


def unsigned_tool_turn(messages: list[dict[str, Any]]) -> bool:
    """Whether the request continues a tool-use turn whose first assistant message holds no
    thinking block (it was made without thinking, or by another kind before a fallback). With
    thinking on, the API refuses that ("expected `thinking` or `redacted_thinking`"): a turn
    stays in one thinking mode, so such a request goes without thinking."""
    if not messages or messages[-1]["role"] != "user" or not _answers_tools(messages[-1]):
        return False
    first: Mapping[str, Any] | None = None
    for turn in reversed(messages[:-1]):
        if turn["role"] == "assistant":
            first = turn
        elif not _answers_tools(turn):
            break
    if first is None:
        return False
    content = first["content"]
    return isinstance(content, str) or content[0]["type"] not in _THINKING_BLOCKS
