"""types.frozen_builder: the hot path's constructor of frozen slotted dataclasses makes the
same values as the class itself, still frozen; and the positional constructions on the hot
path name each field in the class's order."""

from __future__ import annotations

import dataclasses

import pytest

from router.engine.decision import CallNeeds, Try, _needs, _try
from router.providers.base import HttpCall, new_http_call
from router.types import (
    AttemptRecord,
    ChatRequest,
    ChatResponse,
    Message,
    Usage,
    checked_message,
    frozen_builder,
)


def test_a_built_message_equals_the_class_own_and_stays_frozen() -> None:
    m = checked_message("user", "hi")
    assert type(m) is Message
    assert m == Message("user", "hi")
    assert hash(m) == hash(Message("user", "hi"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.role = "system"  # type: ignore[misc]


def test_every_builder_fills_every_field_with_the_class_defaults() -> None:
    needs = _needs(stream=True, prompt_tokens=12)
    assert needs == CallNeeds(stream=True, prompt_tokens=12)
    assert type(needs) is CallNeeds
    t = _try(None, 1, 1, 30.0, False)
    assert t == Try(None, 1, 1, 30.0, False)  # type: ignore[arg-type]
    call = new_http_call("u", {}, {}, "m")
    assert call == HttpCall("u", {}, {}, "m") and call.parser is None and call.context is None


def test_builders_refuse_what_they_cannot_build() -> None:
    with pytest.raises(TypeError):
        frozen_builder(ChatRequest)  # a default factory
    with pytest.raises(TypeError):
        frozen_builder(int)


@pytest.mark.parametrize(("cls", "names"), [
    (Usage, ["input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"]),
    (ChatResponse, ["text", "tool_calls", "finish_reason", "usage", "model", "target",
                    "cost_usd", "attempts", "id", "request_id", "reasoning", "refusal",
                    "choices", "provider_state"]),
    (AttemptRecord, ["request_id", "alias", "target", "attempt", "outcome", "error_class",
                     "reason", "detail", "status", "latency_ms", "ttft_ms", "retry_in_ms",
                     "retry_after_used", "timeout_kind", "input_tokens", "output_tokens",
                     "cost_usd", "malformed_events"]),
    (CallNeeds, ["tools", "vision", "json_object", "json_schema", "stream", "image_urls", "n",
                 "prompt_tokens", "max_tokens", "reasoning", "documents", "document_urls"]),
    (ChatRequest, ["messages", "max_tokens", "temperature"]),
])
def test_positional_constructions_follow_the_field_order(cls: type, names: list[str]) -> None:
    # parse_completion, parse_usage, record_ok, needs_for and build_request pass these
    # positionally: a reordered field would silently swap values.
    assert [f.name for f in dataclasses.fields(cls)][:len(names)] == names
