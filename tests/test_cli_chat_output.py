"""What ``router chat`` writes where (issue 10): the answer alone on stdout, a one-line summary
on stderr (``-q`` drops it), ``--format json`` as one JSON object, ``--tag`` reaching the call,
``-v`` logs never inside the streamed answer, ``--log-format json`` as JSON lines only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.servers import openai
from tests.servers.base import json_reply
from tests.test_cli import FILES, run_cli, run_cli_async
from tests.test_cli_chat import KEY, KINDS, PIECES, TEXT, kind_env, route_file

OPENAI = next(k for k in KINDS if k.kind == "openai")
CLEAN = str(FILES / "clean.yaml")
FALLBACK = str(FILES / "fallback.yaml")
TAGGED = str(FILES / "tagged.yaml")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (fails on any line that is not one)."""
    return [json.loads(line) for line in text.splitlines()]


# -- the summary ------------------------------------------------------------------------------

def test_chat_prints_a_one_line_summary_on_stderr_after_the_answer() -> None:
    r = run_cli("chat", CLEAN, "hi", "-m", "fast")
    assert (r.returncode, r.stdout) == (0, "hello from primary:demo-large\n")
    assert r.stderr == ("router: answered by primary:demo-large (1 attempt), "
                        "tokens 1 in / 7 out, $0\n")


def test_chat_summary_counts_the_failed_attempts_of_a_fallback() -> None:
    r = run_cli("chat", FALLBACK, "hi", "-m", "fast", "--no-stream")
    assert (r.returncode, r.stdout) == (0, "backup answered\n")
    assert r.stderr == ("router: answered by backup:demo-small (2 attempts, 1 failed), "
                        "tokens 1 in / 3 out, $0\n")


def test_chat_quiet_prints_the_answer_only() -> None:
    r = run_cli("chat", CLEAN, "hi", "-m", "fast", "-q")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello from primary:demo-large\n", "")


async def test_chat_summary_names_target_tokens_and_cost_of_a_priced_model(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    routes = route_file(tmp_path, OPENAI, openai_server.base_url)
    openai_server.enqueue(openai.stream_reply(openai.text_events(PIECES)))
    r = await run_cli_async("chat", str(routes), "hi", "-m", "main", env=kind_env(OPENAI))
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    # 12 prompt and 5 output tokens at gpt-4o-mini's list price ($0.15 / $0.60 per million)
    assert r.stderr == ("router: answered by p:gpt-4o-mini (1 attempt), tokens 12 in / 5 out, "
                        "$0.000005\n")


# -- --format json ----------------------------------------------------------------------------

def test_chat_format_json_prints_one_object_and_nothing_else_on_stdout() -> None:
    r = run_cli("chat", FALLBACK, "hi", "-m", "fast", "--format", "json", "-q")
    assert (r.returncode, r.stderr) == (0, "")
    out = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert out["text"] == "backup answered"
    assert out["target"] == "backup:demo-small"
    assert out["usage"]["input_tokens"] == 1 and out["usage"]["output_tokens"] == 3
    assert out["cost_usd"] == 0
    first, second = out["attempts"]
    assert (first["target"], first["outcome"], first["error_class"], first["status"]) == \
        ("primary:demo-large", "error", "server", 500)
    assert (second["target"], second["outcome"]) == ("backup:demo-small", "ok")


def test_chat_format_json_failure_is_one_object_with_the_error_and_exit_1() -> None:
    r = run_cli("chat", FALLBACK, "hi", "-m", "broken", "--format", "json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["error"]["class"] == "server"
    assert [a["outcome"] for a in out["attempts"]] == ["error"]
    [line] = r.stderr.splitlines()
    assert line.startswith("router: 'broken' failed after 1 attempt(s)")


# -- --tag ------------------------------------------------------------------------------------

def test_chat_format_json_config_error_is_one_object_too() -> None:
    r = run_cli("chat", str(FILES / "broken.yaml"), "hi", "-m", "fast", "--format", "json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["error"]["class"] == "config" and "error[E020]" in out["error"]["message"]
    assert r.stderr.startswith("router: ")


def test_chat_tag_reaches_the_call_and_its_tag_budget() -> None:
    untagged = run_cli("chat", TAGGED, "hi", "-m", "fast", "-q")
    assert (untagged.returncode, untagged.stdout) == (0, "answered\n")
    other = run_cli("chat", TAGGED, "hi", "-m", "fast", "-q", "--tag", "team=b")
    assert (other.returncode, other.stdout) == (0, "answered\n")
    tagged = run_cli("chat", TAGGED, "hi", "-m", "fast", "--tag", "team=a")
    assert (tagged.returncode, tagged.stdout) == (1, "")
    [line] = tagged.stderr.splitlines()
    assert "budget tag:team=a" in line


def test_chat_malformed_tag_is_a_usage_error() -> None:
    r = run_cli("chat", CLEAN, "hi", "-m", "fast", "--tag", "team")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "router chat: --tag takes KEY=VALUE, got 'team'\n"


# -- -v and --log-format ----------------------------------------------------------------------

async def _fallback_streamed(server: openai.OpenAIServer, tmp_path: Path,
                             *flags: str, merged: bool = False) -> Any:
    """An HTTP 500, then the second target streams: attempt_failed is logged before the
    answer starts, attempt_ok and route_done when its last chunk arrives, after its text."""
    routes = route_file(tmp_path, OPENAI, server.base_url)
    server.enqueue(openai.error_reply("server_error"))
    server.enqueue(openai.stream_reply(openai.text_events(PIECES)))
    r = await run_cli_async("chat", str(routes), "hi", "-m", "fallback", *flags,
                            env=kind_env(OPENAI), merged=merged)
    assert KEY not in r.stdout + r.stderr
    return r


async def test_chat_verbose_stdout_is_exactly_the_answer(openai_server: openai.OpenAIServer,
                                                         tmp_path: Path) -> None:
    r = await _fallback_streamed(openai_server, tmp_path, "-v")
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    assert "attempt_failed" in r.stderr and "route_done" in r.stderr


async def test_chat_verbose_never_writes_a_log_line_inside_the_streamed_answer(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    # stderr into stdout, as on a terminal: the answer must still be one unbroken line.
    r = await _fallback_streamed(openai_server, tmp_path, "-v", merged=True)
    assert r.returncode == 0
    assert TEXT + "\n" in r.stdout
    before, after = r.stdout.split(TEXT + "\n")
    assert before.startswith("router: routes from ")
    assert "attempt_failed" in before  # logged at once: the answer had not started
    assert "attempt_ok" in after and "route_done" in after  # held until the answer ended


async def test_chat_log_format_json_writes_only_json_lines_to_stderr(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    r = await _fallback_streamed(openai_server, tmp_path, "-v", "--log-format", "json")
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    events = json_lines(r.stderr)
    names = [e["event"] for e in events]
    assert names[0] == "routes_loaded"
    assert "attempt_failed" in names and "route_done" in names
    assert names[-1] == "chat_done"
    done = events[-1]
    assert (done["target"], done["attempts"], done["failed"]) == ("p:gpt-4o", 2, 1)


def test_chat_log_format_json_failure_is_a_json_line_too() -> None:
    r = run_cli("chat", FALLBACK, "hi", "-m", "broken", "-v", "--log-format", "json")
    assert (r.returncode, r.stdout) == (1, "")
    events = json_lines(r.stderr)
    assert events[-1]["event"] == "chat_failed"
    assert events[-1]["error_class"] == "server"
    assert events[-1]["level"] == "error"


def test_chat_log_format_json_config_error_is_a_json_line() -> None:
    r = run_cli("chat", str(FILES / "broken.yaml"), "hi", "-m", "fast", "--log-format", "json")
    assert (r.returncode, r.stdout) == (1, "")
    [event] = json_lines(r.stderr)
    assert event["event"] == "config_error" and "error[E" in event["message"]


def test_chat_log_format_json_without_verbose_still_writes_json_only() -> None:
    r = run_cli("chat", CLEAN, "hi", "-m", "fast", "--log-format", "json")
    assert (r.returncode, r.stdout) == (0, "hello from primary:demo-large\n")
    [event] = json_lines(r.stderr)
    assert (event["event"], event["target"]) == ("chat_done", "primary:demo-large")


# -- refusals ---------------------------------------------------------------------------------

APOLOGY = "I'm very sorry, but I can't assist with that."


async def test_chat_prints_a_refusal_as_the_answer_and_says_refused(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    routes = route_file(tmp_path, OPENAI, openai_server.base_url)
    body = openai.completion(None)
    body["choices"][0]["message"]["refusal"] = APOLOGY
    openai_server.enqueue(json_reply(body))
    r = await run_cli_async("chat", str(routes), "hi", "-m", "main", "--no-stream",
                            env=kind_env(OPENAI))
    assert (r.returncode, r.stdout) == (0, APOLOGY + "\n")
    assert r.stderr.startswith("router: refused by p:gpt-4o-mini (1 attempt)")


async def test_chat_streams_a_refusal_as_the_answer_and_json_names_it(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    routes = route_file(tmp_path, OPENAI, openai_server.base_url)
    events = [openai.chunk({"role": "assistant", "content": None, "refusal": ""}),
              openai.chunk({"refusal": "I'm very sorry, "}),
              openai.chunk({"refusal": "but I can't assist with that."}),
              openai.chunk({}, finish_reason="stop"),
              openai.chunk(usage_=openai.usage(), choices=False)]
    openai_server.enqueue(openai.stream_reply(events))
    r = await run_cli_async("chat", str(routes), "hi", "-m", "main", env=kind_env(OPENAI))
    assert (r.returncode, r.stdout) == (0, APOLOGY + "\n")
    assert r.stderr.startswith("router: refused by p:gpt-4o-mini")
    body = openai.completion(None)
    body["choices"][0]["message"]["refusal"] = APOLOGY
    openai_server.enqueue(json_reply(body))
    j = await run_cli_async("chat", str(routes), "hi", "-m", "main", "--format", "json", "-q",
                            env=kind_env(OPENAI))
    out = json.loads(j.stdout)
    assert (out["text"], out["refusal"], out["finish_reason"]) == ("", APOLOGY,
                                                                   "content_filter")
