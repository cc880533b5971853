"""Mid-stream recovery's settings (issue 11): the ``prefill`` capability, ``stream: {recover:}``
in a route file, and what dry-run tells of a stream that breaks (``--simulate TARGET=cut``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router import Router
from router.cli.main import main
from router.errors import ConfigError
from router.providers.kinds import model_capabilities
from tests.engine_helpers import MSG, Factory, chat_path, collect, route_file, target
from tests.servers.openai import OpenAIServer, Reply, broken_reply, text_events

# -- configuration and capability ----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "model", "prefill"), [
    ("anthropic", "claude-haiku-4-5", True),
    ("anthropic", "claude-sonnet-4-5-20250929", True),
    ("anthropic", "claude-3-5-sonnet-latest", True),
    ("anthropic", "claude-opus-4-6", False),  # 4.6 refuses a prefill
    ("anthropic", "claude-opus-4-7", False),  # unknown: never assumed
    ("openai", "gpt-4o-mini", False),  # answers a trailing assistant message anew
    ("openai-compatible", "llama3", False),
])
def test_prefill_is_declared_only_by_models_known_to_continue_one(
        kind: str, model: str, prefill: bool) -> None:
    assert model_capabilities(kind, model).prefill is prefill
    assert model_capabilities(kind, model, {"prefill": True}).prefill  # a route file's say


def test_a_route_file_with_a_bad_recover_mode_is_refused(openai_server: OpenAIServer) -> None:
    data = route_file(openai_server.port, {"r": {"chain": ["a:m"],
                                                 "stream": {"recover": "resume"}}}, names=["a"])
    with pytest.raises(ConfigError):
        Router.from_dict(data)


# -- dry-run -------------------------------------------------------------------------------------


async def test_dry_run_shows_what_recovery_would_do_for_a_cut(
        router_for: Factory) -> None:
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    report = router.dry_run("r", MSG, simulate={"a:m": "cut"})
    assert report.answered_by == "b:m" and report.recover == "replay"
    first, then = (e for e in report.events if e.kind == "try")
    assert first.outcome == "cut" and "recover (replay)" in (first.action or "")
    assert "replays silently" in (then.action or "")
    off = router.dry_run("r", MSG, simulate={"a:m": "cut"}, recover="off")
    assert off.answered_by is None and off.failure is not None
    assert "stream_interrupted" in off.failure and "recover: off" in off.failure
    bad = router.dry_run("r", MSG, simulate={"a:m": "cut", "b:m": "diverge"})
    assert bad.failure is not None and "resume_diverged" in bad.failure
    assert "stream recovery after the first chunk: replay" in str(report)


def test_the_cli_dry_run_simulates_a_cut(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "version: 1\n"
        "providers:\n"
        "  openai: {kind: openai, api_key: sk-test}\n"
        "  anthropic: {kind: anthropic, api_key: sk-test}\n"
        "models:\n"
        "  chat:\n"
        "    chain: [openai:gpt-4o-mini, anthropic:claude-haiku-4-5]\n"
        "    stream: {recover: continue}\n", encoding="utf-8")
    code = main(["dry-run", str(routes), "--model", "chat", "--simulate",
                 "openai:gpt-4o-mini=cut", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["recover"] == "continue"
    assert report["answered_by"] == "anthropic:claude-haiku-4-5"
    assert [e["outcome"] for e in report["events"] if e["kind"] == "try"] == ["cut", "cut", "ok"]
    assert "prefill" in report["events"][-1]["action"]


async def test_a_route_file_may_declare_prefill_for_a_compatible_server(
        openai_server: OpenAIServer) -> None:
    # llama.cpp's server continues a trailing assistant message: declared in the route file
    tokens = [f"t{i:02d} " for i in range(12)]
    openai_server.enqueue(broken_reply(text_events(tokens), after=7), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(tokens[6:])), path=chat_path("b"))
    data = route_file(openai_server.port, {"r": {"chain": ["a:m", "b:m"],
                                                 "stream": {"recover": "continue"}}},
                      names=["a"], providers={"b": {"models": {"m": {"prefill": True}}}},
                      retry={"attempts": 1})
    async with Router.from_dict(data) as router:
        chunks = await collect(router.stream("r", MSG))
    assert "".join(c.delta for c in chunks) == "".join(tokens)
    sent = openai_server.requests[-1].json["messages"]
    assert sent[-1] == {"role": "assistant", "content": "".join(tokens[:6]).rstrip()}
