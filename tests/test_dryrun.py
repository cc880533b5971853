"""Dry-run: the engine's decisions on simulated outcomes, with no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router import Router
from router.config.validate import validate_dict
from router.engine.dryrun import DryRunReport, dry_run
from router.errors import InvalidRequestError
from router.plan.routes import Plan
from tests.engine_helpers import MSG, chat_path, route_file
from tests.servers.openai import OpenAIServer, error_reply

ENV = {"OPENAI_API_KEY": "sk-dry-DISTINCT-123", "ANTHROPIC_API_KEY": "sk-ant-dry-DISTINCT"}
DOC: dict[str, Any] = {
    "version": 1,
    "defaults": {"timeout": {"total": "10s"}, "retry": {"attempts": 2, "initial": "500ms",
                                                        "max": "4s"}},
    "providers": {"openai": {"kind": "openai"}, "anthropic": {"kind": "anthropic"},
                  "local": {"kind": "ollama", "models": {"llama3.2": {"vision": False,
                                                                      "tools": False}}}},
    "models": {
        "fast": {"chain": ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5",
                           "local:llama3.2"], "deadline": "60s"},
        "strict": {"chain": ["openai:gpt-4o-mini", "local:llama3.2"],
                   "on": {"content_policy": "fail"}},
    },
}


@pytest.fixture
def plan() -> Plan:
    result = validate_dict(DOC, env=ENV)
    assert result.plan is not None and not result.errors
    return result.plan


def story(r: DryRunReport) -> list[tuple[str, str, str | None]]:
    return [(e.kind, e.target, e.outcome or e.reason) for e in r.events]


def test_no_simulation_means_the_first_target_answers(plan: Plan) -> None:
    r = dry_run(plan, "fast", None)
    assert r.answered_by == "openai:gpt-4o-mini" and r.failure is None
    assert story(r) == [("try", "openai:gpt-4o-mini", "ok")]


def test_rate_limit_with_retry_after_retries_then_answers(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai:gpt-4o-mini": ["rate_limit@2s", "ok"]})
    assert story(r) == [("try", "openai:gpt-4o-mini", "rate_limit@2s"),
                        ("wait", "openai:gpt-4o-mini", None),
                        ("try", "openai:gpt-4o-mini", "ok")]
    wait = r.events[1]
    assert wait.seconds == 2.0 and wait.retry_after
    assert "Retry-After" in (r.events[0].action or "")


def test_retries_exhausted_fall_back_with_the_backoff_schedule(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai:gpt-4o-mini": "server"})
    assert r.answered_by == "anthropic:claude-haiku-4-5"
    waits = [e for e in r.events if e.kind == "wait"]
    assert [w.seconds for w in waits] == [0.5]  # the worst case of the first jittered wait
    assert "retries exhausted" in (r.events[2].action or "")


def test_auth_falls_back_at_once(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai": "auth"})
    assert story(r)[:2] == [("try", "openai:gpt-4o-mini", "auth"),
                            ("try", "anthropic:claude-haiku-4-5", "ok")]


def test_invalid_request_fails_now(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai:gpt-4o-mini": "invalid_request"})
    assert r.answered_by is None and r.failure == "invalid_request (fail now)"
    assert len(r.events) == 1


def test_route_on_override_is_what_dry_run_follows(plan: Plan) -> None:
    r = dry_run(plan, "strict", None, simulate={"openai:gpt-4o-mini": "content_policy"})
    assert r.failure == "content_policy (fail now)"


def test_breaker_open_and_budget_are_skips(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai": "breaker_open",
                                              "anthropic:claude-haiku-4-5": "budget"})
    assert story(r) == [("skip", "openai:gpt-4o-mini", "breaker_open"),
                        ("skip", "anthropic:claude-haiku-4-5", "budget"),
                        ("try", "local:llama3.2", "ok")]


def test_a_store_that_is_down_is_a_skip_and_names_the_class_the_call_would_raise(
        plan: Plan) -> None:
    r = dry_run(plan, "strict", None, simulate={"openai": "store_unavailable",
                                                "local": "budget"})
    assert story(r) == [("skip", "openai:gpt-4o-mini", "store_unavailable"),
                        ("skip", "local:llama3.2", "budget")]
    assert r.failure == "store_unavailable (exhausted)"
    assert "skipped: store_unavailable (state store unavailable (simulated))" in str(r)


def test_every_target_over_budget_fails_budget_exceeded_not_no_route(plan: Plan) -> None:
    r = dry_run(plan, "strict", None, simulate={"openai": "budget", "local": "budget"})
    assert r.failure == "budget_exceeded (exhausted)"


def test_a_provider_without_its_key_is_skipped_naming_the_variable() -> None:
    result = validate_dict(DOC, env={"OPENAI_API_KEY": "sk-dry-DISTINCT-123"})
    assert result.plan is not None and not result.errors
    r = dry_run(result.plan, "fast", None, simulate={"openai": "server"})
    assert [s[2] for s in story(r)] == ["server", None, "server", "missing_key", "ok"]
    skip = r.events[3]
    assert (skip.target, skip.detail) == ("anthropic:claude-haiku-4-5", "provider 'anthropic' "
                                          "needs ANTHROPIC_API_KEY, which is not set in the "
                                          "environment")
    assert r.answered_by == "local:llama3.2"
    assert "sk-dry-DISTINCT-123" not in str(r) + r.to_json()


def test_capability_skips_follow_the_request(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai": "server", "anthropic": "server"},
                params={"need_images": True})
    assert story(r)[-1] == ("skip", "local:llama3.2", "capability")
    assert r.failure == "server (exhausted)"


def test_context_window_skip_uses_the_prompt_size(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, prompt_tokens=150_000)
    assert story(r)[0] == ("skip", "openai:gpt-4o-mini", "context_window")
    assert r.answered_by == "anthropic:claude-haiku-4-5"


def test_timeouts_count_toward_the_deadline(plan: Plan) -> None:
    # 2 tries x 10s on openai, then 2 x 10s on anthropic: the 60s deadline still leaves time
    r = dry_run(plan, "fast", None, simulate={"openai": "timeout", "anthropic": "timeout"})
    assert r.answered_by == "local:llama3.2"
    assert 40 <= r.worst_latency_s <= 60


def test_worst_case_cost_uses_list_prices(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, prompt_tokens=1000, params={"max_tokens": 100})
    # gpt-4o-mini: $0.15 / $0.60 per 1M; claude-haiku-4-5 $1 / $5: the worst is haiku
    assert r.answer_cost_usd == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)
    assert r.worst_cost_usd == pytest.approx((1000 * 1 + 100 * 5) / 1e6)


def test_unknown_simulated_outcome_or_target_is_a_clear_error(plan: Plan) -> None:
    with pytest.raises(InvalidRequestError, match="unknown simulated outcome"):
        dry_run(plan, "fast", None, simulate={"openai": "ratelimit"})
    with pytest.raises(InvalidRequestError, match="not a target"):
        dry_run(plan, "fast", None, simulate={"gemini:gemini-2.5-pro": "ok"})


def test_text_and_json_reports_tell_the_same_story(plan: Plan) -> None:
    r = dry_run(plan, "fast", None, simulate={"openai:gpt-4o-mini": "rate_limit@1s,server"})
    text = str(r)
    assert "1. openai:gpt-4o-mini" in text and "answer: anthropic:claude-haiku-4-5" in text
    data = json.loads(r.to_json())
    assert data["answered_by"] == "anthropic:claude-haiku-4-5"
    assert [e["kind"] for e in data["events"]] == ["try", "wait", "try", "try"]
    for secret in ENV.values():
        assert secret not in text and secret not in r.to_json()


async def test_router_dry_run_sees_the_live_breaker_state(
        openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    data = route_file(openai_server.port, {"r": ["a:m", "b:m"]}, names=["a", "b"],
                      retry={"attempts": 1}, breaker={"failures": 1, "cooldown": "60s"})
    async with Router.from_dict(data) as router:
        assert (await router.chat("r", MSG)).target == "b:m"  # a's 500 opened its breaker
        r = router.dry_run("r", MSG)
    assert story(r)[0] == ("skip", "a:m", "breaker_open")
    assert r.answered_by == "b:m"


def test_a_mistyped_simulated_outcome_or_target_gets_a_did_you_mean(plan: Plan) -> None:
    with pytest.raises(InvalidRequestError, match=r"did you mean 'rate_limit'\?"):
        dry_run(plan, "fast", None, simulate={"openai": "ratelimit"})
    with pytest.raises(InvalidRequestError, match=r"did you mean 'openai:gpt-4o-mini'\?"):
        dry_run(plan, "fast", None, simulate={"openai:gpt-4o-mni": "ok"})
