"""The file-wide tables of a route file: budgets, ``errors:`` rules, and the price check of
every target (compile.py calls these once the routes are compiled)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from router.config.model import RouteFileCfg
from router.plan.routes import BudgetSpec, ErrorRule, Plan, ProviderSpec, Route

if TYPE_CHECKING:
    from router.config._salvage import Dropped

Path = tuple[str | int, ...]


class Report(Protocol):
    """The compiler's error or warn: one diagnostic at ``path``."""

    def __call__(self, path: Path, code: str, message: str, hint: str = "", *,
                 key: bool = False) -> Any: ...


def compile_budgets(cfg: RouteFileCfg, providers: Mapping[str, ProviderSpec],
                    routes: Mapping[str, Route], error: Report, dropped: Dropped,
                    unsure: Collection[str] = ()) -> list[BudgetSpec]:
    """The file's budgets; E040 for a scope that names nothing in the file (unless it may
    name what salvage left out of a file with structural errors)."""
    out: list[BudgetSpec] = []
    targets = {t.key for r in routes.values() for t in r.targets}
    for i, b in enumerate(cfg.budgets or []):
        if dropped.lost_entry("budgets", i):
            continue
        kind, _, rest = b.scope.partition(":")
        if ((kind == "provider" and dropped.lost_provider(rest))
                or (kind == "alias" and dropped.lost_alias(rest))
                or (kind == "target" and (unsure or dropped.providers or dropped.aliases
                                          or dropped.all_providers or dropped.all_aliases))):
            continue
        known: Sequence[str] = ()
        if kind == "provider":
            known = list(providers)
        elif kind == "alias":
            known = list(cfg.models or {})
        elif kind == "target":
            known = sorted(targets)
        if kind in ("provider", "alias", "target") and rest not in known:
            close = difflib.get_close_matches(rest, list(known), n=1)
            error(("budgets", i, "scope"), "E040",
                       f"budget scope {b.scope!r} names no {kind} of this file",
                       f"did you mean {kind}:{close[0]}?" if close else
                       "use one of: global, provider:NAME, alias:NAME, target:P:M, "
                       "tag:KEY=VALUE")
            continue
        out.append(BudgetSpec(b.scope, b.usd, b.per or "total", b.warn_at))
    return out

def check_prices(plan: Plan, warn: Report, dropped: Dropped) -> None:
    """W106 for each target without a known price (list price or the file's ``price:``);
    none for a provider that lost a part to salvage (its ``price:`` may be in it)."""
    from router.policy.pricing import price_of

    seen: set[str] = set()
    for alias, route in plan.routes.items():
        for t in route.targets:
            if t.key in seen or price_of(t) is not None or dropped.touches(
                    "providers", t.provider):
                continue
            seen.add(t.key)
            budgeted = bool(route.budgets or plan.budgets)
            policy = t.unknown_price or ("fail" if budgeted else "zero")
            warn(("models", alias), "W106",
                      f"no known price for {t.key}: its cost is unknown"
                      + (" and, under a budget, it is skipped (unknown_price: fail)"
                         if policy == "fail" and budgeted else ""),
                      f"add providers.{t.provider}.models.{t.model}.price: "
                      "{input: USD per 1M, output: USD per 1M}, or set unknown_price: "
                      "zero", key=True)

def compile_error_rules(cfg: RouteFileCfg, providers: Mapping[str, ProviderSpec],
                        error: Report, dropped: Dropped) -> list[ErrorRule]:
    """The file's ``errors:`` rules; E042 for a rule naming an undefined provider."""
    rules = []
    for i, r in enumerate(cfg.errors or []):
        if dropped.lost_entry("errors", i):
            continue
        if (r.provider is not None and r.provider not in providers
                and not dropped.lost_provider(r.provider)):
            error(("errors", i, "provider"), "E042",
                       f"error rule names provider {r.provider!r}, which is not defined",
                       f"defined providers: {', '.join(providers) or 'none'}")
        rules.append(ErrorRule(r.error_class, r.provider, r.kind, r.status, r.code, r.type,
                               r.match.lower() if r.match else None))
    return rules
