"""Every problem of a route file in one run (issue 10): structural errors do not hide the
checks of meaning on the well-formed parts, and the ill-formed parts cause no follow-on
errors of their own."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from router.config._salvage import salvage
from router.config.load import load_file
from router.config.validate import validate_dict, validate_text

ROOT = Path(__file__).parent.parent
STRUCTURAL = {"E010", "E011", "E012", "E013", "E014"}
ENV = {"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-b", "GEMINI_API_KEY": "sk-c",
       "GROQ_API_KEY": "sk-d"}


def codes(text: str) -> list[str]:
    return [d.code for d in validate_text(text, env=ENV).diagnostics]


def test_meaning_errors_are_reported_beside_schema_errors() -> None:
    found = codes("""\
version: 1
defaults: {timout: {total: 5s}}
providers:
  openai: {kind: openai, timeout: {connect: 20s, total: 10s}}
  bad: {kind: openia}
models:
  fast: [opnai:gpt-4o-mini]
  a: [b]
  b: [a]
errors: [{provider: nope, class: server}]
budgets: [{scope: alias:fats, usd: 5}]
""")
    assert sorted(found) == ["E010", "E012", "E020", "E021", "E030", "E040", "E042"]


def test_a_route_naming_an_ill_formed_provider_gets_no_follow_on_error() -> None:
    found = codes("""\
version: 1
providers: {gemini: {kind: gooogle}, openai: {kind: openai}}
models:
  a: [gemini:gemini-2.5-flash, openai:gpt-4o-mini]
  b: [gemini-2.5-pro]
errors: [{provider: gemini, class: server}]
budgets: [{scope: provider:gemini, usd: 5}, {scope: target:gemini:gemini-2.5-flash, usd: 1}]
""")
    assert found == ["E012"]


def test_a_reference_to_an_ill_formed_alias_gets_no_follow_on_error() -> None:
    found = codes("""\
version: 1
providers: {openai: {kind: openai}}
models:
  base: {chain: openai:gpt-4o}
  top: [base, openai:gpt-4o-mini]
budgets: [{scope: alias:base, usd: 5}]
""")
    assert found == ["E011"]


def test_chain_entries_after_an_ill_formed_one_keep_their_lines() -> None:
    result = validate_text("""\
version: 1
providers: {openai: {kind: openai}}
models:
  fast:
    - {target: openai:gpt-4o, wieght: 2}
    - 42
    - opnai:gpt-4o-mini
""", env=ENV)
    e020 = [d for d in result.diagnostics if d.code == "E020"]
    assert [(d.line, d.col) for d in e020] == [(7, 7)]
    assert result.plan is None  # a salvaged file gives diagnostics, never a Plan


def test_settings_that_lost_a_part_are_not_judged() -> None:
    # defaults.retry is ill-formed: the built-in retry would not fit the 100ms deadline (E031),
    # but the file's own retry is unknown, so no E031 is reported.
    found = codes("""\
version: 1
defaults: {retry: {attempts: many, max: 1s}}
providers: {openai: {kind: openai}}
models: {fast: {chain: [openai:gpt-4o-mini], deadline: 100ms}}
""")
    assert found == ["E011"]


def test_an_untouched_route_is_judged_beside_a_broken_one() -> None:
    found = codes("""\
version: 1
providers: {openai: {kind: openai}}
models:
  broken: {chain: [openai:gpt-4o], deadline: never}
  fine: {chain: [openai:gpt-4o-mini], retry: {attempts: 5, initial: 1s}, deadline: 2s}
""")
    assert sorted(found) == ["E012", "E031"]


def test_non_finite_numbers_are_reported_once_and_the_rest_is_checked() -> None:
    found = codes("""\
version: 1
providers: {openai: {kind: openai}}
models:
  fast: {chain: [openai:gpt-4o-mini], timeout: {total: .nan}}
  other: [opnai:gpt-4o]
""")
    assert sorted(found) == ["E015", "E020"]


def test_a_file_that_is_no_mapping_salvages_nothing() -> None:
    assert salvage(["version", 1]) == (None, salvage(["x"])[1])


def _example() -> dict[str, Any]:
    doc, diags = load_file(ROOT / "routes.example.yaml", env=ENV)  # on: stays a string
    assert doc is not None and not diags and isinstance(doc.data, dict)
    return doc.data


def _breakages() -> list[Any]:
    data = _example()
    cases: list[Any] = []
    for name in data["providers"]:
        cases.append(pytest.param(("providers", name, "kind"), "openia", id=f"kind-{name}"))
        cases.append(pytest.param(("providers", name), 42, id=f"provider-{name}"))
    for alias in data["models"]:
        cases.append(pytest.param(("models", alias), 42, id=f"alias-{alias}"))
    for key in data["defaults"]:
        cases.append(pytest.param(("defaults", key), "bad", id=f"defaults-{key}"))
    cases += [pytest.param(("providers",), 42, id="providers"),
              pytest.param(("models",), 42, id="models"),
              pytest.param(("errors", 0, "class"), "nope", id="error-rule"),
              pytest.param(("budgets", 0, "usd"), "lots", id="budget")]
    return cases


@pytest.mark.parametrize(("path", "value"), _breakages())
def test_breaking_one_part_of_a_clean_file_gives_only_structural_errors(
        path: tuple[Any, ...], value: Any) -> None:
    data = copy.deepcopy(_example())
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    result = validate_dict(data, env=ENV)
    assert result.errors
    assert {d.code for d in result.errors} <= STRUCTURAL, [d.format_text() for d in result.errors]


def _paths(data: Any) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if path:
            out.append(path)
        if isinstance(value, dict):
            stack += [((*path, k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [((*path, i), v) for i, v in enumerate(value)]
    return sorted(out, key=repr)


@pytest.mark.parametrize("env", [ENV, {}], ids=["keys set", "no keys"])
def test_no_part_of_the_example_breaks_into_a_follow_on_diagnostic(env: dict[str, str]) -> None:
    """Each value of the example, made ill-formed in turn: only structural errors, and no
    warning the intact file does not have (no W106 for a price that was in the part left out,
    no W107 for a key that was)."""
    example = _example()
    before = {(d.code, d.message) for d in validate_dict(example, env=env).diagnostics}
    for path in _paths(example):
        data = copy.deepcopy(example)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = [[]]
        result = validate_dict(data, env=env)
        extra = [d.format_text() for d in result.diagnostics if d.code not in STRUCTURAL
                 and (d.is_error or (d.code, d.message) not in before)]
        assert result.errors and not extra, (path, extra)
