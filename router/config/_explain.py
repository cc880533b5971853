"""Explaining a route file that fails the schema: each jsonschema error becomes a Diagnostic at
the key or value it is about, with a stable code, a did-you-mean and a hint. Runs only for files
that fail (and only on their failing aliases), so its cost never touches a clean file.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from router.config.load import Document
from router.config.model import COMMON_PROVIDER_FIELDS, KIND_FIELDS
from router.config.schema import (
    ALL_KIND_FIELDS,
    BASE_URLS,
    Path,
    dotted,
    effective_schema,
    explaining_validator,
    fast_validator,
    is_secret,
)
from router.diagnostics import Diagnostic

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    data = _only_failing_aliases(doc.data)
    leaves = (leaf for e in explaining_validator().iter_errors(data) for leaf in _leaves(e))
    return _Explainer(doc).explain([e for e in leaves if not _moot(doc.data, e)])


def _only_failing_aliases(data: Any) -> Any:
    """data with the aliases that pass removed: each alias is checked on its own, so the
    errors jsonschema finds are the same, at a fraction of the cost on a large file."""
    fast = fast_validator()
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return data
    bad = {k: v for k, v in models.items() if not (fast.alias_ok(k) and fast.route_ok(v))}
    return {**data, "models": bad}


def _leaves(e: SchemaError) -> Iterator[SchemaError]:
    """e, or for anyOf/oneOf the errors of the branch the value was most likely meant for."""
    branch = _branch(e) if e.validator in ("anyOf", "oneOf") and e.context else None
    if branch is None:
        yield e
        return
    for sub in branch:
        yield from _leaves(sub)


def _branch(e: SchemaError) -> list[SchemaError] | None:
    branches: list[Any] = list(_rule(e))
    if _spaced_target(e) is not None:
        return None
    by_index: dict[int, list[SchemaError]] = {}
    for sub in e.context:
        by_index.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    fits = [i for i, b in enumerate(branches) if i in by_index and _fits(b, _inst(e))]
    if isinstance(_inst(e), dict):
        # {target: ...} is meant as a target, {pool: ...} as a pool, whatever else is wrong.
        keyed = [i for i in fits if set(_resolve(branches[i]).get("required", ["\0"]))
                 <= _inst(e).keys()]
        fits = keyed or fits
    return by_index[min(fits, key=lambda i: len(by_index[i]))] if fits else None


def _inst(e: SchemaError) -> Any:
    return e.instance


def _rule(e: SchemaError) -> Any:
    """The failing keyword's value in the schema."""
    return e.validator_value


def _resolve(s: Any) -> Any:
    while isinstance(s, dict) and "$ref" in s:
        s = effective_schema()["$defs"][s["$ref"].removeprefix("#/$defs/")]
    return s


def _json_kind(x: Any) -> str:
    for t in ("boolean", "number", "string", "object", "array", "null"):
        if explaining_validator().is_type(x, t):
            return t
    return type(x).__name__


def _fits(s: Any, x: Any) -> bool:
    """Whether x is the kind of value s describes (ignoring everything but type)."""
    s = _resolve(s)
    if not isinstance(s, dict):
        return bool(s)
    if "type" in s:
        types = [s["type"]] if isinstance(s["type"], str) else s["type"]
        return any(explaining_validator().is_type(x, t) for t in types)
    if "enum" in s or "const" in s:
        return any(_json_kind(v) == _json_kind(x) for v in s.get("enum", [s.get("const")]))
    if "anyOf" in s:
        return any(_fits(b, x) for b in s["anyOf"])
    return True


def _spaced_target(e: SchemaError) -> str | None:
    """`- openai: gpt-4o` in a chain: YAML read a mapping where a target was meant."""
    x = _inst(e)
    target_ref = effective_schema()["$defs"]["target_ref"]
    if isinstance(x, dict) and len(x) == 1 and any(
            _resolve(b) is target_ref for b in _rule(e)):
        ((key, value),) = x.items()
        if isinstance(value, str) and key not in ("target", "pool"):
            return f"{key}:{value}"
    return None


def _moot(data: Any, e: SchemaError) -> bool:
    """A kind-specific rule of a provider whose kind is missing or unknown: its `if` holds
    vacuously, and the fix (a valid kind) is reported on its own."""
    path = tuple(e.absolute_path)
    if len(path) < 2 or path[0] != "providers" or "then" not in e.absolute_schema_path:
        return False
    provider = data["providers"][path[1]]
    kind = provider.get("kind") if isinstance(provider, dict) else None
    return not (isinstance(kind, str) and kind in KIND_FIELDS)


def _defs_of(e: SchemaError) -> tuple[str | None, str | None]:
    """(the $defs entry that holds e's keyword itself, the innermost one around it)."""
    schema = effective_schema()
    node: Any = schema
    own: str | None = None
    around: str | None = None
    steps = list(e.absolute_schema_path)
    for i, key in enumerate(steps):
        while isinstance(node, dict) and key not in node and "$ref" in node:
            own = around = node["$ref"].removeprefix("#/$defs/")
            node = schema["$defs"][own]
        if i < len(steps) - 1:
            node, own = node[key], None
    return own, around


_DURATION_HINT = "write a number and a unit: 500ms, 5s, 2m, 1h (a bare number is seconds)"
_MONEY_HINT = 'write US dollars as 5, 0.25 or "$5"'
_TARGET = "a target like openai:gpt-4o-mini"
#: $defs entry -> (what a value there looks like, how to write one).
_EXPECT: dict[str, tuple[str, str]] = {
    "duration": ("a duration like 5s", _DURATION_HINT),
    "money": ('an amount of US dollars like 5 or "$5"', _MONEY_HINT),
    "timeout": ("a mapping of timeouts", "e.g. timeout: {connect: 5s, total: 60s}"),
    "retry": ("a retry mapping", "e.g. retry: {attempts: 3, initial: 500ms, max: 8s}"),
    "breaker": ("a breaker mapping", "e.g. breaker: {failures: 5, cooldown: 30s}"),
    "on": ("a mapping of error class to action", "e.g. on: {rate_limit: retry, auth: fail}"),
    "defaults": ("a mapping of defaults", "e.g. defaults: {timeout: {total: 60s}}"),
    "price": ("a price mapping", "e.g. price: {input: 0.15, output: 0.6} (USD per 1M tokens)"),
    "model_info": ("a mapping of model facts", "e.g. {context_window: 128000, tools: true}"),
    "provider": ("a provider mapping", 'e.g. openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}'),
    "route": ("a list of targets or a mapping with chain:", "e.g. fast: [openai:gpt-4o-mini]"),
    "chain": ("a list of targets", "e.g. chain: [openai:gpt-4o-mini, anthropic:claude-haiku-4-5]"),
    "target_ref": (_TARGET, "write provider:model, an alias, or a bare model name"),
    "target_obj": ("a target mapping", "e.g. {target: openai:gpt-4o, weight: 2}"),
    "pool": ("a pool", "e.g. {pool: [openai:gpt-4o-mini, azure:gpt-4o-mini]}"),
    "alias_budget": ("a budget mapping", "e.g. budget: {usd: 5, per: hour}"),
    "budget": ("a budget", "e.g. {scope: global, usd: 200, per: month}"),
    "error_rule": ("an error rule", "e.g. {status: 413, class: context_window}"),
    "fake_step": ("a scripted step", "e.g. ok, rate_limit or {outcome: ok, latency: 200ms}"),
}
_TYPES = {
    "object": ("a mapping", "write key: value lines, or {key: value}"),
    "array": ("a list", "write [a, b], or one '- item' line per item"),
    "string": ("a string", 'quote it if YAML reads it as something else: "..."'),
    "integer": ("a whole number", "write digits without quotes, e.g. 3"),
    "number": ("a number", "write it without quotes, e.g. 0.5"),
    "boolean": ("true or false", "write true or false without quotes"),
}
_EXAMPLES = {
    "version": "version: 1",
    "kind": "kind: openai (or openai-compatible, anthropic, google, ollama, azure-openai, fake)",
    "target": "target: openai:gpt-4o-mini",
    "pool": "pool: [openai:gpt-4o-mini, azure:gpt-4o-mini]", "usd": "usd: 5",
    "chain": "chain: [openai:gpt-4o-mini]", "scope": "scope: global", "class": "class: rate_limit",
    "outcome": "outcome: ok", "input": "input: 0.15 (USD per 1M input tokens)",
    "output": "output: 0.6 (USD per 1M output tokens)",
}
_NOUNS = {"": "an allowed value", "error_class": "an error class", "action": "an action",
          "capability": "a capability", "window": "a budget window", "kind": "a provider kind",
          "strategy": "a pool strategy",
          "jitter": "a jitter mode", "outcome": "a scripted outcome",
          "fake_step": "a scripted outcome"}
_RANGE_HINTS = {
    "attempts": "attempts counts the tries of one target, the first included: 1 means no retry",
    "warn_at": "warn_at is a share of the budget, e.g. 0.8 warns at 80%",
    "status": "an HTTP status code, 100 to 599",
    "multiplier": "each backoff is the previous one times this: 1 keeps it constant, 2 doubles it",
    "weight": "weights are relative shares of the pool's traffic, 0 or more",
}
_SCOPES = ("global", "provider:", "alias:", "target:", "tag:")
_UNITS = {"ms": "ms", "msec": "ms", "millis": "ms", "milliseconds": "ms", "sec": "s", "secs": "s",
          "second": "s", "seconds": "s", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
          "hr": "h", "hrs": "h", "hour": "h", "hours": "h"}


def _show(path: Path, x: Any) -> str:
    """x as the user wrote it, unless it sits under a key that holds secrets."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if x is None:
        return "null (an empty value)"
    if isinstance(x, dict | list):
        return "a mapping" if isinstance(x, dict) else "a list"
    if is_secret(path) and isinstance(x, str):
        return "a string"
    text = repr(x)
    return text if len(text) <= 60 else text[:56] + ("...'" if isinstance(x, str) else "...")


def _closest(word: Any, options: Iterable[str]) -> str | None:
    if not isinstance(word, str):
        return None
    options = list(options)
    folded = {o.lower().replace("-", "_"): o for o in options}
    if word.lower().replace("-", "_") in folded:
        return folded[word.lower().replace("-", "_")]
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return found[0] if found else None


def _duration_fix(text: Any) -> str | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]+)\s*", text) if isinstance(
        text, str) else None
    unit = _UNITS.get(m.group(2).lower()) if m else None
    return f"{m.group(1)}{unit}" if m and unit else None


def _is_key_error(e: SchemaError) -> bool:
    """A propertyNames error: about a key, which jsonschema reports as the instance."""
    steps = e.absolute_schema_path
    return len(steps) > 1 and steps[-2] == "propertyNames"


class _Explainer:
    """Turns schema errors into diagnostics, each at the key or value it is about."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.out: dict[tuple[Path, str, str], Diagnostic] = {}
        self.suggested: set[tuple[Path, str]] = set()  # (mapping, key) an E010 already names

    def explain(self, errors: list[SchemaError]) -> list[Diagnostic]:
        # Keys first: a key an unknown one suggests need not be called missing, and the value
        # of a key that is itself wrong (`on: {ratelimit: ...}`) is not worth a second error.
        bad_keys: set[Path] = set()
        rest = []
        for e in errors:
            path = tuple(e.absolute_path)
            if e.validator in ("additionalProperties", "unevaluatedProperties") and (
                    _rule(e) is False):
                self.unknown(path, e)
            elif _is_key_error(e):
                self.bad_key(path, e)
                bad_keys.add((*path, _inst(e)))
            else:
                rest.append((path, e))
        for path, e in rest:
            if not any(path[:i] in bad_keys for i in range(1, len(path) + 1)):
                self.one(path, e)
        return list(self.out.values())

    def add(self, path: Path, code: str, message: str, hint: str, *, key: bool = False) -> None:
        mark = self.doc.mark(path, key=key)
        redact = self.doc.redact
        self.out.setdefault((path, code, message), Diagnostic.at(
            mark, "error", code, redact(message), redact(hint)))

    def one(self, path: Path, e: SchemaError) -> None:
        if e.validator in ("type", "anyOf", "oneOf") and (e.validator != "oneOf" or e.context):
            self.wrong_type(path, e)
        elif e.validator in ("enum", "const", "pattern"):
            self.bad_value(path, e)
        elif e.validator == "required":
            self.missing(path, e)
        else:
            self.out_of_range(path, e)

    def unknown(self, path: Path, e: SchemaError) -> None:
        obj: dict[str, Any] = _inst(e)
        allowed = set(_resolve(e.schema).get("properties", ()))
        kind = obj.get("kind")
        is_provider = len(path) == 2 and path[0] == "providers"
        if is_provider:
            extra = KIND_FIELDS.get(kind, ALL_KIND_FIELDS) if isinstance(kind, str) else (
                ALL_KIND_FIELDS)
            allowed = set(COMMON_PROVIDER_FIELDS) | extra
        for key in obj:
            if key in allowed:
                continue
            owners = sorted(k for k, f in KIND_FIELDS.items() if key in f) if is_provider else []
            if owners:
                self.add((*path, key), "E010",
                         f"{dotted(path)}: {key!r} is only a setting of kind "
                         f"{' and '.join(owners)}, and this provider is kind {kind}",
                         f"remove {key}, or set kind: {owners[0]} if that was meant", key=True)
                continue
            guess = _closest(key, allowed)
            where = f"in {dotted(path)}" if path else "at the top level"
            if guess:
                self.suggested.add((path, guess))
            self.add((*path, key), "E010", f"unknown key {key!r} {where}"
                     + (f"; did you mean {guess!r}?" if guess else ""),
                     f"keys allowed here: {', '.join(sorted(allowed))}", key=True)

    def bad_key(self, path: Path, e: SchemaError) -> None:
        key, (_, kind) = _inst(e), _defs_of(e)
        if kind == "error_class":
            options: list[str] = effective_schema()["$defs"]["error_class"]["enum"]
            guess = _closest(key, options)
            self.add((*path, key), "E012", f"{dotted(path)}: {key!r} is not an error class"
                     + (f"; did you mean {guess!r}?" if guess else ""),
                     f"error classes: {', '.join(options)}", key=True)
        elif kind == "alias_name":
            self.add((*path, key), "E012", f"{dotted(path)}: alias name {key!r} has a ':', ',' "
                     "or a space", "':' separates provider and model in a target; "
                     "name aliases like fast or cheap-chat", key=True)
        else:
            self.add((*path, key), "E012", f"{dotted(path)}: name {key!r} is not allowed",
                     "names start with a letter or _ and go on with letters, digits, _ . -",
                     key=True)

    def wrong_type(self, path: Path, e: SchemaError) -> None:
        own, _ = _defs_of(e)
        spaced = _spaced_target(e) if e.validator == "anyOf" else None
        if spaced is not None:
            self.add(path, "E011", f"{dotted(path)}: expected {_TARGET}, got a mapping",
                     f"write {spaced} with no space after ':' (YAML reads 'a: b' as a mapping)")
            return
        if own in _EXPECT:
            expect, hint = _EXPECT[own]
        elif e.validator == "type":
            types = [_rule(e)] if isinstance(_rule(e), str) else _rule(e)
            expect = " or ".join(_TYPES[str(t)][0] for t in types)
            hint = _TYPES[str(types[0])][1]
        else:  # a nameless anyOf: name its branches
            names = [n for b in _rule(e)
                     if (n := str(b.get("$ref", "")).removeprefix("#/$defs/")) in _EXPECT]
            expect = ", or ".join(_EXPECT[n][0] for n in names) or "another kind of value"
            hint = _EXPECT[names[0]][1] if names else ""
        got = _show(path, _inst(e))
        got = f"the string {got}" if isinstance(_inst(e), str) and got != "a string" else got
        self.add(path, "E011", f"{dotted(path)}: expected {expect}, got {got}", hint)

    def bad_value(self, path: Path, e: SchemaError) -> None:
        own, around = _defs_of(e)
        x, where, shown = _inst(e), dotted(path), _show(path, _inst(e))
        if e.validator == "const":
            expect = json.dumps(_rule(e))
            hint = "the route file format is version 1" if path == ("version",) else ""
            self.add(path, "E012", f"{where}: expected {expect}, got {shown}", hint)
        elif e.validator == "enum":
            options = [str(o) for o in _rule(e)]
            guess = _closest(x, options)
            noun = (_NOUNS.get(own or "-") or _NOUNS.get(str(path[-1]) if path else "-")
                    or _NOUNS.get(around or "", _NOUNS[""]))
            self.add(path, "E012", f"{where}: {shown} is not {noun}"
                     + (f"; did you mean {guess!r}?" if guess else ""),
                     f"allowed: {', '.join(options)}")
        elif around == "duration":
            fix = _duration_fix(x)
            self.add(path, "E012", f"{where}: {shown} is not a duration"
                     + (f"; did you mean {fix!r}?" if fix else ""), _DURATION_HINT)
        elif around == "money":
            self.add(path, "E012", f"{where}: {shown} is not an amount of US dollars", _MONEY_HINT)
        elif path and path[-1] == "scope":
            prefix = str(x).partition(":")[0]
            guess = _closest(prefix, [s.rstrip(":") for s in _SCOPES])
            fixed = f"{guess}:{str(x).partition(':')[2]}" if guess and ":" in str(x) else guess
            self.add(path, "E012", f"{where}: {shown} is not a budget scope"
                     + (f"; did you mean {fixed!r}?" if fixed and fixed != x else ""),
                     "scopes: global, provider:NAME, alias:NAME, target:PROVIDER:MODEL or "
                     "tag:KEY=VALUE")
        else:
            expect, hint = _EXPECT.get(own or "", ("the expected form", ""))
            self.add(path, "E012", f"{where}: {shown} is not {expect}", hint)

    def missing(self, path: Path, e: SchemaError) -> None:
        obj: dict[str, Any] = _inst(e)
        kind = obj.get("kind")
        for key in _rule(e):
            if key in obj or (path, key) in self.suggested:
                continue
            if key == "base_url" and kind in BASE_URLS:
                msg = f"{dotted(path)}: kind {kind} needs base_url"
                hint = f"add base_url: {BASE_URLS[kind]}"
            else:
                msg = f"{dotted(path)}: missing required key {key!r}"
                hint = f"add {_EXAMPLES.get(key, key + ': ...')}"
            self.add(path, "E013", msg, hint, key=True)

    def out_of_range(self, path: Path, e: SchemaError) -> None:
        _, around = _defs_of(e)
        where, limit, v = dotted(path), _rule(e), e.validator
        hint = _RANGE_HINTS.get(str(path[-1]) if path else "", "")
        shown = _show(path, _inst(e))
        if around in ("duration", "money") and v == "minimum":
            msg = f"{where}: {'a duration' if around == 'duration' else 'an amount'} cannot be " \
                  f"negative, got {shown}"
        elif v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            words = {"minimum": "at least", "maximum": "at most",
                     "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}[str(v)]
            msg = f"{where}: must be {words} {limit}, got {shown}"
        elif v in ("minItems", "minLength"):
            msg = f"{where}: must not be empty"
            hint = hint or {"pool": "a pool needs at least one target",
                            "script": "a script needs at least one step"}.get(str(path[-1]), "")
        elif v == "uniqueItems":
            msg, hint = f"{where}: lists the same value twice", "remove the repeated entry"
        else:
            msg = f"{where}: breaks the schema rule {v}: {json.dumps(limit)}"
        self.add(path, "E014", msg, hint)
