"""``router chat`` reads its command line as a user types it (issue 10): options before or after
the positionals, the prompt from stdin, a file name never taken for the prompt, and routes from
FILE, $ROUTER_CONFIG, ./routes.yaml or the environment, in that order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import openai
from tests.test_cli import FILES, cli_command, cli_env, run_cli, run_cli_async
from tests.test_cli_chat import KEY, KINDS, PIECES, TEXT, kind_env, route_file

OPENAI = next(k for k in KINDS if k.kind == "openai")
PROMPT = "What do the routes say?"
CLEAN = str(FILES / "clean.yaml")
HELLO = "hello from primary:demo-large\n"  # clean.yaml's answer


def user_text(server: openai.OpenAIServer) -> str:
    """The user message of the one request the server received."""
    [request] = server.requests
    [message] = [m for m in request.json["messages"] if m["role"] == "user"]
    text: str = message["content"]
    return text


async def chat_openai(server: openai.OpenAIServer, *args: str, stdin: str | None = None,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    server.enqueue(openai.stream_reply(openai.text_events(PIECES)))
    result = await run_cli_async("chat", *args, env=env or kind_env(OPENAI), stdin=stdin)
    assert KEY not in result.stdout + result.stderr
    return result


@pytest.mark.parametrize("order", [
    ["FILE", "PROMPT", "-m", "main"],
    ["-m", "main", "FILE", "PROMPT"],
    ["PROMPT", "FILE", "-m", "main"],
    ["PROMPT", "-m", "main", "FILE"],
    ["FILE", "-q", "PROMPT", "--model=main"],
], ids=lambda o: " ".join(o))
async def test_chat_takes_options_and_positionals_in_any_order(
        openai_server: openai.OpenAIServer, tmp_path: Path, order: list[str]) -> None:
    routes = str(route_file(tmp_path, OPENAI, openai_server.base_url))
    args = [{"FILE": routes, "PROMPT": PROMPT}.get(a, a) for a in order]
    r = await chat_openai(openai_server, *args)
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    assert user_text(openai_server) == PROMPT


async def test_chat_dash_reads_the_prompt_from_stdin(openai_server: openai.OpenAIServer,
                                                     tmp_path: Path) -> None:
    routes = str(route_file(tmp_path, OPENAI, openai_server.base_url))
    r = await chat_openai(openai_server, "-", routes, "-m", "main", stdin="piped prompt\n")
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    assert user_text(openai_server) == "piped prompt"


async def test_chat_without_prompt_reads_stdin_when_it_is_not_a_terminal(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    routes = str(route_file(tmp_path, OPENAI, openai_server.base_url))
    r = await chat_openai(openai_server, routes, "-m", "main", stdin="line one\nline two\n")
    assert r.returncode == 0
    assert user_text(openai_server) == "line one\nline two"


async def test_chat_after_double_dash_a_prompt_may_start_with_a_dash(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    routes = str(route_file(tmp_path, OPENAI, openai_server.base_url))
    r = await chat_openai(openai_server, routes, "-m", "main", "--", "-v is not an option here")
    assert r.returncode == 0
    assert user_text(openai_server) == "-v is not an option here"


def test_chat_without_prompt_on_a_terminal_is_a_usage_error() -> None:
    leader, follower = os.openpty()
    try:
        r = subprocess.run(cli_command("chat", CLEAN, "-m", "fast"), cwd=FILES, env=cli_env(),
                           stdin=follower, capture_output=True, text=True, timeout=60,
                           check=False)
    finally:
        os.close(follower)
        os.close(leader)
    assert (r.returncode, r.stdout) == (2, "")
    [line] = r.stderr.splitlines()
    assert line.startswith("router chat: no prompt: ")


def test_chat_empty_stdin_is_a_usage_error() -> None:
    r = run_cli("chat", CLEAN, "-m", "fast", stdin="\n")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "router chat: the prompt read from standard input is empty\n"


def test_chat_yaml_name_is_the_file_never_the_prompt() -> None:
    # A missing routes file is reported as such (E001), not sent as the prompt.
    r = run_cli("chat", "-m", "fast", "missing.yaml", stdin="hello")
    assert (r.returncode, r.stdout) == (1, "")
    assert "E001" in r.stderr and "missing.yaml" in r.stderr


def test_chat_existing_file_of_any_name_is_the_file(tmp_path: Path) -> None:
    shutil.copy(FILES / "clean.yaml", tmp_path / "routes.conf")
    r = run_cli("chat", "hi", "routes.conf", "-m", "fast", "-q", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, HELLO, "")


def test_chat_two_route_files_is_a_usage_error() -> None:
    r = run_cli("chat", "-m", "fast", "clean.yaml", "warning.yaml")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("router chat: two route files given (clean.yaml, warning.yaml)")


def test_chat_unquoted_prompt_words_are_a_usage_error() -> None:
    r = run_cli("chat", "-m", "fast", "clean.yaml", "hello", "there")
    assert (r.returncode, r.stdout) == (2, "")
    assert "quote the prompt" in r.stderr


def test_chat_without_model_lists_the_aliases_as_a_usage_error() -> None:
    r = run_cli("chat", "clean.yaml", "hi")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("router chat: --model is required: an alias of clean.yaml (fast), "
                        "or provider:model\n")


def test_chat_without_model_and_file_names_the_environment_providers(tmp_path: Path) -> None:
    r = run_cli("chat", "hi", cwd=tmp_path, env=cli_env(OPENAI_API_KEY=KEY))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("router chat: --model is required: provider:model or a model "
                               "name (providers: ")
    assert "openai" in r.stderr and KEY not in r.stderr


# -- where the routes come from -------------------------------------------------------------

def fake_routes(path: Path, text: str) -> Path:
    path.write_text("version: 1\nproviders:\n"
                    f"  p: {{kind: fake, text: \"{text}\"}}\nmodels:\n  fast: [p:demo]\n",
                    encoding="utf-8")
    return path


def test_chat_file_argument_wins_over_router_config(tmp_path: Path) -> None:
    env = cli_env(ROUTER_CONFIG=str(fake_routes(tmp_path / "env.yaml", "from env")))
    given = fake_routes(tmp_path / "given.yaml", "from the argument")
    r = run_cli("chat", "-m", "fast", "hi", str(given), "-v", cwd=tmp_path, env=env)
    assert (r.returncode, r.stdout) == (0, "from the argument\n")
    assert r.stderr.splitlines()[0] == f"router: routes from {given}"


def test_chat_without_file_uses_router_config_before_routes_yaml(tmp_path: Path) -> None:
    fake_routes(tmp_path / "routes.yaml", "from cwd")
    config = fake_routes(tmp_path / "elsewhere.yml", "from env")
    r = run_cli("chat", "-m", "fast", "hi", "-v", cwd=tmp_path,
                env=cli_env(ROUTER_CONFIG=str(config)))
    assert (r.returncode, r.stdout) == (0, "from env\n")
    assert r.stderr.splitlines()[0] == f"router: routes from {config} (from $ROUTER_CONFIG)"


def test_chat_without_file_or_router_config_uses_routes_yaml(tmp_path: Path) -> None:
    fake_routes(tmp_path / "routes.yaml", "from cwd")
    r = run_cli("chat", "-m", "fast", "hi", "-v", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "from cwd\n")
    assert r.stderr.splitlines()[0] == "router: routes from ./routes.yaml (no FILE given)"


async def test_chat_without_any_route_file_routes_from_the_environment(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    env = cli_env(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=openai_server.base_url)
    openai_server.enqueue(openai.stream_reply(openai.text_events(PIECES)))
    r = await run_cli_async("chat", "-m", "gpt-4o-mini", PROMPT, "-v", env=env, cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    lines = r.stderr.splitlines()
    assert lines[0] == ("router: routes from the environment (no FILE, no $ROUTER_CONFIG, "
                        "no ./routes.yaml)")
    assert lines[-1].startswith("router: answered by openai:gpt-4o-mini (1 attempt)")
    assert user_text(openai_server) == PROMPT
    assert KEY not in r.stdout + r.stderr
