"""The decision walk (router.engine.decision.walk) driven directly: a route shape and the
outcome of each try in, the sequence of decisions out. No I/O, no clock: the tiny ``Env``
below answers the walk's questions (breaker, deadline, jitter at its worst case)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest

from router.engine.decision import (
    Admit,
    CallNeeds,
    Done,
    Fallback,
    Skip,
    Try,
    Wait,
    walk,
)
from router.errors import (
    DEFAULT_ACTIONS,
    Action,
    ErrorClass,
    LlmError,
    TimeoutError_,
    make_error,
)
from router.plan.routes import BreakerPolicy, RetryPolicy, Target
from router.specs import Capabilities, Timeouts

TOTAL = 10.0


def target(name: str, *, attempts: int = 2, on: Mapping[ErrorClass, Action] | None = None,
           window: int | None = None, max_retry_after: float = 60.0) -> Target:
    return Target(
        key=f"{name}:m", provider=name, kind="openai", model="m",
        timeouts=Timeouts(connect=1.0, first_token=1.0, total=TOTAL, idle=1.0),
        retry=RetryPolicy(attempts=attempts, initial=0.5, max=4.0,
                          max_retry_after=max_retry_after),
        breaker=BreakerPolicy(), actions=MappingProxyType({**DEFAULT_ACTIONS, **(on or {})}),
        capabilities=Capabilities(context_window=window))


def err(cls: str, *, retry_after: float | None = None, retryable: bool | None = None,
        message: str = "x", timeout_kind: str | None = None) -> LlmError:
    e = make_error(ErrorClass(cls), message, retry_after=retry_after, retryable=retryable)
    e.timeout_kind = timeout_kind
    return e


@dataclass
class Env:
    """WalkEnv: ``remaining`` is fixed (None: no deadline); a breaker in ``opens`` allows
    that many checks, then reports open."""

    remaining_s: float | None = None
    opens: dict[str, int] = field(default_factory=dict)

    def breaker_allows(self, t: Target) -> bool:
        left = self.opens.get(t.provider)
        if left is None:
            return True
        self.opens[t.provider] = left - 1
        return left > 0

    def gated(self, _t: Target) -> bool:
        return False

    def remaining(self) -> float | None:
        return self.remaining_s

    def jitter(self, policy: RetryPolicy, retry_number: int) -> float:
        return policy.backoff_cap(retry_number)


def run(targets: Sequence[Target], outcomes: Mapping[str, Sequence[LlmError | None]],
        env: Env | None = None, needs: CallNeeds | None = None) -> list[tuple[Any, ...]]:
    """Each decision as a short tuple; a Try is answered from ``outcomes`` (ok when none is
    left for its target)."""
    env = env or Env()
    queues = {k: list(v) for k, v in outcomes.items()}
    gen = walk(targets, needs or CallNeeds(), env)
    out: list[tuple[Any, ...]] = []
    d = next(gen)
    while True:
        if isinstance(d, Try):
            q = queues.get(d.target.provider) or [None]
            outcome = q.pop(0) if q else None
            out.append(("try", d.target.provider, d.try_number, d.timeout, d.timeout_is_deadline))
            d = gen.send(outcome)
        elif isinstance(d, Wait):
            out.append(("wait", d.target.provider, d.seconds, d.from_retry_after))
            d = next(gen)
        elif isinstance(d, Fallback):
            out.append(("fallback", d.target.provider, d.why))
            d = next(gen)
        elif isinstance(d, Skip):
            out.append(("skip", d.target.provider, d.reason, d.detail))
            d = next(gen)
        elif isinstance(d, Admit):
            raise AssertionError("nothing here is gated")
        else:
            assert isinstance(d, Done)
            out.append(("done", "ok" if d.ok else d.reason))
            return out


def T(name: str, n: int = 1, timeout: float = TOTAL, deadline: bool = False) -> tuple[Any, ...]:
    return ("try", name, n, timeout, deadline)


A, B, C = target("a"), target("b"), target("c")

TABLE: list[tuple[str, list[Target], dict[str, list[LlmError | None]], Env | None,
                  list[tuple[Any, ...]]]] = [
    ("ok_at_once", [A, B], {}, None, [T("a"), ("done", "ok")]),
    ("server_error_retries_the_same_target", [A, B], {"a": [err("server"), None]}, None,
     [T("a"), ("wait", "a", 0.5, False), T("a", 2), ("done", "ok")]),
    ("retries_exhausted_fall_back", [A, B], {"a": [err("server"), err("overloaded")]}, None,
     [T("a"), ("wait", "a", 0.5, False), T("a", 2), ("fallback", "a", "retries_exhausted"),
      T("b"), ("done", "ok")]),
    ("auth_falls_back_at_once", [A, B], {"a": [err("auth")]}, None,
     [T("a"), ("fallback", "a", "fallback"), T("b"), ("done", "ok")]),
    ("invalid_request_fails_now", [A, B], {"a": [err("invalid_request")]}, None,
     [T("a"), ("done", "fail_now")]),
    ("every_target_failing_is_exhausted", [target("a", attempts=1), target("b", attempts=1)],
     {"a": [err("server")], "b": [err("server")]}, None,
     [T("a"), ("fallback", "a", "retries_exhausted"), T("b"),
      ("fallback", "b", "retries_exhausted"), ("done", "exhausted")]),
    ("retry_after_wins_over_backoff", [A], {"a": [err("rate_limit", retry_after=2.0), None]},
     None, [T("a"), ("wait", "a", 2.0, True), T("a", 2), ("done", "ok")]),
    ("retry_after_past_its_cap_falls_back", [target("a", max_retry_after=5.0), B],
     {"a": [err("rate_limit", retry_after=30.0)]}, None,
     [T("a"), ("fallback", "a", "retry_after_too_long"), T("b"), ("done", "ok")]),
    ("a_retry_that_would_pass_the_deadline_falls_back", [A, B], {"a": [err("server")]},
     Env(remaining_s=0.4),
     [T("a", 1, 0.4, True), ("fallback", "a", "deadline"), T("b", 1, 0.4, True),
      ("done", "ok")]),
    ("a_passed_deadline_skips_and_ends", [A, B], {}, Env(remaining_s=0.0),
     [("skip", "a", "deadline", "the call deadline has passed"), ("done", "deadline")]),
    ("the_breaker_is_checked_again_before_a_retry", [A, B], {"a": [err("server")]},
     Env(opens={"a": 1}),
     [T("a"), ("fallback", "a", "breaker_open"), T("b"), ("done", "ok")]),
    ("an_open_breaker_skips_the_target", [A, B], {}, Env(opens={"a": 0}),
     [("skip", "a", "breaker_open", "circuit breaker is open"), T("b"), ("done", "ok")]),
    ("on_override_makes_a_class_fail_now", [target("a", on={ErrorClass.SERVER: Action.FAIL}),
                                            B], {"a": [err("server")]}, None,
     [T("a"), ("done", "fail_now")]),
    ("on_override_retries_a_class_that_falls_back_by_default",
     [target("a", on={ErrorClass.AUTH: Action.RETRY}), B], {"a": [err("auth"), None]}, None,
     [T("a"), ("wait", "a", 0.5, False), T("a", 2), ("done", "ok")]),
    ("x_should_retry_false_falls_back_at_once", [A, B],
     {"a": [err("server", retryable=False)]}, None,
     [T("a"), ("fallback", "a", "fallback"), T("b"), ("done", "ok")]),
    ("a_connect_timeout_falls_back_at_once", [A, B],
     {"a": [err("timeout", timeout_kind="connect")]}, None,
     [T("a"), ("fallback", "a", "fallback"), T("b"), ("done", "ok")]),
    ("a_pool_timeout_acts_like_a_connect_timeout", [A, B],
     {"a": [err("timeout", timeout_kind="pool")]}, None,
     [T("a"), ("fallback", "a", "fallback"), T("b"), ("done", "ok")]),
    ("the_last_target_retries_a_first_token_timeout", [A],
     {"a": [err("timeout", timeout_kind="first_token"), None]}, None,
     [T("a"), ("wait", "a", 0.5, False), T("a", 2), ("done", "ok")]),
    ("a_total_timeout_is_retried", [A, B], {"a": [err("timeout", timeout_kind="total"), None]},
     None, [T("a"), ("wait", "a", 0.5, False), T("a", 2), ("done", "ok")]),
]


@pytest.mark.parametrize(("targets", "outcomes", "env", "expected"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_walk_decisions(targets: list[Target], outcomes: dict[str, list[LlmError | None]],
                        env: Env | None, expected: list[tuple[Any, ...]]) -> None:
    assert run(targets, outcomes, env) == expected


def test_context_window_error_skips_targets_smaller_than_the_reported_size() -> None:
    small, mid, big = (target("a", window=1000), target("b", window=4000),
                       target("c", window=8000))
    too_long = err("context_window", message="This model's maximum context length is 1000 "
                   "tokens. However, your messages resulted in 5000 tokens.")
    assert run([small, mid, big], {"a": [too_long]}) == [
        T("a"), ("fallback", "a", "fallback"),
        ("skip", "b", "context_window",
         "window 4000 < 5000 tokens reported by an earlier target"),
        T("c"), ("done", "ok")]


def test_a_connect_timeout_retries_when_every_later_target_would_be_skipped() -> None:
    small = target("b", window=10)  # the prompt does not fit: b is no real alternative
    needs = CallNeeds(prompt_tokens=100)
    assert run([A, small], {"a": [TimeoutError_("x", timeout_kind="connect"), None]},
               needs=needs) == [T("a"), ("wait", "a", 0.5, False), T("a", 2), ("done", "ok")]
