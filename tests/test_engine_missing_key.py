"""A provider whose key variable is unset breaks nothing but its own targets: the Router builds,
aliases that do not use it answer, its targets are skipped (``missing_key``, naming the
variable, never a value) and the chain goes on; with every target skipped so, the error says
which variables to set. ``strict=True`` refuses at build time instead (E060), and validate
only warns. Keyed providers are openai-compatible on the loopback OpenAI server; the keyless
ones point at the same server, so any request they sent would be counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from router import Router
from router.config.validate import validate_dict
from router.errors import ConfigError, ErrorClass, NoRouteError, RouteFailed
from tests.engine_helpers import MSG, collect, provider, route_file
from tests.servers.openai import OpenAIServer, Reply, error_reply, text_events

GEMINI = "google:gemini-2.5-flash"
CLAUDE = "anthropic:claude-haiku-4-5"


def doc(server: OpenAIServer) -> dict[str, Any]:
    """Provider ``a`` has its key; ``google`` reads GEMINI_API_KEY (no api_key: W107) and
    ``anthropic`` names ``${ANTHROPIC_API_KEY}`` (W101): neither is set."""
    d = route_file(server.port, {
        "ok": ["a:m"], "mixed": [GEMINI, "a:m"], "keyless": [GEMINI, CLAUDE],
        "late": ["a:m", GEMINI]}, names=["a"])
    d["providers"]["google"] = {"kind": "google", "base_url": f"http://127.0.0.1:{server.port}"}
    d["providers"]["anthropic"] = {"kind": "anthropic", "api_key": "${ANTHROPIC_API_KEY}",
                                   "base_url": f"http://127.0.0.1:{server.port}"}
    return d


Make = Callable[..., Router]


@pytest.fixture
async def make(openai_server: OpenAIServer) -> AsyncIterator[Make]:
    routers: list[Router] = []

    def build(**kw: Any) -> Router:
        r = Router.from_dict(doc(openai_server), env={}, **kw)
        routers.append(r)
        return r

    yield build
    for r in routers:
        await r.aclose()


def reasons(attempts: list[Any]) -> list[tuple[str, str, str | None]]:
    return [(a.target, a.outcome, a.reason) for a in attempts]


# -- building -----------------------------------------------------------------------------------

def test_validate_warns_about_the_missing_variables_without_an_error(
        openai_server: OpenAIServer) -> None:
    result = validate_dict(doc(openai_server), env={})
    assert result.errors == []
    assert {d.code for d in result.warnings} >= {"W101", "W107"}
    assert result.plan is not None


def test_the_router_builds_and_flags_the_targets_once_at_compile_time(make: Make) -> None:
    plan = make().plan
    assert [t.missing_env for t in plan.routes["mixed"].targets] == [("GEMINI_API_KEY",), ()]
    assert plan.routes["keyless"].targets[1].missing_env == ("ANTHROPIC_API_KEY",)
    # ad-hoc routes are built from the same provider specs
    assert plan.resolve(f"{CLAUDE},a:m").targets[0].missing_env == ("ANTHROPIC_API_KEY",)


def test_strict_refuses_naming_each_variable_a_route_needs(openai_server: OpenAIServer,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc(openai_server)))
    for build in (lambda: Router.from_dict(doc(openai_server), env={}, strict=True),
                  lambda: Router.from_yaml(path, env={}, strict=True)):
        with pytest.raises(ConfigError) as info:
            build()
        assert [d.code for d in info.value.diagnostics] == ["E060", "E060"]
        assert "ANTHROPIC_API_KEY" in str(info.value) and "GEMINI_API_KEY" in str(info.value)


def test_strict_accepts_a_keyless_provider_that_no_route_uses(
        openai_server: OpenAIServer) -> None:
    d = doc(openai_server)
    d["models"] = {"ok": ["a:m"]}
    assert list(Router.from_dict(d, env={}, strict=True).plan.routes) == ["ok"]


# -- calls --------------------------------------------------------------------------------------

async def test_an_alias_that_does_not_use_the_keyless_provider_answers(
        make: Make, openai_server: OpenAIServer) -> None:
    r = await make().chat("ok", MSG)
    assert (r.target, reasons(r.attempts)) == ("a:m", [("a:m", "ok", None)])


async def test_a_keyless_target_is_skipped_naming_its_variable_and_the_chain_goes_on(
        make: Make, openai_server: OpenAIServer) -> None:
    r = await make().chat("mixed", MSG)
    assert r.target == "a:m"
    assert reasons(r.attempts) == [(GEMINI, "skipped", "missing_key"), ("a:m", "ok", None)]
    assert r.attempts[0].detail == ("provider 'google' needs GEMINI_API_KEY, which is not set "
                                    "in the environment")
    assert r.attempts[0].error_class is None
    assert openai_server.request_count == 1


async def test_every_target_keyless_fails_saying_which_variables_to_set(
        make: Make, openai_server: OpenAIServer) -> None:
    with pytest.raises(RouteFailed) as info:
        await make().chat("keyless", MSG)
    failed = info.value
    assert failed.error_class is ErrorClass.NO_ROUTE and not failed.retryable
    assert reasons(failed.attempts) == [(GEMINI, "skipped", "missing_key"),
                                        (CLAUDE, "skipped", "missing_key")]
    assert isinstance(failed.last_error, NoRouteError)
    assert failed.last_error.message.startswith(
        "set GEMINI_API_KEY, ANTHROPIC_API_KEY in the environment")
    assert str(failed).startswith("no target of 'keyless' could be tried: ")
    assert str(failed).endswith("; set GEMINI_API_KEY, ANTHROPIC_API_KEY to try the targets "
                                "skipped for a missing key")
    assert openai_server.request_count == 0


async def test_a_chain_failing_elsewhere_still_names_the_variable_that_would_open_a_target(
        make: Make, openai_server: OpenAIServer) -> None:
    openai_server.default = error_reply("server_error")
    with pytest.raises(RouteFailed) as info:
        await make().chat("late", MSG)
    assert info.value.error_class is ErrorClass.SERVER
    assert [a.reason for a in info.value.attempts][-1] == "missing_key"
    assert "set GEMINI_API_KEY" in str(info.value)


async def test_a_stream_skips_a_keyless_target(make: Make,
                                               openai_server: OpenAIServer) -> None:
    openai_server.default = Reply(events=text_events(["he", "llo"]))
    chunks = await collect(make().stream("mixed", MSG))
    assert "".join(c.delta for c in chunks) == "hello"
    assert reasons(chunks[-1].attempts)[0] == (GEMINI, "skipped", "missing_key")
    assert openai_server.request_count == 1


async def test_an_ad_hoc_chain_through_a_keyless_provider_answers_from_the_next(
        make: Make, openai_server: OpenAIServer) -> None:
    r = await make().chat(f"{CLAUDE},a:m", MSG)
    assert r.target == "a:m"
    assert r.attempts[0].reason == "missing_key"


# -- dry-run ------------------------------------------------------------------------------------

def test_dry_run_shows_the_skip_and_what_the_call_would_raise(make: Make) -> None:
    router = make()
    report = router.dry_run("mixed")
    skip = report.events[0]
    assert (skip.kind, skip.target, skip.reason) == ("skip", GEMINI, "missing_key")
    assert "GEMINI_API_KEY" in (skip.detail or "")
    assert report.answered_by == "a:m"
    assert "skipped: missing_key (provider 'google' needs GEMINI_API_KEY" in str(report)
    failed = router.dry_run("keyless")
    assert failed.answered_by is None
    assert failed.failure == ("no_route (exhausted); set GEMINI_API_KEY, ANTHROPIC_API_KEY to try "
                              "the targets skipped for a missing key")


def test_a_provider_given_an_authorization_header_needs_no_key_variable(
        openai_server: OpenAIServer) -> None:
    d = route_file(openai_server.port, {"r": ["h:gpt-4o-mini"]})
    d["providers"]["h"] = {**provider(openai_server.port, "h"), "kind": "openai",
                           "headers": {"Authorization": "Bearer x"}}
    del d["providers"]["h"]["api_key"]
    plan = Router.from_dict(d, env={}, strict=True).plan
    assert plan.routes["r"].targets[0].missing_env == ()
