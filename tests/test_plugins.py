"""Provider plugins: a kind from another package is listed, validated, in the schema and served.

The package in tests/plugin_pkg is built and pip-installed once per module, into a directory
of its own that only this module's subprocesses put on their path: a plugin installed into the
shared venv would show up in every other test (and every other checkout's run) meanwhile.
importlib.metadata finds it there exactly as in site-packages. Each CLI run is a fresh
interpreter, so discovery starts from scratch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from router.config.model import RouteFileCfg
from router.config.validate import validate_dict
from router.engine.router import Router
from router.providers import registry
from router.providers.base import Capabilities, Provider, Timeouts
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SRC = Path(__file__).resolve().parent / "plugin_pkg"

ECHO_FILE = """\
version: 1
providers:
  e: {kind: echo, prefix: "echo: "}
models:
  x: [e:any]
"""


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests/plugin_pkg got installed (a directory to put on PYTHONPATH)."""
    target = tmp_path_factory.mktemp("echo_site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-q", "--target", str(target),
         str(PLUGIN_SRC)],
        check=True, capture_output=True, text=True, timeout=120)
    assert (target / "router_echo_plugin-0.1.0.dist-info" / "entry_points.txt").exists()
    return target


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed distribution whose entry points are all wrong, each in its own way."""
    site = tmp_path_factory.mktemp("broken_site")
    info = site / "router_broken_plugin-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: router-broken-plugin\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text(
        "[router.providers]\n"
        "broken = router_missing_module:Provider\n"  # the module does not exist
        "openai = json:dumps\n"  # a built-in kind
        "notprovider = json:JSONDecoder\n")  # not a Provider
    return site


def run_cli(*args: str, path: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [*path, ROOT])
    env["PYTHONIOENCODING"] = "utf-8"
    result = subprocess.run([sys.executable, "-m", "router.cli.main", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


# -- an installed plugin, seen from the command line --------------------------------------------


def test_providers_lists_the_plugin_kind_with_its_distribution(echo_site: Path,
                                                               tmp_path: Path) -> None:
    r = run_cli("providers", path=[echo_site], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    echo = next(line for line in r.stdout.splitlines() if line.startswith("echo "))
    assert "plugin router-echo-plugin 0.1.0" in echo
    assert "streaming" in echo and "tools" not in echo

    r = run_cli("providers", "--format", "json", path=[echo_site], cwd=tmp_path)
    kinds = {k["kind"]: k for k in json.loads(r.stdout)["kinds"]}
    assert kinds["echo"]["distribution"] == "router-echo-plugin"
    assert kinds["echo"]["version"] == "0.1.0"
    assert kinds["echo"]["settings"] == ["prefix", "uppercase"]
    assert kinds["openai"]["source"] == "built-in"
    assert kinds["openai"]["key_env"] == "OPENAI_API_KEY"


def test_schema_includes_the_plugin_kind_and_its_settings(echo_site: Path,
                                                          tmp_path: Path) -> None:
    r = run_cli("schema", path=[echo_site], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    provider = json.loads(r.stdout)["$defs"]["provider"]
    assert "echo" in provider["properties"]["kind"]["enum"]
    (block,) = [b for b in provider["allOf"] if b["if"]["properties"]["kind"] == {"const": "echo"}]
    assert block["then"]["properties"]["prefix"]["type"] == "string"


def test_validate_accepts_a_route_file_using_the_plugin_kind(echo_site: Path,
                                                             tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(ECHO_FILE)
    r = run_cli("validate", "routes.yaml", path=[echo_site], cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "0 errors" in r.stdout


def test_validate_suggests_the_setting_a_typo_meant(echo_site: Path, tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(ECHO_FILE.replace("prefix:", "prefx:"))
    r = run_cli("validate", "routes.yaml", path=[echo_site], cwd=tmp_path)
    assert r.returncode == 1
    assert "routes.yaml:3:19: error[E010] unknown key 'prefx' in providers.e; " \
           "did you mean 'prefix'?" in r.stdout


def test_validate_rejects_a_setting_of_the_wrong_type(echo_site: Path, tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(ECHO_FILE.replace('"echo: "', "5"))
    r = run_cli("validate", "routes.yaml", path=[echo_site], cwd=tmp_path)
    assert r.returncode == 1
    assert "error[E011] providers.e.prefix: expected a string, got 5" in r.stdout


def test_validate_without_the_plugin_calls_the_kind_unknown(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(ECHO_FILE)
    r = run_cli("validate", "routes.yaml", path=[], cwd=tmp_path)
    assert r.returncode == 1
    assert "providers.e.kind: 'echo' is not a provider kind" in r.stdout


def test_chat_answers_through_the_plugin_provider(echo_site: Path, tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(ECHO_FILE)
    r = run_cli("chat", "routes.yaml", "hi there", "--model", "x", path=[echo_site],
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "echo: hi there\n"


def test_import_router_does_not_discover_plugins(echo_site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(echo_site), str(ROOT)])}
    code = ("import sys, router; from router import Router; "
            "print('router_echo_plugin' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, check=True)
    assert r.stdout.strip() == "False"


def test_broken_plugin_warns_and_other_files_still_validate(echo_site: Path, broken_site: Path,
                                                            tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(ECHO_FILE)
    r = run_cli("validate", "routes.yaml", path=[echo_site, broken_site], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    warnings = [line for line in r.stderr.splitlines() if "PluginWarning" in line]
    assert len(warnings) == 3, r.stderr
    assert all("router-broken-plugin 0.2" in w for w in warnings)
    assert any("'broken'" in w and "No module named 'router_missing_module'" in w
               for w in warnings)
    assert any("'openai' is a built-in kind" in w for w in warnings)
    assert any("is not a subclass of router.providers.base.Provider" in w for w in warnings)

    r = run_cli("providers", "--format", "json", path=[echo_site, broken_site], cwd=tmp_path)
    assert r.returncode == 0
    listing = json.loads(r.stdout)
    assert len(listing["skipped"]) == 3
    assert "broken" not in {k["kind"] for k in listing["kinds"]}


# -- registered at run time, in this process ----------------------------------------------------


class Echo2(Provider):
    """Answers with ``prefix`` and the last user message."""

    kind = "echo2"
    capabilities_default = Capabilities(tools=False)
    config_schema: ClassVar[dict[str, Any] | None] = {
        "properties": {"prefix": {"type": "string"}, "pause": {"$ref": "#/$defs/duration"}},
        "required": ["prefix"],
    }

    def _answer(self, request: ChatRequest) -> str:
        return str(self.config.options["prefix"]) + request.messages[-1].text

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        return ChatResponse(text=self._answer(request), tool_calls=[], finish_reason="stop",
                            usage=Usage(1, 1), model=model)

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(delta=self._answer(request))
        yield ChatChunk(finish_reason="stop", usage=Usage(1, 1), final_tool_calls=[])


@pytest.fixture
def echo2() -> Iterator[None]:
    registry.register_provider_kind("echo2", Echo2)
    yield
    registry.unregister_provider_kind("echo2")


def echo2_file(**settings: Any) -> dict[str, Any]:
    return {"version": 1, "providers": {"e": {"kind": "echo2", **settings}},
            "models": {"x": ["e:m"]}}


async def test_registered_kind_validates_and_runs(echo2: None) -> None:
    result = validate_dict(echo2_file(prefix="> ", pause="1s"))
    assert not result.errors, result.errors
    async with Router.from_dict(echo2_file(prefix="> ")) as router:
        r = await router.chat("x", [{"role": "user", "content": "hello"}])
    assert r.text == "> hello"
    assert r.target == "e:m"


def test_registered_kind_settings_reach_the_provider_options(echo2: None) -> None:
    cfg = RouteFileCfg.model_validate(echo2_file(prefix="> ", pause="1s"))
    assert cfg.providers is not None
    assert cfg.providers["e"].options() == {"prefix": "> ", "pause": "1s"}


def test_registered_kind_settings_are_checked(echo2: None) -> None:
    diags = {d.code: d.message for d in validate_dict(echo2_file(prefix="> ", pase="1s")).errors}
    assert diags["E010"] == "unknown key 'pase' in providers.e; did you mean 'pause'?"
    diags = {d.code: d.message for d in validate_dict(echo2_file()).errors}
    assert diags["E013"] == "providers.e: missing required key 'prefix'"
    diags = {d.code: d.message for d in validate_dict(echo2_file(prefix="", pause="soon")).errors}
    assert diags["E012"].startswith("providers.e.pause: 'soon' is not a duration")


def test_unregistered_kind_is_unknown_again() -> None:
    registry.register_provider_kind("echo2", Echo2)
    registry.unregister_provider_kind("echo2")
    messages = [d.message for d in validate_dict(echo2_file(prefix="> ")).errors]
    assert "providers.e.kind: 'echo2' is not a provider kind" in messages


@pytest.mark.parametrize(("kind", "cls", "problem"), [
    ("echo3", dict, "is not a subclass of router.providers.base.Provider"),
    ("bad kind", Echo2, "is not a valid kind name"),
    ("echo3", type("Abstract", (Provider,), {}), "does not implement chat, stream"),
    ("echo3", type("Base", (Echo2,), {"config_schema": {"properties": {"base_url": {}}}}),
     "redefines common provider settings base_url"),
    ("echo3", type("Loose", (Echo2,), {"config_schema": {"additionalProperties": False}}),
     "may not use additionalProperties"),
    ("echo3", type("Typo", (Echo2,), {"config_schema": {"properties": {"a": {"type": "strin"}}}}),
     "is not a valid JSON Schema"),
    ("echo3", type("Key", (Echo2,), {"key_env": "MY KEY"}), "key_env must be"),
])
def test_register_provider_kind_rejects_what_cannot_serve(kind: str, cls: Any,
                                                          problem: str) -> None:
    with pytest.raises(registry.PluginError, match=problem):
        registry.register_provider_kind(kind, cls)
    assert registry.plugin_kind(kind) is None
