"""``router routes`` (``router ls``): aliases and their chains, providers and whether their key
variable is set (never its value), budgets (issue 10)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_cli import FILES, SECRET, cli_env, run_cli

INVENTORY = str(FILES / "inventory.yaml")


def test_routes_lists_aliases_with_their_chains_in_order() -> None:
    r = run_cli("routes", INVENTORY)
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    start = lines.index("aliases:")
    assert lines[start + 1].split() == ["fast", "openai:gpt-4o-mini", "->",
                                        "anthropic:claude-haiku-4-5", "->", "local:demo"]
    assert lines[start + 2].split() == ["bulk", "pool", "weighted", "[openai:gpt-4o-mini,",
                                        "local:demo", "x3]", "->",
                                        "anthropic:claude-haiku-4-5"]


def test_routes_shows_each_provider_kind_and_whether_its_key_is_set() -> None:
    r = run_cli("routes", INVENTORY, env=cli_env(ROUTER_CLI_SECRET=SECRET))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    start = lines.index("providers:")
    assert [line.split() for line in lines[start + 1:start + 4]] == [
        ["openai", "openai", "ROUTER_CLI_SECRET", "set"],
        ["anthropic", "anthropic", "ANTHROPIC_API_KEY", "not", "set"],
        ["local", "fake", "no", "key", "needed"],
    ]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_routes_never_prints_a_key_value(fmt: str) -> None:
    env = cli_env(ROUTER_CLI_SECRET=SECRET, ANTHROPIC_API_KEY=SECRET + "-anthropic")
    r = run_cli("routes", INVENTORY, "--format", fmt, env=env)
    assert r.returncode == 0
    assert SECRET not in r.stdout + r.stderr
    assert "sk-cli" not in r.stdout + r.stderr


def test_routes_lists_every_budget() -> None:
    r = run_cli("routes", INVENTORY)
    lines = r.stdout.splitlines()
    start = lines.index("budgets:")
    assert [line.split() for line in lines[start + 1:]] == [
        ["provider:openai", "$50", "per", "day"],
        ["global", "$200", "per", "month"],
        ["alias:fast", "$5", "per", "hour"],
    ]


def test_routes_json_format_is_one_document() -> None:
    r = run_cli("routes", INVENTORY, "--format", "json", env=cli_env(ROUTER_CLI_SECRET=SECRET))
    assert (r.returncode, r.stderr) == (0, "")
    doc = json.loads(r.stdout)
    fast, bulk = doc["aliases"]
    assert fast["name"] == "fast"
    assert [s["target"] for s in fast["chain"]] == ["openai:gpt-4o-mini",
                                                    "anthropic:claude-haiku-4-5", "local:demo"]
    assert bulk["chain"][0] == {"pool": [{"target": "openai:gpt-4o-mini", "weight": 1.0},
                                         {"target": "local:demo", "weight": 3.0}],
                                "strategy": "weighted"}
    assert doc["providers"] == [
        {"name": "openai", "kind": "openai", "key_env": "ROUTER_CLI_SECRET", "key": "set"},
        {"name": "anthropic", "kind": "anthropic", "key_env": "ANTHROPIC_API_KEY",
         "key": "not set"},
        {"name": "local", "kind": "fake", "key_env": None, "key": "not needed"},
    ]
    assert {b["scope"] for b in doc["budgets"]} == {"provider:openai", "global", "alias:fast"}


def test_ls_is_routes() -> None:
    assert run_cli("ls", INVENTORY).stdout == run_cli("routes", INVENTORY).stdout


def test_routes_shows_a_key_written_in_the_file_as_such(tmp_path: Path) -> None:
    path = tmp_path / "literal.yaml"
    path.write_text("version: 1\nproviders:\n  o: {kind: openai, api_key: "
                    f"\"{SECRET}\"}}\nmodels:\n  fast: [o:gpt-4o-mini]\n", encoding="utf-8")
    r = run_cli("routes", str(path))
    assert r.returncode == 0
    assert "key written in the file" in r.stdout
    assert SECRET not in r.stdout + r.stderr


def test_routes_without_file_reads_routes_yaml_in_cwd(tmp_path: Path) -> None:
    shutil.copy(FILES / "clean.yaml", tmp_path / "routes.yaml")
    r = run_cli("routes", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.startswith("file: routes.yaml (state: memory)\naliases:\n  fast  ")


def test_routes_without_file_and_without_routes_yaml_is_a_usage_error(tmp_path: Path
                                                                       ) -> None:
    r = run_cli("routes", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert "./routes.yaml does not exist" in r.stderr


def test_routes_of_a_broken_file_prints_its_diagnostics_and_exits_1() -> None:
    r = run_cli("routes", str(FILES / "broken.yaml"))
    assert (r.returncode, r.stdout) == (1, "")
    assert "error[E" in r.stderr
