"""format_diagnostics and exit_code: what `router validate` prints and returns."""

from __future__ import annotations

import json

import pytest

from router.config.report import exit_code, format_diagnostics
from router.diagnostics import Diagnostic

UNKNOWN = Diagnostic("b.yaml", 3, 5, "error", "E010", "unknown key 'timout' in models.fast",
                     "keys allowed here: target, timeout")
WRONG_TYPE = Diagnostic("a.yaml", 9, 3, "error", "E011", "defaults.deadline: expected a "
                        "duration like 5s, got a list")
LITERAL_KEY = Diagnostic("a.yaml", 2, 14, "warning", "W105", "providers.openai.api_key is "
                         "written in the file", "write api_key: ${OPENAI_API_KEY}")
ALL = [UNKNOWN, WRONG_TYPE, LITERAL_KEY]


def test_text_lists_each_diagnostic_with_its_hint_sorted_by_position() -> None:
    assert format_diagnostics(ALL, "text").splitlines() == [
        "a.yaml:2:14: warning[W105] providers.openai.api_key is written in the file",
        "    hint: write api_key: ${OPENAI_API_KEY}",
        "a.yaml:9:3: error[E011] defaults.deadline: expected a duration like 5s, got a list",
        "b.yaml:3:5: error[E010] unknown key 'timout' in models.fast",
        "    hint: keys allowed here: target, timeout",
        "2 errors, 1 warning",
    ]


def test_text_summary_counts_singular_and_plural() -> None:
    assert format_diagnostics([UNKNOWN], "text").splitlines()[-1] == "1 error, 0 warnings"
    assert format_diagnostics([LITERAL_KEY, LITERAL_KEY], "text").splitlines()[-1] == (
        "0 errors, 2 warnings")


def test_text_without_problems_says_ok() -> None:
    assert format_diagnostics([], "text") == "ok: no problems"


def test_json_is_one_object_with_counts_and_sorted_diagnostics() -> None:
    out = json.loads(format_diagnostics(ALL, "json"))
    assert (out["ok"], out["errors"], out["warnings"]) == (False, 2, 1)
    assert [(d["file"], d["line"], d["code"]) for d in out["diagnostics"]] == [
        ("a.yaml", 2, "W105"), ("a.yaml", 9, "E011"), ("b.yaml", 3, "E010")]
    assert out["diagnostics"][2] == {
        "file": "b.yaml", "line": 3, "col": 5, "severity": "error", "code": "E010",
        "message": "unknown key 'timout' in models.fast",
        "hint": "keys allowed here: target, timeout"}


def test_json_with_only_warnings_is_ok() -> None:
    out = json.loads(format_diagnostics([LITERAL_KEY], "json"))
    assert (out["ok"], out["errors"], out["warnings"]) == (True, 0, 1)


def test_json_without_problems() -> None:
    assert json.loads(format_diagnostics([], "json")) == {
        "ok": True, "errors": 0, "warnings": 0, "diagnostics": []}


def test_github_writes_one_annotation_per_diagnostic() -> None:
    assert format_diagnostics(ALL, "github").splitlines() == [
        "::warning file=a.yaml,line=2,col=14,title=W105::providers.openai.api_key is written in "
        "the file (hint: write api_key: ${OPENAI_API_KEY})",
        "::error file=a.yaml,line=9,col=3,title=E011::defaults.deadline: expected a duration "
        "like 5s, got a list",
        "::error file=b.yaml,line=3,col=5,title=E010::unknown key 'timout' in models.fast "
        "(hint: keys allowed here: target, timeout)",
    ]


def test_github_without_problems_is_empty() -> None:
    assert format_diagnostics([], "github") == ""


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        format_diagnostics(ALL, "xml")  # type: ignore[arg-type]


def test_exit_code_is_zero_when_clean() -> None:
    assert exit_code([], strict=False) == 0
    assert exit_code([], strict=True) == 0


def test_exit_code_ignores_warnings_unless_strict() -> None:
    assert exit_code([LITERAL_KEY], strict=False) == 0
    assert exit_code([LITERAL_KEY], strict=True) == 1


def test_exit_code_is_one_on_errors() -> None:
    assert exit_code(ALL, strict=False) == 1
    assert exit_code([WRONG_TYPE], strict=True) == 1
