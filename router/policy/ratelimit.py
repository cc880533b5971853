"""Local rate limits (requests and tokens per minute) that skip, or wait within the deadline,
instead of sending a request the provider would answer with 429."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from router.obs import log
from router.plan.routes import RateLimitSpec
from router.state.base import StateStore, StoreError

_WINDOW = 60.0


async def _take(store: StateStore, spec: RateLimitSpec, tokens: int) -> float:
    """0.0 when this request fits every limit of ``spec`` (and is counted), else the wait."""
    if spec.tpm is not None:
        if tokens > spec.tpm:  # it would never fit: the provider would refuse it too
            return math.inf
        wait = await store.rate_acquire(f"rl|{spec.key}|tpm", spec.tpm, tokens, _WINDOW)
        if wait > 0:
            return wait
    if spec.rpm is not None:
        # Tokens taken above stay counted if the request limit refuses: the limiter then errs
        # on the side of sending less, never more.
        return await store.rate_acquire(f"rl|{spec.key}|rpm", spec.rpm, 1, _WINDOW)
    return 0.0


async def acquire(store: StateStore, limits: Sequence[RateLimitSpec], tokens: int,
                  remaining: float | None, *, fail_open: bool) -> str | None:
    """None when the request may go now (waiting first where a limit says ``wait`` and the
    deadline allows); else why it may not. Raises StoreError when the store is down and the
    policy is fail_closed (``fail_open``: that limit is not applied)."""
    for spec in limits:
        while True:
            try:
                wait = await _take(store, spec, tokens)
            except StoreError as e:
                log.emit("store_error", operation="rate_limit", error=e.message,
                         policy="fail_open" if fail_open else "fail_closed")
                if fail_open:
                    break
                raise
            if wait <= 0:
                break
            what = (f"{spec.key}: {tokens} tokens exceed {spec.tpm} per minute"
                    if math.isinf(wait) else
                    f"{spec.key} at its limit ({_describe(spec)}): next slot in {wait:.2f}s")
            if spec.mode != "wait" or (remaining is not None and wait >= remaining):
                return what
            await asyncio.sleep(wait)
            if remaining is not None:
                remaining -= wait
    return None


def _describe(spec: RateLimitSpec) -> str:
    parts = [f"{spec.rpm} rpm" if spec.rpm else "", f"{spec.tpm} tpm" if spec.tpm else ""]
    return ", ".join(p for p in parts if p)
