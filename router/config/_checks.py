"""Checks of effective values: timeouts that contradict each other (E030) or are zero (E032),
required capabilities (E051), retry backoff and timeouts against a route's deadline (E031,
W103). compile.py calls these; they only read the config and the compiled routes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.config._tables import Path, Report
from router.config.model import PoolCfg, RouteCfg, RouteFileCfg, TargetCfg, TimeoutCfg
from router.config.units import format_duration
from router.plan.routes import Route
from router.plan.targets import timeout_contradictions


def _timeout_blocks(cfg: RouteFileCfg) -> list[tuple[Path, TimeoutCfg | None]]:
    blocks: list[tuple[Path, TimeoutCfg | None]] = []
    if cfg.defaults:
        blocks.append((("defaults", "timeout"), cfg.defaults.timeout))
    for name, p in (cfg.providers or {}).items():
        blocks.append((("providers", name, "timeout"), p.timeout))
    for alias, raw in (cfg.models or {}).items():
        base: Path = ("models", alias)
        items: list[Any] = list(raw) if not isinstance(raw, RouteCfg) else raw.chain
        if isinstance(raw, RouteCfg):
            blocks.append(((*base, "timeout"), raw.timeout))
            base = (*base, "chain")
        for i, item in enumerate(items):
            if isinstance(item, TargetCfg):
                blocks.append(((*base, i, "timeout"), item.timeout))
            elif isinstance(item, PoolCfg):
                blocks += [((*base, i, "pool", j, "timeout"), m.timeout)
                           for j, m in enumerate(item.pool) if isinstance(m, TargetCfg)]
    return blocks


def check_layer_timeouts(cfg: RouteFileCfg, error: Report) -> set[str]:
    """E032 for a zero timeout, E030 where one block sets a timeout longer than its own total;
    the names found contradicting (their merged values are not reported again)."""
    contradicting: set[str] = set()
    for path, block in _timeout_blocks(cfg):
        if block is None:
            continue
        values = block.model_dump(exclude_none=True)
        for name, v in values.items():
            if v == 0:
                error((*path, name), "E032",
                      f"timeout {name} is 0s: every call would time out at once",
                      f"give {name} a positive duration such as 30s, or remove it to use the "
                      "default")
        for name, v, total in timeout_contradictions(values):
            error((*path, name), "E030",
                  f"timeout {name} ({format_duration(v)}) is longer than total "
                  f"({format_duration(total)})",
                  f"make total at least {format_duration(v)} or lower {name}")
            contradicting.add(name)
    return contradicting


def check_route(route: Route, paths: Mapping[str, Path], contradicting: set[str], *,
                explicit_deadline: bool, error: Report, warn: Report) -> None:
    """E030 and E051 per target of ``route``, then its deadline checks."""
    alias_path: Path = ("models", route.alias)
    for t in route.targets:
        to = t.timeouts
        where = paths.get(t.key, alias_path)
        for name in ("first_token", "connect", "idle"):
            v = getattr(to, name)
            if v > to.total and name not in contradicting:
                error(where, "E030",
                      f"{t.key}: timeout {name} ({format_duration(v)}) is longer than total "
                      f"({format_duration(to.total)}) in route {route.alias!r} once defaults "
                      "and overrides are merged",
                      f"make total at least {format_duration(v)} or lower {name}")
        for cap in sorted(route.requires):
            if not getattr(t.capabilities, cap, False):
                error(where, "E051", f"route {route.alias!r} requires {cap}, but {t.key} "
                      "does not support it",
                      f"remove {t.key} from the chain, or declare it under "
                      f"providers.{t.provider}.models.{t.model}.{cap}: true if the model does "
                      "support it")
    if route.deadline is not None and route.targets:
        _check_deadline(route, explicit_deadline, error, warn)


def _check_deadline(route: Route, explicit_deadline: bool, error: Report,
                    warn: Report) -> None:
    alias_path: Path = ("models", route.alias)
    deadline = route.deadline or 0.0
    if deadline <= 0:
        where = (("models", route.alias, "deadline") if explicit_deadline
                 else ("defaults", "deadline"))
        error(where, "E032", "deadline is 0s: every call would fail before its first attempt",
              "give deadline a positive duration such as 30s, or remove it for no deadline")
        return
    first = route.targets[0]
    waits = first.retry.worst_case_waits()
    if waits >= deadline:
        error(alias_path, "E031",
              f"the retry backoff of {first.key} alone ({format_duration(waits)} for "
              f"{first.retry.attempts} attempts) does not fit the deadline "
              f"({format_duration(deadline)}) of {route.alias!r}",
              "lower retry.attempts or retry.max, or raise the deadline", key=True)
    worst = first.retry.attempts * first.timeouts.total + waits
    if explicit_deadline and worst > deadline and len(route.targets) > 1:
        warn(alias_path, "W103",
             f"if {first.key} times out on every try ({first.retry.attempts} x "
             f"{format_duration(first.timeouts.total)} plus backoff = "
             f"{format_duration(worst)}), the deadline of {route.alias!r} "
             f"({format_duration(deadline)}) passes before any fallback",
             f"lower timeout.total or retry.attempts of {first.key}, or raise the deadline")
