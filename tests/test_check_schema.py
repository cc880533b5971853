"""check_structure: each schema mistake becomes one diagnostic at the right place, with a fix."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from router.config import check
from router.config.check import check_structure
from router.config.load import from_dict, load_text
from router.config.model import RouteFileCfg
from router.config.report import format_diagnostics
from router.diagnostics import Diagnostic

INVALID = sorted((Path(__file__).parent / "corpus" / "invalid").glob("*.yaml"))
VALID = sorted((Path(__file__).parent / "corpus" / "valid").glob("*.yaml"))
ENV = {"OPENAI_API_KEY": "sk-test-openai-0000", "GROQ_API_KEY": "gsk-test-groq-0000"}


def diagnose(text: str, env: dict[str, str] | None = None) -> list[Diagnostic]:
    doc, loaded = load_text(text, "routes.yaml", env=ENV if env is None else env)
    assert doc is not None, loaded
    return loaded + check_structure(doc)[1]


def only_error(text: str) -> Diagnostic:
    errors = [d for d in diagnose(text) if d.is_error]
    assert len(errors) == 1, errors
    return errors[0]


def test_top_level_typo_suggests_the_key() -> None:
    d = only_error("verison: 1\n")
    assert d.code == "E010"
    assert "unknown key 'verison'" in d.message
    assert "did you mean 'version'?" in d.message


def test_top_level_typo_points_at_the_key() -> None:
    d = only_error("version: 1\nmodels: {}\nprovidres: {}\n")
    assert (d.line, d.col) == (3, 1)


def test_provider_key_typo_suggests_the_key() -> None:
    d = only_error("version: 1\nproviders:\n  openai: {kind: openai, api_kye: x}\n")
    assert d.code == "E010"
    assert "did you mean 'api_key'?" in d.message
    assert (d.line, d.col) == (3, 26)


def test_provider_typo_is_matched_against_its_kind_keys() -> None:
    d = only_error("version: 1\nproviders:\n  local: {kind: ollama, keepalive: 5m}\n")
    assert "did you mean 'keep_alive'?" in d.message
    assert "keep_alive" in d.hint and "organization" not in d.hint


def test_key_of_another_kind_names_that_kind() -> None:
    d = only_error("version: 1\nproviders:\n  openai:\n    kind: openai\n    script: [ok]\n")
    assert d.code == "E010"
    assert "'script' is only a setting of kind fake" in d.message
    assert (d.line, d.col) == (5, 5)


def test_typo_in_chain_target_object_names_the_key() -> None:
    d = only_error("version: 1\nmodels:\n  fast:\n    - a:b\n    - {target: c:d, timout: 5s}\n")
    assert d.code == "E010"
    assert "unknown key 'timout' in models.fast[1]; did you mean 'timeout'?" in d.message
    assert "any of the given schemas" not in d.message
    assert (d.line, d.col) == (5, 21)


def test_wrong_type_inside_route_object_says_what_was_expected() -> None:
    d = only_error("version: 1\nmodels:\n  fast:\n    chain: [a:b]\n    timeout: {total: [5s]}\n")
    assert d.code == "E011"
    assert d.message == "models.fast.timeout.total: expected a duration like 5s, got a list"
    assert (d.line, d.col) == (5, 22)


def test_unknown_error_class_in_on_map_suggests_the_class() -> None:
    d = only_error("version: 1\ndefaults:\n  on: {rate_limits: retry}\n")
    assert d.code == "E012"
    assert "'rate_limits' is not an error class; did you mean 'rate_limit'?" in d.message
    assert (d.line, d.col) == (3, 8)


def test_unknown_enum_value_lists_the_choices() -> None:
    d = only_error("version: 1\ndefaults:\n  on: {rate_limit: retyr}\n")
    assert "did you mean 'retry'?" in d.message
    assert d.hint == "allowed: retry, fallback, fail"
    assert (d.line, d.col) == (3, 20)


def test_bad_duration_explains_the_format() -> None:
    d = only_error("version: 1\ndefaults:\n  deadline: 5 sec\n")
    assert d.code == "E012"
    assert "did you mean '5s'?" in d.message
    assert "500ms, 5s, 2m, 1h" in d.hint


def test_missing_key_hint_shows_an_example() -> None:
    d = only_error("version: 1\nbudgets:\n  - {usd: 5}\n")
    assert d.code == "E013"
    assert d.message == "budgets[0]: missing required key 'scope'"
    assert d.hint == "add scope: global"


def test_missing_base_url_shows_the_conventional_url() -> None:
    d = only_error("version: 1\nproviders:\n  az: {kind: azure-openai}\n")
    assert d.code == "E013"
    assert "https://YOUR-RESOURCE.openai.azure.com" in d.hint
    assert (d.line, d.col) == (3, 3)


def test_out_of_range_explains_the_limit() -> None:
    d = only_error("version: 1\ndefaults:\n  retry: {attempts: 0}\n")
    assert d.code == "E014"
    assert d.message == "defaults.retry.attempts: must be at least 1, got 0"
    assert "1 means no retry" in d.hint


def test_space_after_colon_in_a_target_is_explained() -> None:
    d = only_error("version: 1\nmodels:\n  fast: [openai: gpt-4o]\n")
    assert d.code == "E011"
    assert "openai:gpt-4o with no space" in d.hint


def test_missing_kind_reports_only_the_kind() -> None:
    d = only_error("version: 1\nproviders:\n  p: {base_url: 'http://h', stream_usage: true}\n")
    assert d.code == "E013"
    assert "'kind'" in d.message


def test_every_error_is_reported_in_one_run() -> None:
    text = ("version: 2\n"
            "defaults:\n  retry: {attempts: 1.5}\n"
            "providers:\n  openai: {kind: opnai}\n"
            "models:\n  fast: [{target: a:b, wieght: 1}]\n"
            "budgets:\n  - {scope: everything, usd: 5}\n")
    errors = [(d.line, d.code) for d in diagnose(text) if d.is_error]
    assert errors == [(1, "E012"), (3, "E011"), (5, "E012"), (7, "E010"), (9, "E012")]


def test_diagnostics_come_sorted_by_position() -> None:
    diags = diagnose("zz: 1\nversion: 3\naa: 2\n")
    assert [(d.line, d.col) for d in diags] == sorted((d.line, d.col) for d in diags)


SECRET = "sk-live-DistinctiveSecret-4242"


def test_secret_never_appears_in_any_output() -> None:
    text = (
        "version: 1\n"
        "providers:\n"
        "  openai:\n"
        "    kind: openai\n"
        "    api_key: ${TOKEN}\n"
        "    api_kye: ${TOKEN}\n"  # unknown key holding the secret
        "    headers: {Authorization: 'Bearer ${TOKEN}', X-Bad: [1]}\n"
        "    base_url: ${TOKEN}\n"  # not a URL
        "  broken: {kind: '${TOKEN}', api_key: '${TOKEN}'}\n"  # enum error on the secret
        "models:\n"
        "  fast: {chain: ['${TOKEN}'], deadline: '${TOKEN}', timout: '${TOKEN}'}\n"
        "budgets:\n"
        "  - {scope: '${TOKEN}', usd: '${TOKEN}'}\n"
    )
    diags = diagnose(text, env={"TOKEN": SECRET})
    assert len([d for d in diags if d.is_error]) >= 7
    for fmt in ("text", "json", "github"):
        assert SECRET not in format_diagnostics(diags, fmt)  # type: ignore[arg-type]
    assert all("DistinctiveSecret" not in d.message + d.hint for d in diags)


def test_literal_api_key_warns_without_showing_it() -> None:
    diags = diagnose("version: 1\nproviders:\n  openai: {kind: openai, api_key: sk-abc123xyz}\n")
    (d,) = diags
    assert (d.severity, d.code) == ("warning", "W105")
    assert d.hint == "secrets come from the environment: write api_key: ${OPENAI_API_KEY}"
    assert "sk-abc123xyz" not in d.message + d.hint
    assert (d.line, d.col) == (3, 35)


def test_api_key_from_environment_does_not_warn() -> None:
    assert diagnose('version: 1\nproviders:\n  o: {kind: openai, api_key: "${OPENAI_API_KEY}"}\n'
                    ) == []


def test_dict_config_with_literal_key_does_not_warn() -> None:
    doc, _ = from_dict({"version": 1, "providers": {"o": {"kind": "openai", "api_key": "sk-x"}}})
    cfg, diags = check_structure(doc)
    assert cfg is not None and diags == []


def test_base_url_without_scheme_shows_the_kind_convention() -> None:
    diags = diagnose("version: 1\nproviders:\n  o: {kind: openai, base_url: api.openai.com/v1}\n")
    (d,) = diags
    assert d.code == "E050"
    assert d.hint == "write the whole URL, e.g. base_url: https://api.openai.com/v1"
    assert (d.line, d.col) == (3, 31)


@pytest.mark.parametrize(("kind", "url"), [
    ("anthropic", "https://api.anthropic.com"),
    ("google", "https://generativelanguage.googleapis.com"),
    ("ollama", "http://127.0.0.1:11434"),
])
def test_base_url_hint_per_kind(kind: str, url: str) -> None:
    (d,) = diagnose(f"version: 1\nproviders:\n  p: {{kind: {kind}, base_url: 'ftp://h'}}\n")
    assert d.hint.endswith(url)


def test_valid_structure_returns_the_config() -> None:
    doc, _ = load_text("version: 1\nmodels: {fast: [a:b]}\n", "r.yaml")
    assert doc is not None
    cfg, diags = check_structure(doc)
    assert diags == []
    assert cfg is not None and cfg.models is not None and "fast" in cfg.models


def test_model_errors_map_to_their_path_and_alias() -> None:
    doc, _ = load_text("version: 1\nerrors:\n  - {status: 500, class: nope}\n", "r.yaml")
    assert doc is not None
    with pytest.raises(ValidationError) as caught:
        RouteFileCfg.model_validate(doc.data)
    (d,) = check.pydantic_diagnostics(doc, caught.value)
    assert d.code == "E014"
    assert d.message.startswith("errors[0].class: ")
    assert (d.line, d.col) == (3, 26)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_corpus_file_reports_its_one_mistake(path: Path) -> None:
    text = path.read_text()
    match = re.search(r"# expect: (\w+)", text)
    assert match, "each invalid corpus file names its code"
    assert [d.code for d in diagnose(text) if d.is_error] == [match.group(1)]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_corpus_file_has_no_errors(path: Path) -> None:
    env = {v: f"value-{v.lower()}" for v in re.findall(r"\$\{(\w+)", path.read_text())}
    assert [d for d in diagnose(path.read_text(), env) if d.is_error] == []


def test_five_thousand_aliases_check_fast() -> None:
    lines = ["version: 1", "providers:", "  o: {kind: openai, api_key: '${OPENAI_API_KEY}'}",
             "models:"]
    for i in range(5000):
        lines.append(f"  a{i}:\n    chain:\n      - o:gpt-4o-mini\n"
                     f"      - {{target: o:gpt-4o, timeout: {{total: 10s}}}}\n"
                     f"      - pool: [o:a, {{target: o:b, weight: 2}}]\n"
                     f"    on: {{rate_limit: retry}}\n    deadline: 30s")
    doc, _ = load_text("\n".join(lines), "big.yaml", env=ENV)
    assert doc is not None
    checking = _best_of(5, lambda: check_structure(doc))
    models_alone = _best_of(5, lambda: RouteFileCfg.model_validate(doc.data))
    # jsonschema alone takes seconds here. On a busy machine the absolute figure drifts, but
    # the check must stay a small multiple of the pydantic pass it ends with.
    assert checking < 0.5 or checking < 2.5 * models_alone, (checking, models_alone)


def _best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def test_a_top_level_x_key_is_a_home_for_yaml_anchors() -> None:
    from router.config.validate import validate_text

    text = ("version: 1\n"
            "x-timeouts: &t {connect: 2s, total: 30s}\n"
            "providers:\n"
            "  o: {kind: openai, api_key: \"${K}\", timeout: *t}\n"
            "models:\n"
            "  m: [o:gpt-4o]\n")
    result = validate_text(text, "r.yaml", env={"K": "sk-test-0123456789"})
    assert result.diagnostics == []
    assert result.plan is not None
    timeouts = result.plan.routes["m"].targets[0].timeouts
    assert (timeouts.connect, timeouts.total) == (2.0, 30.0)
