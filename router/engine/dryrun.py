"""Dry-run: what the router would do for one call, decided by the same walk as the engine,
fed simulated outcomes instead of I/O.

Simulated outcomes per target (``provider:model``, or a provider name for all its models):
``ok``, an error class (``rate_limit``), an error class with a Retry-After (``rate_limit@2s``),
``breaker_open``, ``budget``, ``rate_limited_locally`` or ``store_unavailable`` (skips). A
list (or ``a,b``) gives one outcome per try; the last repeats. Targets with no simulation
answer ``ok``.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.config.units import format_duration, parse_duration
from router.engine.decision import (
    Admit,
    CallNeeds,
    Decision,
    Done,
    Fallback,
    Skip,
    Try,
    Wait,
    needs_for,
    order_targets,
    walk,
)
from router.engine.dryrun_stream import STREAM_OUTCOMES, StreamSim
from router.engine.recover import recover_mode
from router.engine.request import build_request
from router.engine.skips import missing_note, skip_error
from router.errors import ErrorClass, InvalidRequestError, LlmError, make_error
from router.plan.routes import Plan, RetryPolicy, Route, Target
from router.policy.admission import CallScope, Gate
from router.policy.breaker import Breakers
from router.policy.pricing import price_of, worst_case_cost
from router.state.base import Usage
from router.types import Message

_SKIPS = ("breaker_open", "budget", "rate_limited_locally", "store_unavailable")
_SPECIAL = ("ok", *_SKIPS, *STREAM_OUTCOMES)
_GATED = frozenset(_SKIPS[1:])  # simulated refusals of admission
_DEFAULT_MAX_OUTPUT = 4096


@dataclass
class DryRunEvent:
    """One line of the story: a try and its simulated outcome, a skip, or a wait."""

    kind: str  # try | skip | wait
    target: str
    attempt: int | None = None
    try_number: int | None = None
    outcome: str | None = None
    action: str | None = None
    reason: str | None = None
    detail: str | None = None
    seconds: float | None = None
    retry_after: bool = False
    first_token_s: float | None = None  # a try's first-token limit
    first_token_adaptive: bool = False  # ... chosen by the adaptive formula (none was set)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v is not False}


@dataclass
class DryRunReport:
    """The decisions for one call, the target that answers, and the worst case."""

    alias: str
    targets: list[str]
    needs: CallNeeds
    deadline: float | None
    events: list[DryRunEvent] = field(default_factory=list)
    answered_by: str | None = None
    failure: str | None = None
    worst_latency_s: float = 0.0
    worst_cost_usd: float | None = None
    answer_cost_usd: float | None = None
    unpriced: list[str] = field(default_factory=list)
    recover: str | None = None  # stream.recover, when a stream break was simulated

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias, "targets": self.targets, "deadline_s": self.deadline,
            "request": _needs_dict(self.needs),
            "events": [e.as_dict() for e in self.events],
            "answered_by": self.answered_by, "failure": self.failure,
            "worst_case": {"latency_s": round(self.worst_latency_s, 3),
                           "cost_usd": self.worst_cost_usd},
            "answer_cost_usd": self.answer_cost_usd, "unpriced": self.unpriced,
            **({"recover": self.recover} if self.recover else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def __str__(self) -> str:
        return render_text(self)


def _needs_dict(n: CallNeeds) -> dict[str, Any]:
    return {name: getattr(n, name) for name in n.__slots__}


class _SimEnv:
    """WalkEnv over simulated outcomes and a simulated clock (no sleeping)."""

    def __init__(self, plan_deadline: float | None, sims: Mapping[str, list[str]],
                 breakers: Breakers | None, gate: Gate | None, scope: CallScope,
                 usage: Mapping[str, Usage] | None, now: float) -> None:
        self.gate, self.scope, self.usage, self.now = gate, scope, usage, now
        self.deadline = plan_deadline
        self.elapsed = 0.0
        self.sims = sims
        self.breakers = breakers
        self.tries: dict[str, int] = {}
        self.stream: StreamSim | None = None  # a stream that breaks is simulated

    def outcomes(self, target: Target) -> list[str]:
        return self.sims.get(target.key) or self.sims.get(target.provider) or ["ok"]

    def breaker_allows(self, target: Target) -> bool:
        if "breaker_open" in self.outcomes(target):
            return False
        if self.breakers is not None:
            return self.breakers.state(target.key, target.breaker) != "open"
        return True

    def gated(self, target: Target) -> bool:
        if _GATED.intersection(self.outcomes(target)):
            return True
        return self.usage is not None and self.gate is not None and bool(
            self.gate.specs(self.scope, target))

    def admit(self, target: Target) -> tuple[str, str] | None:
        outcomes = self.outcomes(target)
        if "budget" in outcomes:
            return "budget", "budget exceeded (simulated)"
        if "rate_limited_locally" in outcomes:
            return "rate_limited_locally", "rate limit reached (simulated)"
        if "store_unavailable" in outcomes:
            return "store_unavailable", "state store unavailable (simulated)"
        if self.usage is not None and self.gate is not None:
            return self.gate.simulate(self.scope, target, self.usage, self.now)
        return None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.elapsed

    def jitter(self, policy: RetryPolicy, retry_number: int) -> float:
        return policy.backoff_cap(retry_number)  # the worst case of the jittered wait

    def next_outcome(self, target: Target) -> str:
        n = self.tries.get(target.key, 0)
        self.tries[target.key] = n + 1
        seq = [o for o in self.outcomes(target) if o not in _SKIPS] or ["ok"]
        return seq[min(n, len(seq) - 1)]


_CLASSES = [c.value for c in ErrorClass if c.value not in _SPECIAL]


def parse_outcome(text: str) -> tuple[str, float | None]:
    """``rate_limit@2s`` -> ("rate_limit", 2.0). Raises InvalidRequestError when unknown."""
    name, _, ra = text.strip().partition("@")
    if name not in _SPECIAL and name not in _CLASSES:
        names = [*_SPECIAL, *_CLASSES]
        close = difflib.get_close_matches(name, names, n=1)
        advice = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidRequestError(f"unknown simulated outcome {name!r}; {advice}"
                                  f"use one of {', '.join(names)}")
    try:
        return name, (parse_duration(ra) if ra else None)
    except ValueError as e:
        raise InvalidRequestError(f"bad Retry-After in {text!r}: {e}") from e


def _normalize_sims(route: Route,
                    simulate: Mapping[str, str | Sequence[str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    keys = {t.key for t in route.targets} | {t.provider for t in route.targets}
    for key, value in (simulate or {}).items():
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            advice = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidRequestError(
                f"--simulate names {key!r}, which is not a target of {route.alias!r}; {advice}"
                f"(targets: {', '.join(t.key for t in route.targets)})")
        seq = value.split(",") if isinstance(value, str) else list(value)
        for o in seq:
            parse_outcome(o)
        out[key] = [o.strip() for o in seq]
    return out


def _simulated_error(outcome: str, target: Target) -> LlmError:
    name, ra = parse_outcome(outcome)
    err = make_error(ErrorClass(name), f"simulated {name}", retry_after=ra, target=target.key)
    if name == "timeout":
        err.timeout_kind = "total"
    return err


def dry_run(plan: Plan, model: str, messages: Iterable[Message | Mapping[str, Any]] | None, *,
            simulate: Mapping[str, str | Sequence[str]] | None = None,
            params: Mapping[str, Any] | None = None, breakers: Breakers | None = None,
            prompt_tokens: int | None = None, seed: int = 0, gate: Gate | None = None,
            budget_usage: Mapping[str, Usage] | None = None,
            tags: Mapping[str, str] | None = None, now: float | None = None) -> DryRunReport:
    """Walk ``model``'s route with simulated outcomes; nothing is sent."""
    import random

    route = plan.resolve(model)
    params = dict(params or {})
    mode = recover_mode(params.pop("recover", None), route.recover)
    request = build_request(messages or [{"role": "user", "content": "(dry run)"}], params)
    needs = needs_for(request, route, stream=bool(params.get("stream")),
                      prompt_tokens=prompt_tokens, tools=bool(params.get("need_tools")),
                      vision=bool(params.get("need_images")))
    scope = CallScope(route, request, tags, "dry-run", upper_tokens=prompt_tokens)
    env = _SimEnv(route.deadline, _normalize_sims(route, simulate), breakers, gate,
                  scope, budget_usage, time.time() if now is None else now)
    order = order_targets(route, random.Random(seed), 0)
    report = DryRunReport(route.alias, [t.key for t in order], needs, route.deadline)
    if any(o in STREAM_OUTCOMES for seq in env.sims.values() for o in seq):
        env.stream, report.recover = StreamSim(mode), mode
    gen = walk(order, needs, env)
    decision: Decision = next(gen)
    while not isinstance(decision, Done):
        decision = _step(report, env, gen, decision)
    _finish(report, decision, order, needs)
    if env.stream is not None:
        report.failure = env.stream.failure(decision) or report.failure
    return report


def _step(report: DryRunReport, env: _SimEnv, gen: Any, d: Decision) -> Decision:
    if isinstance(d, Try):
        outcome = env.next_outcome(d.target)
        report.worst_latency_s += d.timeout
        t = d.target
        ev = DryRunEvent("try", t.key, d.attempt, d.try_number, outcome,
                         first_token_s=t.timeouts.first_token if d.first_token is None
                         else d.first_token,
                         first_token_adaptive=t.first_token_adaptive is not None)
        report.events.append(ev)
        told = env.stream.on_try(outcome, d, gen, _describe_action) if env.stream else None
        if told is not None:
            ev.action, nxt, completes = told
            if completes:
                report.answered_by = d.target.key
            return nxt
        if outcome == "ok":
            report.answered_by = d.target.key
            ev.action = "answers"
            return gen.send(None)  # type: ignore[no-any-return]
        err = _simulated_error(outcome, d.target)
        if err.error_class is ErrorClass.TIMEOUT:
            env.elapsed += d.timeout
        nxt = gen.send(err)
        ev.action = _describe_action(err, nxt)
        return nxt  # type: ignore[no-any-return]
    if isinstance(d, Wait):
        env.elapsed += d.seconds
        report.worst_latency_s += d.seconds
        report.events.append(DryRunEvent("wait", d.target.key, seconds=d.seconds,
                                         retry_after=d.from_retry_after))
    elif isinstance(d, Skip):
        report.events.append(DryRunEvent("skip", d.target.key, reason=d.reason,
                                         detail=d.detail))
    elif isinstance(d, Admit):
        return gen.send(env.admit(d.target))  # type: ignore[no-any-return]
    return next(gen)  # type: ignore[no-any-return]


def _describe_action(err: LlmError, nxt: Decision) -> str:
    """What the walk did after ``err``, read off its next decision (nothing re-derived)."""
    if isinstance(nxt, Wait):
        if nxt.from_retry_after:
            return f"retry in {format_duration(nxt.seconds)} (Retry-After)"
        return f"retry in <= {format_duration(nxt.seconds)} (backoff with full jitter)"
    if isinstance(nxt, Fallback):
        t = nxt.target
        return {
            "retries_exhausted": f"retries exhausted ({t.retry.attempts} attempts) -> next target",
            "deadline": "a retry would not fit the deadline -> next target",
            "retry_after_too_long": ("Retry-After is over "
                                     f"{format_duration(t.retry.max_retry_after)} -> next target"),
            "breaker_open": "its breaker opened -> next target",
        }.get(nxt.why, f"next target ({err.error_class.value} -> fallback)")
    return f"fail now ({err.error_class.value} -> fail)"


def _finish(report: DryRunReport, done: Done, order: Sequence[Target],
            needs: CallNeeds) -> None:
    if report.deadline is not None:
        report.worst_latency_s = min(report.worst_latency_s, report.deadline)
    if not done.ok:
        skips = [e for e in report.events if e.kind == "skip"]
        error = done.error or skip_error(skips, order)
        cls = error.error_class.value if error else "no_route"
        report.failure = f"{cls} ({done.reason.replace('_', ' ')})" + missing_note(skips, order)
    skipped = {e.target for e in report.events if e.kind == "skip"}
    worst: float | None = None
    for t in order:
        if t.key in skipped:
            continue
        out = (needs.max_tokens or t.max_tokens or t.capabilities.max_output_tokens
               or _DEFAULT_MAX_OUTPUT)  # the limit each target is sent (runtime.request_for)
        c = worst_case_cost(price_of(t), needs.prompt_tokens or 0, out)
        if c is None:
            report.unpriced.append(t.key)
            continue
        worst = c if worst is None else max(worst, c)
        if t.key == report.answered_by:
            report.answer_cost_usd = c
    report.worst_cost_usd = worst


def _usd(v: float | None) -> str:
    return "unknown" if v is None else f"${v:.6f}".rstrip("0").rstrip(".") if v else "$0"


def render_text(r: DryRunReport) -> str:
    """The report as a terminal-friendly story, one target at a time."""
    n = r.needs
    wants = [w for w, on in (("tools", n.tools), ("images", n.vision),
                             ("documents", n.documents), ("json", n.json_object),
                             ("json schema", n.json_schema)) if on]
    lines = [f"route {r.alias!r}: {len(r.targets)} target(s), deadline "
             f"{format_duration(r.deadline) if r.deadline else 'none'}",
             f"request: ~{n.prompt_tokens} prompt tokens, max {n.max_tokens or 'default'} output"
             + (f", needs {', '.join(wants)}" if wants else "")
             + (", reasoning on" if n.reasoning else "")]
    for i, key in enumerate(r.targets, 1):
        lines.append(f"{i}. {key}")
        evs = [e for e in r.events if e.target == key]
        if not evs:
            lines.append("     not reached")
        for e in evs:
            if e.kind == "skip":
                lines.append(f"     skipped: {e.reason} ({e.detail})")
            elif e.kind == "try":
                lines.append(f"     try {e.try_number} (attempt {e.attempt}): {e.outcome} -> "
                             f"{e.action}")
        tries = [e for e in evs if e.kind == "try"]
        if tries:
            last = tries[-1]
            how = "adaptive" if last.first_token_adaptive else "set in the route file"
            lines.append(f"     first-token limit: {format_duration(last.first_token_s or 0.0)}"
                         f" ({how})")
    if r.recover:
        lines.append(f"stream recovery after the first chunk: {r.recover}")
    if r.answered_by:
        lines.append(f"answer: {r.answered_by}")
    else:
        lines.append(f"answer: none, the call fails with {r.failure}")
    lines.append(f"worst case: latency {format_duration(r.worst_latency_s)}, cost "
                 f"{_usd(r.worst_cost_usd)}"
                 + (f" (no price known for {', '.join(r.unpriced)})" if r.unpriced else ""))
    return "\n".join(lines)
