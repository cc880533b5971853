"""The benches run: each in its tiny ``--quick`` mode, as a subprocess.

No timing is asserted (the machine is shared and noisy): only that a bench exits 0 and prints
its figures as ratios against the baseline it measured in the same run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
RATIO = r"\d+\.\d\dx"


def run_bench(script: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True,
                          text=True, timeout=300, cwd=BENCH.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def row(out: str, metric: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(metric)]
    assert lines, f"no {metric!r} line in:\n{out}"
    return lines[0]


def test_overhead_bench_prints_every_ratio() -> None:
    out = run_bench("overhead.py")
    assert re.search(r"^metric\s+raw\s+router\s+ratio\s+spread\s+target\s+verdict", out, re.M)
    for metric in ("chat c=1 p50 latency", "chat c=32 throughput",
                   "stream(50) c=1 p50 latency", "stream(50) c=32 throughput",
                   "fallback 500->ok c=1 p50"):
        line = row(out, metric)
        assert re.search(RATIO, line), line
        assert line.rstrip().endswith(("ok", "MISSED")), line
    assert re.search(r"[+-]\d+ us", row(out, "chat CPU per call"))
    assert re.search(r"[+-]\d+ ms", row(out, "from router import Router"))
    assert "target(s) missed" in out


def test_validate_bench_prints_ratios_to_safe_load() -> None:
    out = run_bench("validate_bench.py")
    assert "validated clean: 500 routes compiled" in out
    assert re.search(r"vs safe_load", out)
    for step in ("yaml.safe_load (baseline)", "router.config.validate.validate_file",
                 "Router.from_yaml"):
        assert re.search(RATIO, row(out, step))
    assert re.search(r"ok|MISSED", row(out, "Router.from_yaml"))


def test_budget_overhead_bench_prints_ratios_to_the_unbudgeted_call() -> None:
    out = run_bench("budget_overhead.py")
    assert re.search(r"^setup\s+store\s+p50 latency\s+ratio", out, re.M)
    assert re.search(r"^no budget\s+memory\s.*\s1\.00x\s", out, re.M)
    for store in ("memory", "sqlite"):
        found = re.search(rf"^budgets\s+{store}\s.*$", out, re.M)
        assert found, out
        line = found.group(0)
        assert re.search(RATIO, line) and re.search(r"[+-]\d+ us", line), line
        assert line.rstrip().endswith("ok"), line  # the spend was accounted exactly
    assert re.search(r"^budgets\s+redis\s.*\sok$|^redis: skipped", out, re.M)


def test_proxy_overhead_bench_prints_both_rows_and_the_overhead_histogram() -> None:
    out = run_bench("proxy_overhead.py")
    assert re.search(r"^metric\s+direct\s+aiohttp fwd\s+proxy\s+proxy vs direct\s+spread\s+"
                     r"target\s+verdict", out, re.M)
    latency = row(out, "c=1 p50 latency")
    assert re.search(r"\+-?\d+\.\d{3} ms", latency), latency
    throughput = row(out, "c=64 throughput")
    assert re.search(RATIO, throughput), throughput
    for line in (latency, throughput):
        assert line.rstrip().endswith(("ok", "MISSED")), line
    assert re.search(r"^the bare aiohttp forwarder .* reaches \d+\.\d\dx of direct", out, re.M)
    assert re.search(r"^router_overhead_seconds .* \d+ calls incl\. warm-up\): mean "
                     r"\d+\.\d{3} ms, p50 <= ", out, re.M), out
    assert "target(s) missed" in out
