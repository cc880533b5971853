"""Zero config: Router.from_env(), Router() with ROUTER_CONFIG or the environment, and models
addressed without a route file."""

from __future__ import annotations

from pathlib import Path

import pytest

from router import Router
from router.config.zeroconfig import env_route_file, ollama_base_url
from router.errors import ErrorClass, NoRouteError, RouteFailed
from tests.servers.anthropic import AnthropicServer
from tests.servers.openai import OpenAIServer

MSG = [{"role": "user", "content": "hi"}]


def kinds(router: Router) -> dict[str, str]:
    return {name: p.kind for name, p in router.plan.providers.items()}


def test_every_provider_whose_key_is_set_is_configured() -> None:
    env = {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-ant-1", "GEMINI_API_KEY": "g-1",
           "AZURE_OPENAI_API_KEY": "az-1", "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}
    assert kinds(Router.from_env(env)) == {
        "openai": "openai", "anthropic": "anthropic", "google": "google",
        "azure": "azure-openai", "ollama": "ollama"}


def test_with_no_key_set_the_keyed_kinds_are_there_naming_their_variable() -> None:
    plan = Router.from_env({}).plan
    assert {name: p.kind for name, p in plan.providers.items()} == {
        "openai": "openai", "anthropic": "anthropic", "google": "google", "ollama": "ollama"}
    assert {name: p.missing_env for name, p in plan.providers.items()} == {
        "openai": ("OPENAI_API_KEY",), "anthropic": ("ANTHROPIC_API_KEY",),
        "google": ("GEMINI_API_KEY",), "ollama": ()}


def test_google_api_key_stands_in_for_gemini_api_key() -> None:
    router = Router.from_env({"GOOGLE_API_KEY": "g-2"})
    key = router.plan.providers["google"].api_key
    assert key is not None and key.get_secret_value() == "g-2"


def test_azure_needs_its_endpoint_variable_too() -> None:
    assert "azure" not in kinds(Router.from_env({"AZURE_OPENAI_API_KEY": "az-1"}))


def test_sdk_base_url_variables_are_honoured() -> None:
    env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
           "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:8"}
    d = env_route_file(env)
    assert d["providers"]["openai"]["base_url"] == "${OPENAI_BASE_URL}"
    router = Router.from_env(env)
    assert router.plan.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert router.plan.providers["anthropic"].base_url == "http://127.0.0.1:8"


@pytest.mark.parametrize(("host", "url"), [
    (None, "http://127.0.0.1:11434"), ("0.0.0.0", "http://127.0.0.1:11434"),
    ("myhost:1234", "http://myhost:1234"), ("https://ollama.example", "https://ollama.example:11434"),
    ("10.0.0.5", "http://10.0.0.5:11434"),
])
def test_ollama_host_forms(host: str | None, url: str) -> None:
    assert ollama_base_url(host) == url


def test_keys_from_the_environment_never_show(capsys: pytest.CaptureFixture[str]) -> None:
    router = Router.from_env({"OPENAI_API_KEY": "sk-zero-DISTINCT-42"})
    text = repr(router) + repr(router.plan.providers) + str(router.plan)
    assert "sk-zero-DISTINCT-42" not in text


async def test_bare_names_and_ad_hoc_chains_route_without_a_route_file(
        openai_server: OpenAIServer) -> None:
    async with AnthropicServer() as anthropic:
        env = {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": openai_server.base_url,
               "ANTHROPIC_API_KEY": "sk-ant-1", "ANTHROPIC_BASE_URL": anthropic.base_url}
        async with Router.from_env(env) as router:
            r = await router.chat("gpt-4o-mini", MSG)
            assert r.target == "openai:gpt-4o-mini"
            r = await router.chat("anthropic:claude-haiku-4-5", MSG)
            assert r.target == "anthropic:claude-haiku-4-5"
            r = await router.chat("openai:gpt-4o-mini, claude-haiku-4-5", MSG)
            assert r.target == "openai:gpt-4o-mini"
            with pytest.raises(NoRouteError):
                await router.chat("mistral-large", MSG)  # no kind of ours


async def test_a_model_whose_kind_has_no_key_fails_naming_the_variable() -> None:
    async with Router.from_env({"OPENAI_API_KEY": "sk-1"}) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("gemini-2.5-flash", MSG)
    assert info.value.error_class is ErrorClass.NO_ROUTE
    assert "set GEMINI_API_KEY" in str(info.value)
    assert [(a.target, a.reason) for a in info.value.attempts] == [
        ("google:gemini-2.5-flash", "missing_key")]


@pytest.mark.parametrize("chain", ["openai:gpt-4o-mini,anthropic:claude-haiku-4-5",
                                   "anthropic:claude-haiku-4-5,openai:gpt-4o-mini"])
async def test_an_ad_hoc_chain_through_a_kind_without_its_key_answers_from_the_others(
        openai_server: OpenAIServer, chain: str) -> None:
    env = {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": openai_server.base_url}
    async with Router.from_env(env) as router:
        r = await router.chat(chain, MSG)
    assert r.target == "openai:gpt-4o-mini"
    skipped = [(a.target, a.reason) for a in r.attempts if a.outcome == "skipped"]
    assert skipped == ([] if chain.startswith("openai") else
                       [("anthropic:claude-haiku-4-5", "missing_key")])
    assert all("ANTHROPIC_API_KEY" in (a.detail or "") for a in r.attempts
               if a.outcome == "skipped")
    assert openai_server.request_count == 1


async def test_router_with_no_arguments_answers_an_ad_hoc_chain_with_one_key_set(
        openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ROUTER_CONFIG", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-1")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    async with Router() as router:
        r = await router.chat("anthropic:claude-haiku-4-5,openai:gpt-4o-mini", MSG)
    assert r.target == "openai:gpt-4o-mini"
    assert r.attempts[0].reason == "missing_key"


def test_router_with_no_arguments_reads_router_config(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nproviders:\n  f: {kind: fake}\nmodels:\n  fast: [f:m]\n")
    monkeypatch.setenv("ROUTER_CONFIG", str(path))
    assert list(Router().plan.routes) == ["fast"]


def test_router_with_no_arguments_and_no_config_uses_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    assert "anthropic" in kinds(Router())
