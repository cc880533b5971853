"""The package's shape: modules stay small, and the layering contracts of pyproject.toml hold."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "router"
LIMIT = 450  # "modules under ~400 lines": a little slack, never a 600-line module


def test_no_module_grows_past_the_size_limit() -> None:
    big = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
           if (n := len(p.read_text("utf-8").splitlines())) > LIMIT}
    assert big == {}, f"split these modules: {big}"


def test_every_subpackage_of_the_pipeline_exists() -> None:
    for name in ("config", "plan", "engine", "providers", "policy", "state", "obs", "cli"):
        assert (ROOT / name / "__init__.py").is_file(), name
