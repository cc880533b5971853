"""``router routes`` (``router ls``): what a route file sets up, at a glance.

Aliases with their chains (pools shown with their strategy and weights), providers with their
kind and whether the variable holding their key is set, and budgets. A key's value is never
read into the output: only the name of its variable and whether it is set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from router.cli.budgets import all_budgets
from router.config.validate import ValidationResult
from router.plan.routes import BudgetSpec, Plan, ProviderSpec, Route, Step
from router.providers import registry


def _step(step: Step) -> dict[str, Any]:
    if len(step.targets) == 1 and step.strategy == "single":
        return {"target": step.targets[0].key}
    return {"pool": [{"target": t.key, "weight": t.weight} for t in step.targets],
            "strategy": step.strategy}


def _alias(route: Route) -> dict[str, Any]:
    return {"name": route.alias, "chain": [_step(s) for s in route.steps],
            "deadline_s": route.deadline, "requires": sorted(route.requires),
            "max_tokens": route.max_tokens}


def _key_status(result: ValidationResult, spec: ProviderSpec) -> dict[str, Any]:
    """The key's variable (the file's ``${VAR}``, else the kind's) and whether it is set:
    ``literal`` for a key written in the file, ``not needed`` for a kind that needs none."""
    has_key = spec.api_key is not None
    doc, cfg = result.document, result.config
    refs = [] if doc is None else [r for r in doc.env_refs
                                   if r.path[:3] == ("providers", spec.name, "api_key")]
    if refs:
        return {"key_env": refs[0].var, "key": "set" if has_key else "not set"}
    p = None if cfg is None or cfg.providers is None else cfg.providers.get(spec.name)
    if p is not None and "api_key" in p.model_fields_set:
        return {"key_env": None, "key": "literal" if has_key else "not set"}
    if spec.key_env is not None and (has_key or registry.requires_key(spec.kind)):
        return {"key_env": spec.key_env, "key": "set" if has_key else "not set"}
    return {"key_env": spec.key_env, "key": "not needed"}


def _budget(spec: BudgetSpec) -> dict[str, Any]:
    return {"scope": spec.scope, "usd": spec.usd, "per": spec.per, "warn_at": spec.warn_at}


def describe(result: ValidationResult) -> dict[str, Any]:
    """The route file of a (compiled) validation result as plain data."""
    plan: Plan | None = result.plan
    assert plan is not None  # the caller loaded a file that compiles
    providers = [{"name": s.name, "kind": s.kind, **_key_status(result, s)}
                 for s in plan.providers.values()]
    return {"file": result.file, "aliases": [_alias(r) for r in plan.routes.values()],
            "providers": providers, "budgets": [_budget(b) for b in all_budgets(plan)],
            "state": plan.state.kind}


def _chain_text(chain: list[dict[str, Any]]) -> str:
    parts = []
    for step in chain:
        if "target" in step:
            parts.append(step["target"])
            continue
        members = ", ".join(m["target"] + (f" x{m['weight']:g}" if m["weight"] != 1 else "")
                            for m in step["pool"])
        parts.append(f"pool {step['strategy']} [{members}]")
    return " -> ".join(parts)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def render(info: dict[str, Any], fmt: str) -> str:
    """``info`` (from ``describe``) as JSON or as text sections."""
    if fmt == "json":
        return json.dumps(info, indent=2)
    lines = [f"file: {info['file']} (state: {info['state']})", "aliases:"]
    aliases = [(a["name"], _chain_text(a["chain"])) for a in info["aliases"]]
    lines += _table(aliases) if aliases else ["  (none: call provider:model names)"]
    lines.append("providers:")
    providers = [(p["name"], p["kind"], _key_text(p)) for p in info["providers"]]
    lines += _table(providers) if providers else ["  (none)"]
    lines.append("budgets:")
    budgets = [(b["scope"], f"${b['usd']:g} " + ("in total" if b["per"] == "total"
                                                  else f"per {b['per']}"))
               for b in info["budgets"]]
    lines += _table(budgets) if budgets else ["  (none)"]
    return "\n".join(lines)


def _key_text(p: dict[str, Any]) -> str:
    if p["key"] == "literal":
        return "key written in the file"
    if p["key"] == "not needed":
        return "no key needed"
    return f"{p['key_env']} {p['key']}"


__all__ = ["describe", "render"]
