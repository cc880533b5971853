"""The routing decisions of one call, shared by the engine and dry-run (one code path).

``walk`` is a generator: it yields what to do next (Try a target, Skip it, Wait before a retry)
and is sent the outcome of each Try (None for success, the LlmError otherwise). The engine
drives it with real attempts; dry-run drives it with simulated outcomes and no I/O. So what
dry-run prints is what the router does.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

from router.engine.skips import missing_key_skip
from router.errors import RETRYABLE_CLASSES, Action, ErrorClass, LlmError
from router.plan.first_token import TOKENS_PER_SECOND, asks_reasoning, first_token_for
from router.plan.routes import RetryPolicy, Route, Target
from router.policy.tokens import estimate_prompt_tokens
from router.types import ChatRequest, FilePart, ImagePart, frozen_builder


@dataclass(slots=True, frozen=True)
class CallNeeds:
    """What a request needs from a target, computed once per call."""

    tools: bool = False
    vision: bool = False
    json_object: bool = False
    json_schema: bool = False
    stream: bool = False
    image_urls: bool = False  # an image is given by http(s) URL, not inline
    n: bool = False  # several choices (n > 1)
    prompt_tokens: int | None = None
    max_tokens: int | None = None  # the caller's, or the route's shared one (None: per target)
    reasoning: bool = False  # the request turns reasoning or thinking on
    documents: bool = False  # a PDF file part
    document_urls: bool = False  # ... given by http(s) URL


_needs = frozen_builder(CallNeeds)  # CallNeeds(...) at a third of the cost

#: CallNeeds of calls that need nothing special, by (stream, max_tokens): reused, not rebuilt.
_PLAIN_NEEDS: dict[tuple[bool, int | None], CallNeeds] = {}
_MAX_PLAIN_NEEDS = 512


def needs_for(request: ChatRequest, route: Route, stream: bool, estimate: bool = True, *,
              prompt_tokens: int | None = None, tools: bool = False,
              vision: bool = False) -> CallNeeds:
    """What ``request`` needs on ``route`` (the route's ``requires:`` included). ``estimate``:
    estimate the prompt's tokens when not given (only a target with a context window reads
    them; the engine passes False when no target of the route has one)."""
    rf = request.response_format
    images = url_images = files = url_files = False
    for m in request.messages:
        if type(m.content) is list:
            for p in m.content:
                if isinstance(p, ImagePart):
                    images = True
                    url_images = url_images or not p.is_data_url
                elif isinstance(p, FilePart):
                    files = True
                    url_files = url_files or not p.is_data_url
    requires = route.requires
    if prompt_tokens is None and estimate:
        prompt_tokens = estimate_prompt_tokens(request)
    max_tokens = request.max_tokens or route.max_tokens
    reasoning = (request.reasoning_effort is not None or bool(request.extra)) and asks_reasoning(
        request)
    if not (rf or images or files or tools or vision or request.tools or requires or reasoning
            or request.n is not None):
        if prompt_tokens is not None:  # nothing to ask of a target but room for the prompt
            return _needs(False, False, False, False, stream, False, False, prompt_tokens,
                          max_tokens, False, False, False)
        key = (stream, max_tokens)
        needs = _PLAIN_NEEDS.get(key)
        if needs is None:
            if len(_PLAIN_NEEDS) >= _MAX_PLAIN_NEEDS:
                _PLAIN_NEEDS.clear()
            needs = _PLAIN_NEEDS[key] = CallNeeds(stream=stream, max_tokens=max_tokens)
        return needs
    # Every field positional, in CallNeeds' order: keywords cost ~3k CPU instructions more.
    return _needs(
        tools or bool(request.tools) or "tools" in requires,  # tools
        vision or images or "vision" in requires,  # vision
        rf is not None and rf.type == "json_object",  # json_object
        (rf is not None and rf.type == "json_schema") or "json_schema" in requires,
        stream,
        url_images,  # image_urls
        request.n is not None,  # n
        prompt_tokens,
        max_tokens,
        reasoning,
        files or "documents" in requires,  # documents
        url_files,  # document_urls
    )


@dataclass(slots=True, frozen=True)
class Try:
    """Attempt ``target`` now, within ``timeout`` seconds."""

    target: Target
    attempt: int  # 1-based over the whole call
    try_number: int  # 1-based for this target
    timeout: float
    timeout_is_deadline: bool
    #: This call's adaptive first-token limit when it differs from the target's own
    #: (``timeouts.first_token``): a long prompt, or a request that turns reasoning on.
    first_token: float | None = None


_try = frozen_builder(Try)  # Try(...) at a third of the cost


@dataclass(slots=True, frozen=True)
class Skip:
    """Do not attempt ``target``: ``reason`` is missing_key, capability, context_window,
    breaker_open, budget, rate_limited_locally, store_unavailable or deadline."""

    target: Target
    reason: str
    detail: str


@dataclass(slots=True, frozen=True)
class Admit:
    """Ask the budgets and rate limits whether ``target`` may be tried now; the driver sends
    back None (go) or (reason, detail) (skip it)."""

    target: Target


@dataclass(slots=True, frozen=True)
class Wait:
    """Sleep ``seconds`` before retrying ``target``."""

    target: Target
    seconds: float
    cap: float  # the backoff cap (the worst case of the jittered wait)
    from_retry_after: bool
    after_error: LlmError


@dataclass(slots=True, frozen=True)
class Fallback:
    """Give up on ``target`` after ``error`` and go on to the next target. ``why``: fallback
    (the class's action), retries_exhausted, breaker_open (it opened meanwhile), deadline (no
    retry fits before it) or retry_after_too_long (past ``max_retry_after``)."""

    target: Target
    error: LlmError
    why: str


@dataclass(slots=True, frozen=True)
class Done:
    """The walk is over: ``ok``, or failed with ``error`` (None when nothing was attempted)."""

    ok: bool
    error: LlmError | None = None
    reason: str = ""  # why it failed: exhausted | fail_now | deadline


_DONE_OK = Done(True)

Decision = Try | Skip | Wait | Fallback | Done | Admit
Verdict = tuple[str, str] | None
Outcome = LlmError | Verdict


class WalkEnv(Protocol):
    """What the walk asks of the world: breaker state, budgets, the clock, randomness."""

    def breaker_allows(self, target: Target) -> bool: ...

    def gated(self, target: Target) -> bool:
        """Whether ``target`` is under a budget or a rate limit (then Admit is asked)."""
        ...

    def remaining(self) -> float | None: ...

    def jitter(self, policy: RetryPolicy, retry_number: int) -> float: ...


_TOKENS_IN_MESSAGE = re.compile(r"(?:resulted in|prompt is too long:?)\s*(\d[\d,]*)\s*tokens")


def needed_tokens(error: LlmError) -> int | None:
    """The prompt size a context_window error reports, if it says."""
    n = getattr(error, "needed_tokens", None)
    if isinstance(n, int):
        return n
    m = _TOKENS_IN_MESSAGE.search(error.provider_message or error.message or "")
    return int(m.group(1).replace(",", "")) if m else None


def skip_reason(target: Target, needs: CallNeeds, min_window: int | None) -> tuple[str, str] | None:
    """Why ``target`` cannot serve this request, from the plan alone (no state)."""
    if target.missing_env:  # flagged once, when the plan was compiled
        return missing_key_skip(target)
    caps = target.capabilities
    if needs.tools and not caps.tools:
        return "capability", f"{target.model} does not support tools"
    if needs.vision and not caps.vision:
        return "capability", f"{target.model} does not accept images"
    if needs.image_urls and not caps.image_urls:
        return "capability", f"{target.kind} takes images only inline (data: URLs)"
    if needs.documents and not caps.documents:
        return "capability", f"{target.model} does not read documents (PDF)"
    if needs.document_urls and not caps.document_urls:
        return "capability", f"{target.kind} takes documents only inline (data: URLs)"
    if needs.json_schema and not caps.json_schema:
        return "capability", f"{target.model} does not support JSON schema output"
    if needs.stream and not caps.streaming:
        return "capability", f"{target.model} does not stream"
    if needs.n and not caps.n:
        return "capability", f"{target.kind} returns one choice per call (n > 1 asked)"
    window = caps.context_window
    if window is not None:
        if min_window is not None and window < min_window:
            return ("context_window",
                    f"window {window} < {min_window} tokens reported by an earlier target")
        if needs.prompt_tokens is not None:
            # The output limit it is sent: the caller's (or the route's shared one), else its own.
            out = needs.max_tokens or target.max_tokens or 0
            if needs.prompt_tokens + out > window:
                return ("context_window", f"~{needs.prompt_tokens} prompt + "
                        f"{out} output tokens > window {window}")
    return None


#: Timeouts that say the provider is silent, not slow: the next target at once (interface 1:
#: a pool timeout, no free connection in time, acts the same). Only a chain's last target
#: that can still be tried retries them.
FAST_FALLBACK_TIMEOUTS = frozenset({"connect", "first_token", "pool"})


def action_for(target: Target, error: LlmError, *, more_targets: bool = False) -> Action:
    """What to do after ``error`` on ``target``: the route's ``on:`` table, then built-ins.
    ``more_targets``: a later target of this call can still be tried."""
    action = target.actions.get(error.error_class, Action.FALLBACK)
    if action is Action.RETRY:
        if not error.retryable and error.error_class in RETRYABLE_CLASSES:
            # A transient class the server said not to retry (x-should-retry: false). A class
            # that is not transient by default is retried only because ``on:`` asked to.
            return Action.FALLBACK
        if more_targets and error.timeout_kind in FAST_FALLBACK_TIMEOUTS:
            return Action.FALLBACK
    return action


def retry_wait(target: Target, error: LlmError, try_number: int, env: WalkEnv) -> Wait | str:
    """The wait before retrying ``target`` after ``error``, or why not (then fall back):
    retry_after_too_long or deadline. Retry-After wins when present and within
    ``max_retry_after``; the deadline caps both."""
    policy = target.retry
    cap = policy.backoff_cap(try_number)
    if error.retry_after is not None:
        if error.retry_after > policy.max_retry_after:
            return "retry_after_too_long"
        seconds, from_ra = error.retry_after, True
    else:
        seconds, from_ra = env.jitter(policy, try_number), False
    remaining = env.remaining()
    if remaining is not None and seconds >= remaining:
        return "deadline"
    return Wait(target, seconds, cap, from_ra, error)


def walk(order: Sequence[Target], needs: CallNeeds,
         env: WalkEnv) -> Generator[Decision, Outcome, None]:
    """Yield the decisions of one call over ``order`` (its route's targets for this call).
    Try and Admit are sent their outcome; every other decision is resumed with ``next``."""
    last: LlmError | None = None
    min_window: int | None = None
    attempt = 0
    # Whether this call's first-token limit can differ from its targets' own (most do not).
    moves = needs.reasoning or (needs.prompt_tokens or 0) >= TOKENS_PER_SECOND
    for index, target in enumerate(order):
        why = skip_reason(target, needs, min_window)
        if why is None and not env.breaker_allows(target):
            why = ("breaker_open", "circuit breaker is open")
        if why is not None:
            yield Skip(target, *why)
            continue
        try_number = 0
        while True:
            remaining = env.remaining()
            if remaining is not None and remaining <= 0:
                yield Skip(target, "deadline", "the call deadline has passed")
                yield Done(False, last, "deadline")
                return
            if env.gated(target):
                verdict = yield Admit(target)
                if verdict is not None:
                    yield Skip(target, *verdict)  # type: ignore[misc]
                    break
                remaining = env.remaining()  # a rate limit may have waited
            try_number += 1
            attempt += 1
            total = target.timeouts.total
            limit = total if remaining is None else min(total, remaining)
            error = yield _try(target, attempt, try_number, limit,
                              remaining is not None and remaining < total,
                              first_token_for(target, needs.prompt_tokens, needs.reasoning)
                              if moves else None)
            assert not isinstance(error, tuple)
            if error is None:
                yield _DONE_OK
                return
            last = error
            if error.error_class is ErrorClass.CONTEXT_WINDOW:
                min_window = needed_tokens(error) or _above(target.capabilities.context_window)
            more = error.timeout_kind in FAST_FALLBACK_TIMEOUTS and any(
                skip_reason(t, needs, min_window) is None for t in order[index + 1:])
            action = action_for(target, error, more_targets=more)
            if action is Action.FAIL:
                yield Done(False, error, "fail_now")
                return
            gave_up = _why_not_retry(target, error, action, try_number, env)
            if isinstance(gave_up, Wait):
                yield gave_up
                continue
            yield Fallback(target, error, gave_up)
            break
    yield Done(False, last, "exhausted")


def _why_not_retry(target: Target, error: LlmError, action: Action, try_number: int,
                   env: WalkEnv) -> Wait | str:
    if action is not Action.RETRY:
        return "fallback"
    if try_number >= target.retry.attempts:
        return "retries_exhausted"
    # A breaker that opened meanwhile (a failed half-open probe, or failures of concurrent
    # calls) stops the retries: the probe is one request, not a series.
    if not env.breaker_allows(target):
        return "breaker_open"
    return retry_wait(target, error, try_number, env)


def _above(window: int | None) -> int | None:
    return window + 1 if window is not None else None


def order_targets(route: Route, rng: random.Random, position: int) -> list[Target]:
    """The targets of ``route`` in the order this call tries them (pools expanded).
    ``position`` counts the calls of this route: round-robin pools rotate by it and weighted
    pools pick their first member by it (so a pool follows its weights exactly over each
    cycle of calls); random pools and the rest of a weighted pool draw from ``rng``."""
    out: list[Target] = []
    for step in route.steps:
        ts = step.targets
        if len(ts) == 1 or step.strategy in ("single", "ordered"):
            out.extend(ts)
        elif step.strategy == "round_robin":
            k = position % len(ts)
            out.extend(ts[k:] + ts[:k])
        elif step.strategy == "random":
            shuffled = list(ts)
            rng.shuffle(shuffled)
            out.extend(shuffled)
        else:
            out.extend(_weighted(ts, rng, position))
    return out


def _weighted(ts: Sequence[Target], rng: random.Random, position: int) -> list[Target]:
    """The member at ``position`` of the pool's smooth weighted round-robin cycle first, then
    the others as a weighted random permutation (Efraimidis-Spirakis keys)."""
    cycle = _weighted_cycle(tuple(t.weight for t in ts))
    if not cycle:
        return list(ts)
    pick = cycle[position % len(cycle)]
    rest = sorted((t for i, t in enumerate(ts) if i != pick),
                  key=lambda t: -(rng.random() ** (1.0 / t.weight)) if t.weight > 0 else 1.0)
    return [ts[pick], *rest]


_MAX_CYCLE = 1000


@functools.lru_cache(maxsize=256)
def _weighted_cycle(weights: tuple[float, ...]) -> tuple[int, ...]:
    """Smooth weighted round-robin (nginx's): over one cycle each member comes first as many
    times as its weight, spread evenly. Weights are made whole numbers (a cycle of at most
    ~1000 picks); a weight of 0 is never picked."""
    if all(float(w).is_integer() for w in weights) and sum(weights) <= _MAX_CYCLE:
        ints = [int(w) for w in weights]
    else:
        scale = _MAX_CYCLE / sum(weights)
        ints = [max(1, round(w * scale)) if w > 0 else 0 for w in weights]
    divisor = math.gcd(*ints)
    if divisor == 0:
        return ()
    ints = [w // divisor for w in ints]
    total = sum(ints)
    current = [0] * len(ints)
    cycle: list[int] = []
    for _ in range(total):
        for i, w in enumerate(ints):
            current[i] += w
        best = max(range(len(ints)), key=current.__getitem__)
        current[best] -= total
        cycle.append(best)
    return tuple(cycle)


def jittered_wait(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, cap] (tenacity's
    wait_random_exponential), drawn from ``rng`` so a seeded Router repeats its waits."""
    cap = policy.backoff_cap(retry_number)
    if policy.jitter == "none":
        return cap
    return rng.uniform(0.0, cap)


__all__ = ["Admit", "CallNeeds", "Decision", "Done", "Fallback", "Skip", "Try", "Wait", "walk"]
