"""How long a large route file takes to validate and to turn into a Router.

    python bench/validate_bench.py            # 5,000 aliases, 200 providers, best of 5
    python bench/validate_bench.py --quick    # 500 aliases, 20 providers, best of 2
    python bench/validate_bench.py --profile  # profile validate_file even when under the goal

Generates a route file (mixed provider kinds, chains of 2-4 targets, target overrides, pools,
budgets, error rules) into a temp dir, then times ``router.config.validate.validate_file`` and
``Router.from_yaml`` on it against the goal "well under a second", with ``yaml.safe_load`` of the
same file as the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from router import Router
from router.config.validate import validate_file
from router.providers import registry
from router.providers.base import Capabilities, Provider

GOAL_S = 1.0
KINDS = ("openai", "openai-compatible", "anthropic", "google", "ollama", "fake")
MODELS = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"),
    "openai-compatible": ("llama-3.1-70b", "mixtral-8x7b", "qwen2.5-72b"),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5"),
    "google": ("gemini-2.5-flash", "gemini-2.5-pro"),
    "ollama": ("llama3.2", "qwen2.5:7b"),
    "fake": ("m1", "m2"),
}
ERROR_CLASSES = ("rate_limit", "server", "overloaded", "content_policy", "timeout")


# --------------------------------------------------------------------------------------------
# the route file


def _provider(i: int, kind: str, rng: random.Random) -> dict[str, Any]:
    p: dict[str, Any] = {"kind": kind}
    if kind != "ollama" and kind != "fake":
        p["api_key"] = f"${{KEY_{i:03d}}}"
    if kind == "openai-compatible":
        p["base_url"] = f"https://compat{i}.example.com/v1"
        if rng.random() < 0.3:
            p["max_tokens_field"] = "max_completion_tokens"
    elif kind == "ollama":
        p["base_url"] = f"http://10.0.{i // 250}.{i % 250}:11434"
        p["keep_alive"] = "5m"
    elif kind == "anthropic":
        p["anthropic_version"] = "2023-06-01"
    elif kind == "fake":
        p["script"] = ["ok", {"outcome": "rate_limit", "retry_after": "1s"}]
    if rng.random() < 0.3:
        p["timeout"] = {"connect": "2s", "total": f"{rng.randint(20, 90)}s"}
    if rng.random() < 0.2:
        p["retry"] = {"attempts": rng.randint(1, 3), "initial": "200ms"}
    if rng.random() < 0.2:
        model = MODELS[kind][0]
        p["models"] = {model: {"context_window": 128_000,
                               "price": {"input": 0.5, "output": 1.5}}}
    return p


def _target(ref: str, rng: random.Random) -> str | dict[str, Any]:
    if rng.random() >= 0.2:
        return ref
    obj: dict[str, Any] = {"target": ref}
    roll = rng.random()
    if roll < 0.4:
        obj["timeout"] = {"total": f"{rng.randint(5, 30)}s"}
    elif roll < 0.7:
        obj["retry"] = {"attempts": rng.randint(1, 3)}
    else:
        obj["on"] = {rng.choice(ERROR_CLASSES): rng.choice(("retry", "fallback", "fail"))}
    if rng.random() < 0.3:
        obj["max_tokens"] = rng.choice((256, 1024, 4096))
    return obj


def _route(alias: str, refs: list[str], rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.4:
        return refs
    chain: list[Any] = [_target(r, rng) for r in refs]
    if roll > 0.75 and len(refs) >= 3:  # the first two targets share one step
        chain = [{"pool": chain[:2], "strategy": rng.choice(("weighted", "round_robin",
                                                              "random", "ordered"))},
                 *chain[2:]]
    route: dict[str, Any] = {"chain": chain}
    if rng.random() < 0.3:
        route["budget"] = {"usd": rng.choice((1, 5, 20)), "per": rng.choice(("hour", "day"))}
    if rng.random() < 0.2:
        route["on"] = {"content_policy": "fail"}
    if rng.random() < 0.2:
        route["deadline"] = "10m"
    if rng.random() < 0.1:
        route["description"] = f"route {alias}"
    return route


def route_file(aliases: int, providers: int, seed: int = 0) -> tuple[dict[str, Any],
                                                                       dict[str, str]]:
    """The route file's data and the environment its ``${KEY_n}`` references need."""
    rng = random.Random(seed)
    provs: dict[str, dict[str, Any]] = {}
    for i in range(providers):
        provs[f"p{i:03d}"] = _provider(i, KINDS[i % len(KINDS)], rng)
    names = list(provs)
    models: dict[str, Any] = {}
    for a in range(aliases):
        picked = rng.sample(names, rng.randint(2, 4))
        refs = [f"{p}:{rng.choice(MODELS[provs[p]['kind']])}" for p in picked]
        models[f"a{a:05d}"] = _route(f"a{a:05d}", refs, rng)
    budgets = [{"scope": "global", "usd": 500, "per": "month"}]
    budgets += [{"scope": f"provider:{n}", "usd": 50, "per": "day"} for n in names[::10]]
    budgets += [{"scope": f"alias:a{a:05d}", "usd": 5, "per": "hour"}
                for a in range(0, aliases, 100)]
    data = {
        "version": 1,
        "defaults": {"timeout": {"connect": "5s", "first_token": "20s", "total": "60s"},
                     "retry": {"attempts": 2, "initial": "500ms", "max": "8s"}},
        "providers": provs,
        "models": models,
        "errors": [{"provider": n, "status": 400, "match": "maximum context length",
                    "class": "context_window"} for n in names[1::12]],
        "budgets": budgets,
    }
    env = {f"KEY_{i:03d}": f"sk-bench-{i:03d}-0123456789" for i in range(providers)}
    return data, env


def write_file(data: Mapping[str, Any], path: Path) -> None:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)
    path.write_text("# generated by bench/validate_bench.py\n" + text)


# --------------------------------------------------------------------------------------------
# kinds this installation does not implement yet


class _StubProvider(Provider):
    """Stands in for a kind with no provider class yet, so Router() can be built; no I/O."""

    kind: ClassVar[str] = "stub"
    capabilities_default: ClassVar[Capabilities] = Capabilities()

    async def chat(self, model: str, request: Any, timeouts: Any) -> Any:
        raise NotImplementedError

    async def stream(self, model: str, request: Any, timeouts: Any) -> Any:
        raise NotImplementedError
        yield


def stub_missing_kinds() -> list[str]:
    """Register a stub for each kind of KINDS this installation cannot serve; return them."""
    missing = [k for k in KINDS if not registry.is_available(k)]
    for kind in missing:
        env_var = registry.key_env(kind)
        registry.register_provider_kind(kind, type(
            f"Stub_{kind}", (_StubProvider,), {"kind": kind, "key_env": env_var}))
    return missing


# --------------------------------------------------------------------------------------------
# timing


@dataclass(frozen=True)
class Timing:
    """Best and median wall time of N runs, the best CPU time (less hurt by a busy machine)
    and the time the garbage collector took during the best run."""

    best: float
    median: float
    cpu: float
    gc: float


class _GcClock:
    """Wall time spent inside the cyclic garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


def best_of(n: int, fn: Callable[[], Any]) -> Timing:
    runs: list[tuple[float, float, float]] = []
    for _ in range(n):
        gc.collect()  # each run starts from the same heap, not the last run's garbage
        clock = _GcClock()
        gc.callbacks.append(clock)
        try:
            t, c = time.perf_counter(), time.process_time()
            fn()
            runs.append((time.perf_counter() - t, time.process_time() - c, clock.total))
        finally:
            gc.callbacks.remove(clock)
    best = min(runs)
    return Timing(best[0], statistics.median(r[0] for r in runs), min(r[1] for r in runs),
                  best[2])


def profile(fn: Callable[[], Any], what: str, top: int = 10) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    out.write(f"\n-- profile of {what}: top {top} functions by tottime --\n")
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    out.write(f"-- the same, top {top} in router/ by cumulative time --\n")
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(r"/router/", top)
    return out.getvalue()


def check_result(path: Path, env: Mapping[str, str]) -> int:
    """Validate once, fail loudly if the generated file is not clean; return its alias count."""
    result = validate_file(path, env=env)
    if result.errors or result.plan is None:
        for d in result.errors[:10]:
            print(f"  {d}", file=sys.stderr)
        raise SystemExit(f"the generated file has {len(result.errors)} error(s)")
    return len(result.plan.routes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="route file validation speed")
    parser.add_argument("--quick", action="store_true", help="500 aliases, 20 providers, best of 2")
    parser.add_argument("--aliases", type=int, default=None)
    parser.add_argument("--providers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="best of N (default 5)")
    parser.add_argument("--profile", action="store_true", help="profile even when under 1 s")
    args = parser.parse_args(argv)
    aliases = args.aliases or (500 if args.quick else 5000)
    providers = args.providers or (20 if args.quick else 200)
    repeat = args.repeat or (2 if args.quick else 5)

    stubbed = stub_missing_kinds()
    data, env = route_file(aliases, providers)
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        path = Path(tmp) / "routes.yaml"
        write_file(data, path)
        size = path.stat().st_size
        print(f"route file: {aliases} aliases, {providers} providers "
              f"({', '.join(KINDS)}), {size / 1024:.0f} KiB, {len(path.read_text().splitlines())}"
              f" lines; best of {repeat}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if stubbed:
            print(f"note: kinds without a provider class here, stubbed for Router(): "
                  f"{', '.join(stubbed)}")
        routes = check_result(path, env)
        print(f"validated clean: {routes} routes compiled")

        text = path.read_text()
        c_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        base = best_of(repeat, lambda: yaml.safe_load(text))
        c_base = best_of(repeat, lambda: yaml.load(text, Loader=c_loader))
        t_val = best_of(repeat, lambda: validate_file(path, env=env))
        t_router = best_of(repeat, lambda: Router.from_yaml(path, env=env))
        print_table([("yaml.safe_load (baseline)", base, "-"),
                     ("yaml.load(CSafeLoader)", c_base, "-"),
                     ("router.config.validate.validate_file", t_val, _verdict(t_val.best)),
                     ("Router.from_yaml", t_router, _verdict(t_router.best))],
                    base.best, c_base.best)
        slow = max(t_val.best, t_router.best) > GOAL_S
        if slow or args.profile:
            print(profile(lambda: Router.from_yaml(path, env=env),
                          f"Router.from_yaml ({aliases} aliases)"))
    return 0


def _verdict(seconds: float) -> str:
    if seconds > GOAL_S:
        return "MISSED (over 1 s)"
    if seconds > GOAL_S / 2:
        return "ok, but not well under (> 0.5 s)"
    return "ok (well under)"


def print_table(rows: list[tuple[str, Timing, str]], base: float, c_base: float) -> None:
    print(f"\n{'step':30} {'best s':>7} {'median s':>8} {'cpu s':>6} {'gc s':>6} "
          f"{'vs safe_load':>12} {'vs CSafeLoader':>14}  verdict (goal: well under "
          f"{GOAL_S:.0f} s)")
    for name, t, verdict in rows:
        print(f"{name:30} {t.best:7.3f} {t.median:8.3f} {t.cpu:6.3f} {t.gc:6.3f} "
              f"{t.best / base:11.2f}x {t.best / c_base:13.2f}x  {verdict}")


if __name__ == "__main__":
    sys.exit(main())
