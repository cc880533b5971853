"""Where the commands that read routes find their file (router.cli.source): FILE, else
``$ROUTER_CONFIG``, else ``./routes.yaml``; run for real, a subprocess per test. (chat's own
order, ending with the environment, is tests/test_cli_chat_args.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.test_cli import FILES, cli_env, run_cli


def test_validate_without_file_reads_router_config(tmp_path: Path) -> None:
    shutil.copy(FILES / "clean.yaml", tmp_path / "routes.yaml")  # not read: $ROUTER_CONFIG wins
    config = shutil.copy(FILES / "broken.yaml", tmp_path / "elsewhere.yaml")
    r = run_cli("validate", cwd=tmp_path, env=cli_env(ROUTER_CONFIG=str(config)))
    assert r.returncode == 1
    assert r.stdout.startswith(f"{config}:6:10: error[E020]")


def test_validate_file_argument_wins_over_router_config(tmp_path: Path) -> None:
    config = shutil.copy(FILES / "broken.yaml", tmp_path / "elsewhere.yaml")
    r = run_cli("validate", str(FILES / "clean.yaml"), cwd=tmp_path,
                env=cli_env(ROUTER_CONFIG=str(config)))
    assert (r.returncode, r.stderr) == (0, "")
    assert "error" not in r.stdout


def test_routes_without_file_reads_router_config(tmp_path: Path) -> None:
    config = shutil.copy(FILES / "clean.yaml", tmp_path / "elsewhere.yaml")
    r = run_cli("routes", cwd=tmp_path, env=cli_env(ROUTER_CONFIG=str(config)))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"file: {config} (state: memory)\naliases:\n  fast  ")


def test_routes_with_router_config_naming_no_file_fails_on_that_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    r = run_cli("routes", cwd=tmp_path, env=cli_env(ROUTER_CONFIG=str(missing)))
    assert (r.returncode, r.stdout) == (1, "")
    assert str(missing) in r.stderr and "error[E001]" in r.stderr


def test_without_file_router_config_or_routes_yaml_the_error_names_all_three(
        tmp_path: Path) -> None:
    r = run_cli("routes", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.strip() == ("router routes: no route file given, $ROUTER_CONFIG is not set "
                                "and ./routes.yaml does not exist (pass a path, e.g. "
                                "routes.example.yaml)")
