"""Fuzz: any input to the whole validate pipeline (load, schema, compile) ends in diagnostics
or success, never an exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config.validate import validate_dict, validate_text

HERE = Path(__file__).parent
SEEDS = [p.read_text("utf-8") for p in sorted((HERE / "corpus" / "valid").glob("*.yaml"))]
SEEDS += [p.read_text("utf-8") for p in sorted((HERE / "golden").glob("*.yaml"))]
SEEDS.append((HERE.parent / "routes.example.yaml").read_text("utf-8"))

ENV = {"OPENAI_API_KEY": "sk-fuzz-secret-value"}
_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _assert_clean(text: str | bytes) -> None:
    result = validate_text(text, "fuzz.yaml", env=ENV)
    for d in result.diagnostics:
        assert d.code and d.message and d.severity in ("error", "warning")
        assert "sk-fuzz-secret-value" not in d.message + d.hint


@_SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_end_in_diagnostics(data: bytes) -> None:
    _assert_clean(data)


@_SETTINGS
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_route_files_end_in_diagnostics(seed: str, data: st.DataObject) -> None:
    text = seed
    for _ in range(data.draw(st.integers(1, 4))):
        if not text:
            break
        i = data.draw(st.integers(0, len(text) - 1))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        op = data.draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        piece = data.draw(st.sampled_from(
            [":", "-", " ", "\n", "[", "{", "}", "]", "'", '"', "${", "*a", "&a", "<<: ",
             "0", "-1", "1e9", "true", "null", "5x", "ms", "\t", "é", "openai:", "pool:"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + piece + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    _assert_clean(text)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["version", "providers", "models", "chain", "kind", "timeout", "total",
                         "retry", "attempts", "pool", "target", "on", "budgets", "scope", "usd",
                         "errors", "class", "defaults", "deadline", "requires", "script",
                         "openai", "fast", "p:m", "fake"]), kids, max_size=5),
    max_leaves=25)


@_SETTINGS
@given(st.dictionaries(st.sampled_from(["version", "providers", "models", "defaults",
                                        "errors", "budgets", "x"]), _json, max_size=6))
def test_random_documents_end_in_diagnostics(doc: dict[str, object]) -> None:
    result = validate_dict(doc, env=ENV)
    assert all(d.code for d in result.diagnostics)


@_SETTINGS
@given(st.sampled_from(SEEDS), st.data())
def test_valid_files_with_values_swapped_end_in_diagnostics(seed: str,
                                                            data: st.DataObject) -> None:
    doc = yaml.safe_load(seed)
    if not isinstance(doc, dict):
        return
    paths: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k in list(node):
                paths.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                walk(node[i])

    walk(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        parent, key = data.draw(st.sampled_from(paths))
        parent[key] = data.draw(_json)  # type: ignore[index]
    assert all(d.code for d in validate_dict(doc, env=ENV).diagnostics)
