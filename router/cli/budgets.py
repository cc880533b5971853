"""``router budgets``: each budget's spend, open holds and what is left in its current window,
read from the route file's state store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from router.plan.routes import BudgetSpec, Plan, StateSpec
from router.policy.budget import budget_key


def all_budgets(plan: Plan) -> list[BudgetSpec]:
    """The file's budgets and every alias's own budget, each once."""
    seen: dict[tuple[str, str], BudgetSpec] = {}
    for spec in [*plan.budgets, *(b for r in plan.routes.values() for b in r.budgets)]:
        seen.setdefault((spec.scope, spec.per), spec)
    return list(seen.values())


async def read_budgets(plan: Plan, now: float | None = None) -> list[dict[str, Any]]:
    """One row per budget: scope, window, cap, spent, reserved, remaining (US dollars)."""
    from router.state import make_store

    st = plan.state
    store = make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix)
    now = time.time() if now is None else now
    rows = []
    try:
        for spec in all_budgets(plan):
            key = budget_key(spec, now)
            usage = await store.usage(key.key)
            window = key.key.rsplit("|", 1)[1]
            spent, reserved = usage.spent_micro / 1e6, usage.reserved_micro / 1e6
            rows.append({"scope": spec.scope, "per": spec.per, "window": window,
                         "cap_usd": spec.usd, "spent_usd": spent, "reserved_usd": reserved,
                         "remaining_usd": max(0.0, spec.usd - spent - reserved),
                         "warn_at": spec.warn_at,
                         "resets_in_s": None if key.ttl is None else round(key.ttl)})
    finally:
        await store.aclose()
    return rows


def render(rows: list[dict[str, Any]], fmt: str, store_kind: str) -> str:
    if fmt == "json":
        return json.dumps({"store": store_kind, "budgets": rows}, indent=2)
    if not rows:
        return f"no budgets in this route file (store: {store_kind})"
    head = ("scope", "window", "cap", "spent", "reserved", "remaining")
    table = [head] + [
        (r["scope"], f"{r['per']} {r['window']}", f"${r['cap_usd']:.2f}",
         f"${r['spent_usd']:.4f}", f"${r['reserved_usd']:.4f}", f"${r['remaining_usd']:.4f}")
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in table]
    return "\n".join([f"store: {store_kind}", *lines])


def store_unavailable(state: StateSpec, error: Exception) -> str:
    """One line naming the state store and why it cannot be used (never its URL, which may
    hold a password: the store's error names host, port and database only)."""
    cause = (getattr(error, "message", None) or str(error)).rstrip(".")
    if state.kind == "sqlite" and state.path:
        cause += _sqlite_reason(Path(state.path))
    return f"state store unavailable: {cause}"


def _sqlite_reason(path: Path) -> str:
    """What is wrong with an SQLite file's directory, where sqlite only says "unable to open"."""
    parent = path.parent
    for p in (parent, *parent.parents):
        if p.exists() and not p.is_dir():
            return f" ({p} is a file, not a directory)"
    if not parent.exists():
        return f" (the directory {parent} does not exist)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f" (the directory {parent} is not writable)"
    if path.exists() and not os.access(path, os.W_OK):
        return f" ({path} is not writable)"
    return ""
