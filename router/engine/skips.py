"""Skips that stop a call by themselves: the reason a target is skipped for a missing key, and
the error a call ends with when no target could be tried. The engine (``Call.failed``) and
dry-run both ask here, so dry-run names the error the call would raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from router.errors import ErrorClass, LlmError, make_error
from router.plan.routes import Target

MISSING_KEY = "missing_key"
STORE_UNAVAILABLE = "store_unavailable"

#: The class of a call whose every target was skipped, by the first reason found in this
#: order: the store is down, a budget or a local rate limit refused; else no_route (a key is
#: missing, no target can serve the request: our configuration, not the provider's answer,
#: so never ``auth``, which says a provider refused a key).
_CLASS_OF_SKIP = (
    (STORE_UNAVAILABLE, ErrorClass.STORE_UNAVAILABLE),
    ("budget", ErrorClass.BUDGET_EXCEEDED),
    ("rate_limited_locally", ErrorClass.RATE_LIMITED_LOCALLY),
    (MISSING_KEY, ErrorClass.NO_ROUTE),
)


class SkipLike(Protocol):
    """An AttemptRecord or a dry-run event: what was skipped, and why."""

    @property
    def target(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def detail(self) -> str | None: ...


def missing_key_skip(target: Target) -> tuple[str, str]:
    """Why ``target`` is skipped: its provider's variables (never their values) are unset."""
    names = target.missing_env
    verb = "is" if len(names) == 1 else "are"
    return MISSING_KEY, (f"provider {target.provider!r} needs {', '.join(names)}, which "
                         f"{verb} not set in the environment")


def missing_variables(skips: Iterable[SkipLike], targets: Iterable[Target]) -> list[str]:
    """The variables to set for the targets skipped for a missing key, in chain order."""
    skipped = {s.target for s in skips if s.reason == MISSING_KEY}
    found: dict[str, None] = {}
    for t in targets:
        if t.key in skipped:
            found.update(dict.fromkeys(t.missing_env))
    return list(found)


def skip_error(skips: Sequence[SkipLike], targets: Iterable[Target]) -> LlmError | None:
    """The error of a call that tried no target: its class from the skip reasons (see
    ``_CLASS_OF_SKIP``), its message each such skip's detail (for missing keys: which
    variables to set); None when the skips were of other kinds (capability, context window,
    breaker open: no_route)."""
    reasons = {s.reason for s in skips}
    for reason, cls in _CLASS_OF_SKIP:
        if reason in reasons:
            text = "; ".join(f"{s.target}: {s.detail}" for s in skips if s.reason == reason)
            if reason == MISSING_KEY:
                text = (f"set {', '.join(missing_variables(skips, targets))} in the "
                        f"environment ({text})")
            return make_error(cls, text, retryable=False)
    return None


def skipped_message(alias: str, skips: Sequence[SkipLike], targets: Iterable[Target]) -> str:
    """``no target of 'fast' could be tried: a:m skipped (budget: ...); ...`` and, when a key
    was missing, which variables to set."""
    msg = (f"no target of {alias!r} could be tried: "
           + "; ".join(f"{s.target} skipped ({s.reason}: {s.detail})" for s in skips))
    return msg + missing_note(skips, targets)


def missing_note(skips: Sequence[SkipLike], targets: Iterable[Target]) -> str:
    """``; set GEMINI_API_KEY to try the targets skipped for it`` (empty when none was)."""
    names = missing_variables(skips, targets)
    if not names:
        return ""
    return f"; set {', '.join(names)} to try the targets skipped for a missing key"
