"""Golden tests: each broken route file in tests/golden/ gives exactly the diagnostics in its
.expected file (text format). Regenerate with ROUTER_REGEN_GOLDEN=1 after reviewing changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.config.report import format_diagnostics
from router.config.validate import validate_file

GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(GOLDEN.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_diagnostics(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)  # file names in the output are relative
    result = validate_file(Path(path.name), env={})
    got = format_diagnostics(result.diagnostics, "text") + "\n"
    expected = path.with_suffix(".expected")
    if os.environ.get("ROUTER_REGEN_GOLDEN"):
        expected.write_text(got, encoding="utf-8")
    assert got == expected.read_text(encoding="utf-8")


def test_every_golden_file_has_expectations() -> None:
    assert FILES and all(p.with_suffix(".expected").exists() for p in FILES)
