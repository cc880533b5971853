"""``router budgets`` and ``router dry-run`` with a state store that cannot be used (issue 10):
one clear line naming the store and the cause, exit 1, never "internal error: StoreError".

Redis at 127.0.0.1 port 1 refuses at once; an SQLite file under a regular file cannot be
created, whoever runs the tests (root included).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_cli import run_cli

PASSWORD = "hunter2-cli-store-9f1c"  # in the Redis URL: never printed


def routes(tmp_path: Path, state: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""\
version: 1
state: {state}
providers:
  p: {{kind: fake, models: {{demo: {{price: {{input: 1, output: 1}}}}}}}}
models:
  fast:
    chain: [p:demo]
    budget: {{usd: 5, per: hour}}
""", encoding="utf-8")
    return path


@pytest.fixture
def redis_down(tmp_path: Path) -> Path:
    return routes(tmp_path, f'{{kind: redis, url: "redis://:{PASSWORD}@127.0.0.1:1/0"}}')


@pytest.fixture
def sqlite_under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "plain-file").write_text("not a directory\n", encoding="utf-8")
    return routes(tmp_path, '{kind: sqlite, path: "plain-file/state.db"}')


def test_budgets_with_redis_unreachable_is_one_line_naming_it(redis_down: Path) -> None:
    r = run_cli("budgets", str(redis_down), cwd=redis_down.parent)
    assert (r.returncode, r.stdout) == (1, "")
    [line] = r.stderr.splitlines()
    assert line.startswith("router budgets: state store unavailable: redis 127.0.0.1:1/0: ")
    assert "Connect" in line  # the cause: the connection was refused
    assert PASSWORD not in r.stderr


def test_budgets_with_sqlite_path_under_a_file_is_one_line_naming_it(
        sqlite_under_a_file: Path) -> None:
    r = run_cli("budgets", str(sqlite_under_a_file), cwd=sqlite_under_a_file.parent)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("router budgets: state store unavailable: sqlite store "
                        "plain-file/state.db: unable to open database file "
                        "(plain-file is a file, not a directory)\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only directory")
def test_budgets_with_sqlite_in_a_read_only_directory_is_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    path = routes(tmp_path, '{kind: sqlite, path: "locked/state.db"}')
    locked.chmod(0o555)
    try:
        r = run_cli("budgets", str(path), cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    assert (r.returncode, r.stdout) == (1, "")
    [line] = r.stderr.splitlines()
    assert line.startswith("router budgets: state store unavailable: sqlite store "
                           "locked/state.db: ")
    assert line.endswith("(the directory locked is not writable)")


def test_dry_run_with_redis_unreachable_shows_budgeted_targets_skipped_and_one_line(
        redis_down: Path) -> None:
    # fail_closed (the default): what the router does now, with the store down
    r = run_cli("dry-run", str(redis_down), "-m", "fast", cwd=redis_down.parent)
    assert r.returncode == 1
    assert "skipped: store_unavailable" in r.stdout
    assert "the call fails with store_unavailable" in r.stdout
    [line] = r.stderr.splitlines()
    assert line.startswith("router dry-run: state store unavailable: redis 127.0.0.1:1/0: ")
    assert line.endswith("; while it is down, targets under a budget are skipped "
                         "(on_store_error: fail_closed); --no-state shows the decision "
                         "without the store")
    assert PASSWORD not in r.stdout + r.stderr


def test_dry_run_fail_open_with_the_store_down_answers_unaccounted(tmp_path: Path) -> None:
    path = routes(tmp_path, '{kind: redis, url: "redis://127.0.0.1:1/0", '
                            'on_store_error: fail_open}')
    r = run_cli("dry-run", str(path), "-m", "fast", cwd=tmp_path)
    assert r.returncode == 1  # the store is down: worth a non-zero exit in a script
    assert "answer: p:demo" in r.stdout
    [line] = r.stderr.splitlines()
    assert "calls go on without budgets (on_store_error: fail_open)" in line


def test_dry_run_json_with_the_store_down_names_the_store_error(
        sqlite_under_a_file: Path) -> None:
    r = run_cli("dry-run", str(sqlite_under_a_file), "-m", "fast", "--format", "json",
                cwd=sqlite_under_a_file.parent)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["state_error"].startswith("state store unavailable: sqlite store ")
    assert doc["on_store_error"] == "fail_closed"
    assert doc["answered_by"] is None
    assert len(r.stderr.splitlines()) == 1


def test_dry_run_no_state_with_the_store_down_exits_0_quietly(redis_down: Path) -> None:
    r = run_cli("dry-run", str(redis_down), "-m", "fast", "--no-state", cwd=redis_down.parent)
    assert (r.returncode, r.stderr) == (0, "")
    assert "answer: p:demo" in r.stdout
