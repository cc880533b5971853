"""router.config.load: YAML route files into Documents with marks, checks and ${ENV} values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config import _yaml, load
from router.config.load import Document, EnvRef, from_dict, load_file, load_text
from router.diagnostics import Diagnostic, Mark

ROUTES = """\
# yaml-language-server: $schema=schemas/routes.schema.json
version: 1
defaults:
  timeout: {connect: 5s, total: 60s}
providers:
  openai:    {kind: openai, api_key: "${OPENAI_API_KEY}"}
  local:     {kind: ollama, base_url: "http://127.0.0.1:11434"}
models:
  fast:
    chain:
      - openai:gpt-4o-mini
      - {target: local:llama3.2, timeout: {total: 10s}}
    on: {content_policy: fail}
"""

ANCHORS = """\
x-base: &base
  kind: openai
  timeout: {total: 30s}
x-extra: &extra
  kind: anthropic
  retries: 2
providers:
  merged:
    <<: *base
    api_key: k1
  overridden:
    kind: google
    <<: *base
  overridden_after:
    <<: *base
    kind: ollama
  both:
    <<: [*base, *extra]
  inline:
    <<: {kind: groq, region: eu}
  copy: *base
"""

ENV = {"OPENAI_API_KEY": "sk-test-123"}


def load_ok(text: str | bytes,
            env: dict[str, str] | None = None) -> tuple[Document, list[Diagnostic]]:
    doc, diags = load_text(text, "routes.yaml", env=ENV if env is None else env)
    assert doc is not None, diags
    return doc, diags


def codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags]


def only(diags: list[Diagnostic], code: str) -> Diagnostic:
    found = [d for d in diags if d.code == code]
    assert len(found) == 1, diags
    return found[0]


# Marks


def test_value_marks_are_one_based_line_and_column() -> None:
    doc, _ = load_ok(ROUTES)
    assert doc.marks[("providers", "openai", "kind")] == Mark("routes.yaml", 6, 21)
    assert doc.marks[("models", "fast", "chain", 1, "target")] == Mark("routes.yaml", 12, 18)


def test_key_marks_point_at_the_key() -> None:
    doc, _ = load_ok(ROUTES)
    assert doc.key_marks[("models", "fast", "on")] == Mark("routes.yaml", 13, 5)
    assert doc.mark(("models", "fast", "on"), key=True) == Mark("routes.yaml", 13, 5)


def test_root_mark_is_the_first_value() -> None:
    doc, _ = load_ok(ROUTES)
    assert doc.mark(()) == Mark("routes.yaml", 2, 1)


def test_mark_of_missing_path_is_its_longest_marked_prefix() -> None:
    doc, _ = load_ok(ROUTES)
    assert doc.mark(("providers", "openai", "nope", 3)) == doc.marks[("providers", "openai")]


def test_key_mark_falls_back_to_value_mark_for_list_items() -> None:
    doc, _ = load_ok(ROUTES)
    path = ("models", "fast", "chain", 0)
    assert doc.mark(path, key=True) == doc.marks[path] == Mark("routes.yaml", 11, 9)


def test_mark_of_empty_marks_is_the_file() -> None:
    doc = Document("x.yaml", {}, {}, {}, (), frozenset())
    assert doc.mark(("a", 1)) == Mark("x.yaml")


# Scalars


def test_on_off_yes_no_stay_strings_as_keys_and_values() -> None:
    doc, _ = load_ok("on: {yes: no, off: on, y: n}\n")
    assert doc.data == {"on": {"yes": "no", "off": "on", "y": "n"}}


def test_true_and_false_in_any_case_are_booleans() -> None:
    doc, _ = load_ok("a: true\nb: False\nc: TRUE\nd: fAlSe\n")
    assert doc.data == {"a": True, "b": False, "c": True, "d": False}


def test_numbers_and_nulls_resolve_like_safe_loader() -> None:
    doc, _ = load_ok("i: 12\nh: 0x1f\nf: 1.5\ne: 1e3\nn: ~\nm: null\nempty:\ns: '12'\nt: 30s\n")
    assert doc.data == {"i": 12, "h": 31, "f": 1.5, "e": "1e3", "n": None, "m": None,
                        "empty": None, "s": "12", "t": "30s"}


def test_loading_leaves_pyyaml_safe_loader_unchanged() -> None:
    load_ok("on: yes\n")
    assert yaml.safe_load("on: yes\n") == {True: True}


def test_dates_stay_strings() -> None:
    doc, _ = load_ok("since: 2024-01-31\n")
    assert doc.data == {"since": "2024-01-31"}


def test_explicit_tag_that_cannot_apply_is_e008() -> None:
    doc, diags = load_ok("a: !!int many\nb: !!binary aGk=\n")
    assert codes(diags) == ["E008", "E008"]
    assert doc.data == {"a": "many", "b": "aGk="}


# Keys


def test_integer_key_is_e006_asking_to_quote_it() -> None:
    doc, diags = load_ok("models:\n  1: [a]\n")
    d = only(diags, "E006")
    assert (d.line, d.col, d.severity) == (2, 3, "error")
    assert "keys must be strings" in d.message
    assert '"1"' in d.hint
    assert doc.data == {"models": {"1": ["a"]}}


def test_boolean_key_is_e006() -> None:
    _, diags = load_ok("true: 1\n")
    assert codes(diags) == ["E006"]


def test_quoted_key_is_a_string() -> None:
    doc, diags = load_ok("'1': a\n\"true\": b\n")
    assert diags == []
    assert doc.data == {"1": "a", "true": "b"}


def test_mapping_as_key_is_e006_and_entry_dropped() -> None:
    doc, diags = load_ok("? [a, b]\n: c\nd: e\n")
    assert codes(diags) == ["E006"]
    assert doc.data == {"d": "e"}


def test_duplicate_key_is_e004_at_second_occurrence() -> None:
    _, diags = load_ok("a: 1\nb: 2\na: 3\n")
    d = only(diags, "E004")
    assert (d.line, d.col) == (3, 1)
    assert "'a'" in d.message and "line 1" in d.message
    assert d.hint == "remove one of them; YAML would silently keep the last"


def test_duplicate_key_keeps_the_document_and_first_value() -> None:
    doc, _ = load_ok("a: 1\na: 3\n")
    assert doc.data == {"a": 1}
    assert doc.marks[("a",)] == Mark("routes.yaml", 1, 4)


def test_duplicate_key_in_nested_flow_mapping_is_e004() -> None:
    _, diags = load_ok("p:\n  - {kind: a, kind: b}\n")
    assert (only(diags, "E004").line, only(diags, "E004").col) == (2, 15)


# Anchors, aliases, merges


def test_alias_repeats_the_anchored_value() -> None:
    doc, diags = load_ok(ANCHORS)
    assert diags == []
    assert doc.data["providers"]["copy"] == {"kind": "openai", "timeout": {"total": "30s"}}


def test_alias_value_is_marked_at_its_use_site() -> None:
    doc, _ = load_ok(ANCHORS)
    assert doc.mark(("providers", "copy")) == Mark("routes.yaml", 21, 9)
    assert doc.mark(("providers", "copy", "timeout", "total")) == Mark("routes.yaml", 21, 9)


def test_merge_key_brings_in_anchor_entries() -> None:
    doc, _ = load_ok(ANCHORS)
    assert doc.data["providers"]["merged"] == {
        "kind": "openai", "timeout": {"total": "30s"}, "api_key": "k1"}


def test_explicit_key_overrides_merge_without_duplicate_error() -> None:
    doc, diags = load_ok(ANCHORS)
    assert diags == []
    assert doc.data["providers"]["overridden"]["kind"] == "google"
    assert doc.data["providers"]["overridden_after"]["kind"] == "ollama"
    assert doc.marks[("providers", "overridden", "kind")] == Mark("routes.yaml", 12, 11)
    assert doc.key_marks[("providers", "overridden_after", "kind")] == Mark("routes.yaml", 16, 5)


def test_merge_list_prefers_earlier_mappings() -> None:
    doc, _ = load_ok(ANCHORS)
    assert doc.data["providers"]["both"] == {
        "kind": "openai", "timeout": {"total": "30s"}, "retries": 2}


def test_merged_entries_are_marked_at_the_alias() -> None:
    doc, _ = load_ok(ANCHORS)
    assert doc.marks[("providers", "both", "retries")] == Mark("routes.yaml", 18, 17)
    assert doc.key_marks[("providers", "merged", "kind")] == Mark("routes.yaml", 9, 9)


def test_inline_merge_entries_keep_their_own_marks() -> None:
    doc, _ = load_ok(ANCHORS)
    assert doc.data["providers"]["inline"] == {"kind": "groq", "region": "eu"}
    assert doc.marks[("providers", "inline", "region")] == Mark("routes.yaml", 20, 30)


def test_merge_of_a_scalar_is_e008() -> None:
    _, diags = load_ok("a: &s text\nb:\n  <<: *s\n")
    assert (only(diags, "E008").line, only(diags, "E008").col) == (3, 7)


def test_anchor_on_a_key_can_be_aliased() -> None:
    doc, diags = load_ok("&k kind: *k\n")
    assert diags == [] and doc.data == {"kind": "kind"}


def test_alias_without_anchor_is_e003() -> None:
    doc, diags = load_text("a: *nowhere\n", "routes.yaml")
    assert doc is None
    assert codes(diags) == ["E003"] and "*nowhere" in diags[0].message


# Reading the file


def test_missing_file_is_e001(tmp_path: Path) -> None:
    doc, diags = load_file(tmp_path / "absent.yaml")
    assert doc is None
    assert codes(diags) == ["E001"] and "not found" in diags[0].message
    assert diags[0].file == str(tmp_path / "absent.yaml")


def test_directory_is_e001(tmp_path: Path) -> None:
    doc, diags = load_file(tmp_path)
    assert doc is None and codes(diags) == ["E001"]


def test_load_file_reads_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES, encoding="utf-8")
    doc, diags = load_file(path, env=ENV)
    assert diags == [] and doc is not None
    assert doc.file == str(path) and doc.data["version"] == 1


def test_invalid_utf8_is_e002_with_byte_offset_and_line() -> None:
    doc, diags = load_text(b"a: 1\nb: caf\xe9\n", "routes.yaml")
    assert doc is None
    d = only(diags, "E002")
    assert "0xe9" in d.message and "offset 11" in d.message and "line 2" in d.message
    assert d.line == 2


def test_nul_byte_is_e002_binary() -> None:
    doc, diags = load_text(b"\x89PNG\r\n\x1a\n\x00\x00", "routes.yaml")
    assert doc is None
    assert codes(diags) == ["E002"] and "binary" in diags[0].message
    assert "offset 8" in diags[0].message


def test_control_character_is_e002() -> None:
    doc, diags = load_text("a: 1\nb: x\x1by\n", "routes.yaml")
    assert doc is None
    assert codes(diags) == ["E002"] and "U+001B" in diags[0].message
    assert "offset 9" in diags[0].message and diags[0].line == 2


@pytest.mark.parametrize("text", [b"\xef\xbb\xbfa: 1\n", "\ufeffa: 1\n"])
def test_utf8_bom_is_accepted(text: str | bytes) -> None:
    doc, diags = load_ok(text)
    assert diags == [] and doc.data == {"a": 1}
    assert doc.marks[("a",)] == Mark("routes.yaml", 1, 4)


def test_syntax_error_is_e003_at_the_problem() -> None:
    doc, diags = load_text("a: 1\nb: c: d\n", "routes.yaml")
    assert doc is None
    d = only(diags, "E003")
    assert (d.line, d.col) == (2, 5)
    assert "mapping values are not allowed here" in d.message


def test_tab_indentation_is_e003_with_tab_hint() -> None:
    doc, diags = load_text("providers:\n\topenai: {}\n", "routes.yaml")
    assert doc is None
    d = only(diags, "E003")
    assert (d.line, d.col) == (2, 1) and "tab" in d.hint


def test_second_document_is_e003() -> None:
    doc, diags = load_text("a: 1\n---\nb: 2\n", "routes.yaml")
    assert doc is None
    assert codes(diags) == ["E003"] and diags[0].line == 2


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # and another\n", "---\n"])
def test_empty_file_is_e005_with_skeleton_hint(text: str) -> None:
    doc, diags = load_text(text, "routes.yaml")
    assert doc is None
    assert codes(diags) == ["E005"] and diags[0].message == "the route file is empty"
    assert "version: 1" in diags[0].hint


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"),
                                            ("just text\n", "a string"), ("42\n", "a number")])
def test_top_level_that_is_not_a_mapping_is_e005_naming_it(text: str, kind: str) -> None:
    doc, diags = load_text(text, "routes.yaml")
    assert doc is None
    assert codes(diags) == ["E005"] and kind in diags[0].message


def test_very_deep_nesting_is_e003_not_a_crash() -> None:
    doc, diags = load_text("a: " + "[" * 5000 + "]" * 5000 + "\n", "routes.yaml")
    assert doc is None and codes(diags) == ["E003"]


# Interpolation


def test_env_reference_is_replaced_and_recorded() -> None:
    doc, diags = load_ok(ROUTES)
    assert diags == []
    assert doc.data["providers"]["openai"]["api_key"] == "sk-test-123"
    assert doc.env_refs == (EnvRef(("providers", "openai", "api_key"), "OPENAI_API_KEY", False,
                                   True, Mark("routes.yaml", 6, 38)),)


def test_reference_inside_a_longer_string() -> None:
    doc, _ = load_ok("url: https://${HOST}:8080/v1\n", env={"HOST": "example.org"})
    assert doc.data == {"url": "https://example.org:8080/v1"}


@pytest.mark.parametrize(("ref", "value"), [("${X:-plain}", "plain"), ("${X:-}", ""),
                                            ("${X:-a b: c}", "a b: c")])
def test_default_is_used_when_variable_is_missing(ref: str, value: str) -> None:
    doc, diags = load_ok(f'a: "{ref}"\n', env={})
    assert diags == [] and doc.data == {"a": value}
    assert doc.env_refs[0].has_default and not doc.env_refs[0].present


def test_default_is_not_used_when_variable_is_set() -> None:
    doc, _ = load_ok('a: "${X:-fallback}"\n', env={"X": "real"})
    assert doc.data == {"a": "real"}


def test_empty_variable_falls_back_to_default_like_the_shell() -> None:
    doc, _ = load_ok('a: "${X:-fallback}"\n', env={"X": ""})
    assert doc.data == {"a": "fallback"} and doc.env_refs[0].present


def test_double_dollar_escapes_a_literal_reference() -> None:
    doc, diags = load_ok('a: "$${X} costs $5"\n', env={"X": "no"})
    assert diags == [] and doc.data == {"a": "${X} costs $5"} and doc.env_refs == ()


@pytest.mark.parametrize("ref", ["${1X}", "${A-B}", "${}", "${X:default}"])
def test_bad_variable_name_is_e007_naming_the_text(ref: str) -> None:
    _, diags = load_ok(f'a: "{ref}"\n', env={})
    assert codes(diags) == ["E007"] and ref in diags[0].message


def test_unclosed_reference_is_e007() -> None:
    _, diags = load_ok('a: "key ${OPENAI_API_KEY"\n')
    assert codes(diags) == ["E007"] and "${OPENAI_API_KEY" in diags[0].message


def test_missing_variable_is_w101_with_path_and_hint() -> None:
    doc, diags = load_ok(ROUTES, env={})
    d = only(diags, "W101")
    assert d.severity == "warning" and (d.line, d.col) == (6, 38)
    assert "OPENAI_API_KEY" in d.message and "providers.openai.api_key" in d.message
    assert "export OPENAI_API_KEY=..." in d.hint and "${OPENAI_API_KEY:-default}" in d.hint
    assert doc.data["providers"]["openai"]["api_key"] == ""
    assert doc.env_refs[0].present is False


def test_w101_path_names_list_items() -> None:
    _, diags = load_ok("models:\n  fast: [\"${M}\"]\n", env={})
    assert "models.fast[0]" in only(diags, "W101").message


def test_keys_are_not_interpolated() -> None:
    doc, diags = load_ok('"${X}": 1\n', env={"X": "y"})
    assert diags == [] and doc.data == {"${X}": 1}


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_LOAD_TEST_VAR", "from-os")
    doc, _ = load_text('a: "${ROUTER_LOAD_TEST_VAR}"\n')
    assert doc is not None and doc.data == {"a": "from-os"}


# Secrets


def test_interpolated_values_are_secrets_but_defaults_are_not() -> None:
    doc, _ = load_ok('a: "${OPENAI_API_KEY}"\nb: "${NOPE:-visible}"\n')
    assert doc.secrets == frozenset({"sk-test-123"})


@pytest.mark.parametrize("key", ["api_key", "token", "password", "secret"])
def test_literal_credentials_are_secrets(key: str) -> None:
    doc, _ = load_ok(f"p: {{{key}: literal-value}}\n")
    assert doc.secrets == frozenset({"literal-value"})


def test_header_values_are_secrets() -> None:
    doc, _ = load_ok("p: {headers: {Authorization: Bearer abc, X-Org: org-1}}\n")
    assert doc.secrets == frozenset({"Bearer abc", "org-1"})


def test_credential_reached_through_an_alias_is_a_secret() -> None:
    doc, _ = load_ok("x: &k not-yet-secret\np: {api_key: *k}\n")
    assert "not-yet-secret" in doc.secrets


def test_redact_replaces_every_secret() -> None:
    doc, _ = load_ok('a: {api_key: sk-lit}\nb: "${OPENAI_API_KEY}"\n')
    assert doc.redact("sk-lit then sk-test-123, sk-lit") == "*** then ***, ***"


def test_secrets_never_appear_in_diagnostics() -> None:
    text = ('p:\n  api_key: "${OPENAI_API_KEY}"\n  api_key: "${OPENAI_API_KEY}"\n'
            "  token: !!int sk-lit-token\n  headers: {h: \"${OPENAI_API_KEY}x${MISSING}\"}\n")
    doc, diags = load_ok(text)
    assert codes(diags) and doc.secrets >= {"sk-test-123", "sk-lit-token"}
    for d in diags:
        assert all(s not in d.message + d.hint for s in doc.secrets), d


# from_dict


def test_from_dict_interpolates_and_deep_copies() -> None:
    source: dict[str, Any] = {"providers": {"openai": {"api_key": "${OPENAI_API_KEY}"}},
                              "models": {"fast": ("openai:gpt-4o",)}}
    doc, diags = from_dict(source, env=ENV)
    assert diags == []
    assert doc.data == {"providers": {"openai": {"api_key": "sk-test-123"}},
                        "models": {"fast": ["openai:gpt-4o"]}}
    assert doc.data["providers"] is not source["providers"]
    assert doc.secrets == frozenset({"sk-test-123"})


def test_from_dict_marks_carry_only_the_name() -> None:
    doc, _ = from_dict({"a": {"b": 1}}, "config")
    assert doc.mark(("a", "b")) == Mark("config") and doc.marks[("a", "b")] == Mark("config")


def test_from_dict_non_string_key_is_e006() -> None:
    doc, diags = from_dict({"models": {1: "x"}})
    assert codes(diags) == ["E006"] and doc.data == {"models": {"1": "x"}}


# Parsers and speed


CORNERS = (
    "# comment\r\nname: \"café ☕\"\r\nlist:\r\n- &a {k: v, n: 1}\r\n- *a\r\n"
    "block: |\r\n  line one\r\n  line two\r\nfolded: >-\r\n  one\r\n  two\r\n"
    "m:\r\n  <<: *a\r\n  n: 2\r\n  ü: [x, 'y', \"z\"]\r\n"
)


@pytest.mark.skipif(_yaml.FAST is None, reason="PyYAML without libyaml")
def test_libyaml_and_python_parsers_give_the_same_document() -> None:
    assert _yaml.FAST is not None
    fast = load.build_document(CORNERS, "r.yaml", {}, _yaml.FAST)
    slow = load.build_document(CORNERS, "r.yaml", {}, _yaml.Loader)
    assert fast[0].data == slow[0].data and fast[1] == slow[1]
    assert dict(fast[0].marks) == dict(slow[0].marks)
    assert dict(fast[0].key_marks) == dict(slow[0].key_marks)
    assert fast[0].marks[("m", "ü", 2)] == Mark("r.yaml", 15, 15)


def big_route_file(aliases: int) -> str:
    lines = ["version: 1", "providers:", '  openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}',
             "models:"]
    for i in range(aliases):
        lines += [f"  alias{i}:", "    chain:", "      - openai:gpt-4o-mini",
                  "      - {target: anthropic:claude-haiku-4-5, timeout: {total: 10s}}",
                  "      - local:llama3.2", "    on: {content_policy: fail}"]
    return "\n".join(lines) + "\n"


def test_five_thousand_aliases_load_with_every_mark() -> None:
    # Speed is measured in bench/validate_bench.py, not asserted here (noisy machines).
    text = big_route_file(5000)
    assert text.count("\n") > 30_000
    doc, diags = load_text(text, "big.yaml", env=ENV)
    assert doc is not None and diags == [] and len(doc.data["models"]) == 5000
    assert doc.marks[("models", "alias4999", "chain", 2)].line == text.count("\n") - 1


# Fuzzing

PLAIN_TYPES = (dict, list, str, int, float, bool, type(None))


def assert_well_formed(result: Any) -> None:
    doc, diags = result
    assert isinstance(diags, list) and all(isinstance(d, Diagnostic) for d in diags)
    if doc is None:
        assert any(d.is_error for d in diags)
        return
    assert isinstance(doc, Document) and isinstance(doc.data, dict)
    stack = [doc.data]
    while stack:
        value = stack.pop()
        assert isinstance(value, PLAIN_TYPES)
        if isinstance(value, dict):
            assert all(isinstance(k, str) for k in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert_well_formed(load_text(data, "fuzz.yaml", env={}))


YAML_BITS = st.sampled_from([*":-[]{}&*!|>'\"%@`#,?\t\n $<", "<<: *", "${", "&a ", "*a", "\n  ",
                             "\n- ", "---"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_route_files_never_raise(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from([ROUTES, ANCHORS, CORNERS]))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        text = text[:at] + data.draw(st.one_of(YAML_BITS, st.text(max_size=3))) + text[at + cut:]
    assert_well_formed(load_text(text, "fuzz.yaml", env=ENV))
