"""``router budgets``: each budget's spend, open holds and what is left in its current window,
read from the route file's state store."""

from __future__ import annotations

import json
import time
from typing import Any

from router.plan.routes import BudgetSpec, Plan
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
