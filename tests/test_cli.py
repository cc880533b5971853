"""The ``router`` command run for real: a subprocess per test, a controlled environment.

Every run goes through ``run_cli``, which also checks the CLI's promise that no command ever
prints a traceback (nor falls into the catch-all "internal error").
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = Path(__file__).resolve().parent / "cli_files"
EXAMPLE = ROOT / "routes.example.yaml"
SECRET = "sk-cli-7f3a9c2e5b8d41e6a0c4"  # distinctive, and shaped like a key
_DROPPED = ("OLLAMA_HOST", "ROUTER_CLI_SECRET", "ROUTER_CLI_TEST_UNSET", "ROUTER_CONFIG")


def cli_env(**extra: str) -> dict[str, str]:
    """os.environ without any API key, plus ``extra``; this checkout's router first."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and k not in _DROPPED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "router.cli.main", *args]


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    """The CLI's promise: one clear line on failure, never a traceback or an internal error."""
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert "router: internal error:" not in result.stderr, result.stderr


async def run_cli_async(*args: str, env: dict[str, str], cwd: Path = ROOT,
                        stdin: str | None = None, merged: bool = False
                        ) -> subprocess.CompletedProcess[str]:
    """``router ARGS`` as a subprocess while this loop goes on (serving a loopback upstream);
    its output never holds a traceback. ``stdin`` is its standard input (else none: an empty
    pipe); ``merged`` sends stderr into stdout, in the order the command wrote them."""
    proc = await asyncio.create_subprocess_exec(
        *cli_command(*args), cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merged else asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(None if stdin is None else stdin.encode()), 60)
    except TimeoutError:
        proc.kill()  # our own child: never leave it running after a failed test
        await proc.wait()
        raise
    assert proc.returncode is not None
    result = subprocess.CompletedProcess(list(args), proc.returncode,
                                         out.decode("utf-8", "replace"),
                                         (err or b"").decode("utf-8", "replace"))
    assert_no_traceback(result)
    return result


def run_cli(*args: str, cwd: Path = FILES, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``router ARGS`` with ``stdin`` as its standard input (else an empty one)."""
    result = subprocess.run(cli_command(*args), cwd=cwd, env=env or cli_env(),
                            capture_output=True, text=True, encoding="utf-8",
                            errors="replace", timeout=60, check=False, input=stdin,
                            stdin=subprocess.DEVNULL if stdin is None else None)
    assert_no_traceback(result)
    return result


DIAGNOSTIC = re.compile(r"^\S+:\d+:\d+: (error|warning)\[[EW]\d{3}\] \S")

# -- validate ---------------------------------------------------------------------------------


def test_validate_clean_file_exits_0_and_says_ok() -> None:
    r = run_cli("validate", "clean.yaml")
    assert r.returncode == 0
    assert r.stdout.strip() == "ok: no problems"
    assert r.stderr == ""


def test_validate_broken_file_prints_positioned_errors_with_hints_and_exits_1() -> None:
    r = run_cli("validate", "broken.yaml")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines == [
        "broken.yaml:6:10: error[E020] target 'primry:demo-large' names provider 'primry', "
        "which is not defined",
        "    hint: did you mean 'primary'?",
        "broken.yaml:7:3: error[E021] alias cycle: loop -> loop2 -> loop",
        "    hint: an alias may refer to another alias, but never back to itself",
        "2 errors, 0 warnings",
    ]


def test_validate_reports_every_file_in_one_run() -> None:
    r = run_cli("validate", "clean.yaml", "broken.yaml", "warning.yaml")
    assert r.returncode == 1
    diagnostics = [line for line in r.stdout.splitlines() if DIAGNOSTIC.match(line)]
    assert [line.split(":")[0] for line in diagnostics] == [
        "broken.yaml", "broken.yaml", "warning.yaml"]
    assert "warning.yaml:4:31: warning[W101] environment variable ROUTER_CLI_TEST_UNSET is " \
        "not set" in r.stdout
    assert r.stdout.splitlines()[-1] == "2 errors, 1 warning"


def test_validate_json_format_is_one_document_with_counts() -> None:
    r = run_cli("validate", "broken.yaml", "warning.yaml", "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert (doc["ok"], doc["errors"], doc["warnings"]) == (False, 2, 1)
    assert [(d["file"], d["line"], d["col"], d["severity"], d["code"])
            for d in doc["diagnostics"]] == [
        ("broken.yaml", 6, 10, "error", "E020"), ("broken.yaml", 7, 3, "error", "E021"),
        ("warning.yaml", 4, 31, "warning", "W101")]
    assert doc["diagnostics"][0]["hint"] == "did you mean 'primary'?"


def test_validate_github_format_writes_one_annotation_per_diagnostic() -> None:
    r = run_cli("validate", "broken.yaml", "warning.yaml", "--format", "github")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == ("::error file=broken.yaml,line=6,col=10,title=E020::target "
                        "'primry:demo-large' names provider 'primry', which is not defined "
                        "(hint: did you mean 'primary'?)")
    assert lines[1].startswith("::error file=broken.yaml,line=7,col=3,title=E021::alias cycle")
    assert lines[2].startswith("::warning file=warning.yaml,line=4,col=31,title=W101::")
    assert len(lines) == 3


@pytest.mark.parametrize(("flags", "code"), [([], 0), (["--strict"], 1)],
                         ids=["default", "strict"])
def test_validate_strict_turns_warnings_into_exit_1(flags: list[str], code: int) -> None:
    r = run_cli("validate", "warning.yaml", *flags)
    assert r.returncode == code
    assert r.stdout.splitlines()[-1] == "0 errors, 1 warning"


def test_validate_missing_file_is_E001() -> None:
    r = run_cli("validate", "no-such-file.yaml")
    assert r.returncode == 1
    assert r.stdout.startswith("no-such-file.yaml: error[E001] cannot read the route file: "
                               "file not found")


def test_validate_without_file_and_without_routes_yaml_is_a_usage_error(tmp_path: Path
                                                                         ) -> None:
    r = run_cli("validate", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip() == ("router validate: no route file given, $ROUTER_CONFIG is not "
                                "set and ./routes.yaml does not exist (pass a path, e.g. "
                                "routes.example.yaml)")


def test_validate_without_file_reads_routes_yaml_in_cwd(tmp_path: Path) -> None:
    shutil.copy(FILES / "broken.yaml", tmp_path / "routes.yaml")
    r = run_cli("validate", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout.startswith("routes.yaml:6:10: error[E020]")


@pytest.mark.parametrize(("args", "message"), [
    (["validate", "--frobnicate", "clean.yaml"], "unrecognized arguments: --frobnicate"),
    (["dry-run", "clean.yaml"], "the following arguments are required: --model"),
    ([], "the following arguments are required: command"),
    (["chat", "clean.yaml", "hi", "-m", "fast", "--frobnicate"],
     "unrecognized arguments: --frobnicate"),
], ids=["unknown-flag", "missing-model", "no-command", "chat-unknown-flag"])
def test_bad_usage_exits_2_with_usage(args: list[str], message: str) -> None:
    r = run_cli(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("usage: router")
    assert message in r.stderr


def _deeply_nested(depth: int) -> bytes:
    return b"version: 1\nextra: " + b"{a: " * depth + b"1" + b"}" * depth + b"\n"


@pytest.mark.parametrize(("content", "code"), [
    (bytes(range(256)) * 64, "E002"),
    ("version: 1\nproviders: {café: {kind: openai}}\n".encode("latin-1"), "E002"),
    (b"", "E005"),
    (b"- version: 1\n- providers: {}\n", "E005"),
    (_deeply_nested(100_000), "E003"),
], ids=["binary", "latin-1", "empty", "yaml-list", "huge-deeply-nested"])
def test_validate_unusable_file_gives_a_diagnostic_not_a_traceback(
        tmp_path: Path, content: bytes, code: str) -> None:
    (tmp_path / "bad.yaml").write_bytes(content)
    r = run_cli("validate", "bad.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert re.match(rf"bad\.yaml(:\d+:\d+)?: error\[{code}\] ", r.stdout), r.stdout
    assert r.stdout.splitlines()[-1] == "1 error, 0 warnings"


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_validate_never_prints_a_secret(fmt: str) -> None:
    r = run_cli("validate", "secret_broken.yaml", "--format", fmt,
                env=cli_env(ROUTER_CLI_SECRET=SECRET))
    assert r.returncode == 1
    assert SECRET not in r.stdout + r.stderr
    assert "'***' is not an http(s) URL" in r.stdout  # the value was there, redacted


# -- schema -----------------------------------------------------------------------------------


def test_schema_prints_the_published_schema() -> None:
    r = run_cli("schema")
    assert r.returncode == 0
    published = json.loads((ROOT / "schemas" / "routes.schema.json").read_text("utf-8"))
    assert json.loads(r.stdout) == published


# -- dry-run ----------------------------------------------------------------------------------


def dry_run(*args: str, file: Path = EXAMPLE, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return run_cli("dry-run", str(file), *args, env=env)


def test_dry_run_names_each_target_and_the_answer() -> None:
    r = dry_run("--model", "fast")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for i, target in enumerate(["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5",
                                "groq:llama-3.3-70b-versatile", "local:llama3.2"], 1):
        assert f"{i}. {target}" in lines
    assert "     try 1 (attempt 1): ok -> answers" in lines
    assert "answer: openai:gpt-4o-mini" in lines


def test_dry_run_rate_limit_retries_after_retry_after_then_answers() -> None:
    r = dry_run("--model", "fast", "--simulate", "openai:gpt-4o-mini=rate_limit@2s,ok")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[2:5] == [
        "1. openai:gpt-4o-mini",
        "     try 1 (attempt 1): rate_limit@2s -> retry in 2s (Retry-After)",
        "     try 2 (attempt 2): ok -> answers",
    ]
    assert "answer: openai:gpt-4o-mini" in lines


def test_dry_run_invalid_request_fails_now_and_exits_1() -> None:
    r = dry_run("--model", "fast", "--simulate", "openai:gpt-4o-mini=invalid_request")
    assert r.returncode == 1
    assert "try 1 (attempt 1): invalid_request -> fail now (invalid_request -> fail)" in r.stdout
    assert r.stdout.count("not reached") == 3
    assert "answer: none, the call fails with invalid_request (fail now)" in r.stdout


def test_dry_run_breaker_open_skips_the_target() -> None:
    r = dry_run("--model", "fast", "--simulate", "openai:gpt-4o-mini=auth",
                "--simulate", "anthropic=breaker_open")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    i = lines.index("2. anthropic:claude-haiku-4-5")
    assert lines[i + 1] == "     skipped: breaker_open (circuit breaker is open)"
    assert "answer: groq:llama-3.3-70b-versatile" in lines


def test_dry_run_images_skip_a_text_only_target() -> None:
    r = dry_run("--model", "look", "--images", file=FILES / "capabilities.yaml")
    assert r.returncode == 0
    assert "needs images" in r.stdout
    assert "1. textonly:reader\n     skipped: capability (reader does not accept images)" \
        in r.stdout
    assert "answer: big:huge" in r.stdout.splitlines()


def test_dry_run_long_prompt_skips_a_target_whose_window_is_too_small() -> None:
    r = dry_run("--model", "long", "--prompt-tokens", "150000",
                file=FILES / "capabilities.yaml")
    assert r.returncode == 0
    assert "1. small:mid\n     skipped: context_window (" in r.stdout
    assert "> window 128000" in r.stdout
    assert "answer: big:huge" in r.stdout.splitlines()


def test_dry_run_json_format_is_valid_json() -> None:
    r = dry_run("--model", "fast", "--simulate", "openai:gpt-4o-mini=auth", "--format", "json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert [(e["kind"], e["target"], e["outcome"]) for e in doc["events"]] == [
        ("try", "openai:gpt-4o-mini", "auth"), ("try", "anthropic:claude-haiku-4-5", "ok")]
    assert doc["answered_by"] == "anthropic:claude-haiku-4-5"
    assert set(doc["worst_case"]) == {"latency_s", "cost_usd"}


def test_dry_run_unknown_alias_is_one_clear_line() -> None:
    r = dry_run("--model", "nosuch")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == ["router: no_route: 'nosuch' is not an alias and not "
                                     "provider:model"]


def test_dry_run_simulate_naming_a_non_target_is_one_clear_line() -> None:
    r = dry_run("--model", "fast", "--simulate", "gemini:gemini-2.5-pro=ok")
    assert r.returncode == 2  # a usage error, like a bad flag
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert "--simulate names 'gemini:gemini-2.5-pro', which is not a target of 'fast'" in line
    assert "targets: openai:gpt-4o-mini, anthropic:claude-haiku-4-5" in line


def test_dry_run_of_a_broken_file_prints_its_diagnostics() -> None:
    r = dry_run("--model", "fast", file=FILES / "broken.yaml")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "broken.yaml:6:10: error[E020]" in r.stderr


def test_dry_run_never_prints_the_api_key() -> None:
    r = dry_run("--model", "fast", file=FILES / "keyed.yaml",
                env=cli_env(ROUTER_CLI_SECRET=SECRET))
    assert r.returncode == 0
    assert "openai:gpt-4o-mini" in r.stdout
    assert SECRET not in r.stdout + r.stderr


# -- demo -------------------------------------------------------------------------------------


def test_demo_fast_shows_retry_fallback_breaker_skip_and_answers() -> None:
    r = run_cli("demo", "--fast")
    assert r.returncode == 0
    out = r.stdout
    assert re.search(r"#1 primary:demo-large: rate_limit HTTP 429 after \d+ms -> retry in "
                     r"400ms \(Retry-After\)", out)
    assert "answer: Retried after the rate limit and answered: primary:demo-large." in out
    assert re.search(r"#3 backup:demo-small: ok in \d+ms", out)  # fell back after 2 tries
    assert "answer: The backup answered: backup:demo-small. Fallback works." in out
    assert "-  flaky:demo-large: skipped (breaker_open: circuit breaker is open)" in out
    # the stream cut after 8 words is replayed on the next target: the story once, whole
    story = ("Once upon a time, a stream broke halfway, and the router picked it up where it "
             "stopped.")
    assert f"answer (17 streamed pieces): {story}\n" in out
    assert re.search(r"#1 vllm:story-model: network after \d+ms", out)
    assert re.search(r"#2 local:storyteller: ok in \d+ms", out)


def test_version_prints_the_package_version() -> None:
    from router import __version__

    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"router {__version__}")


def test_python_dash_m_router_is_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "router", "validate", str(FILES / "clean.yaml")],
                            cwd=FILES, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "no problems" in result.stdout
