"""Structural checks of a loaded route file: the JSON Schema first, then the pydantic models.

jsonschema-rs answers "is it valid?" in milliseconds even for a 5,000-alias file (pure-Python
jsonschema takes seconds); when a file fails, router.config._explain turns jsonschema's errors,
on the failing aliases only, into Diagnostics with stable codes, did-you-means and hints.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from router.config.document import env_mistake
from router.config.load import Document
from router.config.model import RouteFileCfg
from router.config.schema import BASE_URLS, Path, dotted, fast_validator, is_secret
from router.diagnostics import Diagnostic, sort_key
from router.providers.kinds import KINDS


def check_structure(doc: Document) -> tuple[RouteFileCfg | None, list[Diagnostic]]:
    """Validate doc against the schema and the models; the config is None iff its shape is wrong.

    Also reports E050 (base_url is not an http(s) URL) and W105 (a literal api_key), which do not
    stop the config from being returned.
    """
    diags = [] if fast_validator().check(doc.data) else _explain_failure(doc)
    diags += _url_and_key_diagnostics(doc)
    diags += _non_finite_diagnostics(doc)
    diags += _unusable_value_diagnostics(doc)
    diags += _price_tier_diagnostics(doc)
    cfg: RouteFileCfg | None = None
    if not any(d.code in _STRUCTURAL for d in diags):
        try:
            cfg = RouteFileCfg.model_validate(doc.data)
        except ValidationError as e:
            diags += pydantic_diagnostics(doc, e)
    return cfg, sorted(diags, key=sort_key)


_STRUCTURAL = frozenset({"E010", "E011", "E012", "E013", "E014"})


def _explain_failure(doc: Document) -> list[Diagnostic]:
    from router.config import _explain  # only files with errors pay for it

    return _explain.schema_diagnostics(doc)


# -- after the schema ---------------------------------------------------------------------------


def pydantic_diagnostics(doc: Document, exc: ValidationError) -> list[Diagnostic]:
    """Models that reject what the schema accepted: a bug, but still reported where it is."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = _data_path(doc.data, err["loc"])
        detail = "invalid value" if is_secret(path) else err["msg"]
        out.append(Diagnostic.at(
            doc.mark(path), "error", "E014", doc.redact(f"{dotted(path)}: {detail}"),
            "the JSON Schema accepts this but the config model does not; please report it"))
    return out


def _data_path(data: Any, loc: Sequence[str | int]) -> Path:
    """A pydantic loc as a path into data, dropping union tags such as 'list[...]'."""
    path: list[str | int] = []
    for part in loc:
        if (isinstance(data, dict) and part in data) or (
                isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)):
            path.append(part)
            data = data[part]  # type: ignore[index]
    return tuple(path)


def _non_finite_diagnostics(doc: Document) -> list[Diagnostic]:
    """E015 for each NaN or infinity (YAML's .nan, .inf): as a timeout NaN disables it and
    infinity overflows the clock, so no number of the file may be one."""
    out: list[Diagnostic] = []
    stack: list[tuple[Path, Any]] = [((), doc.data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(Diagnostic.at(
                doc.mark(path), "error", "E015",
                f"{dotted(path)}: {value} is not a finite number",
                "write a number such as 30 or a duration such as 30s, or remove the key to "
                "use the default"))
    return out


_CONTROL = ("\r", "\n", "\0")


def _unusable_value_diagnostics(doc: Document) -> list[Diagnostic]:
    """Values every call would trip on: E052 for a key or header value with CR, LF or NUL (a
    CRLF .env file; no HTTP header can carry them), E053 for a state URL with a bad port,
    W110 for an SQLite state file whose directory does not exist here (validate may run on
    another machine than the router, so it warns)."""
    data = doc.data if isinstance(doc.data, dict) else {}
    out: list[Diagnostic] = []
    providers = data.get("providers")
    for name, p in (providers.items() if isinstance(providers, dict) else ()):
        if not isinstance(p, dict):
            continue
        headers = p.get("headers")
        values = [(("providers", name, "api_key"), p.get("api_key"))] + [
            (("providers", name, "headers", h), v)
            for h, v in (headers.items() if isinstance(headers, dict) else ())]
        for path, value in values:
            if isinstance(value, str) and any(c in value for c in _CONTROL):
                out.append(Diagnostic.at(
                    doc.mark(path), "error", "E052",
                    f"{dotted(path)} contains a line break or NUL character (its value is "
                    "not shown)", "a CRLF .env file leaves a \\r at the end: strip it "
                    "(dos2unix .env), then export the variable again"))
    state = data.get("state")
    if isinstance(state, dict):
        out += _state_diagnostics(doc, state)
    return out


def _price_tier_diagnostics(doc: Document) -> list[Diagnostic]:
    """E054 for two long-context price tiers of one model with the same ``above``."""
    data = doc.data if isinstance(doc.data, dict) else {}
    providers = data.get("providers")
    out: list[Diagnostic] = []
    for name, p in (providers.items() if isinstance(providers, dict) else ()):
        models = p.get("models") if isinstance(p, dict) else None
        for model, info in (models.items() if isinstance(models, dict) else ()):
            price = info.get("price") if isinstance(info, dict) else None
            tiers = price.get("tiers") if isinstance(price, dict) else None
            seen: set[int] = set()
            for i, tier in enumerate(tiers if isinstance(tiers, list) else ()):
                above = tier.get("above") if isinstance(tier, dict) else None
                if type(above) is not int:  # the schema's own error says what else is wrong
                    continue
                if above in seen:
                    path = ("providers", name, "models", model, "price", "tiers", i, "above")
                    out.append(Diagnostic.at(
                        doc.mark(path), "error", "E054",
                        f"{dotted(path)}: another tier of this price starts above {above} "
                        "tokens too", "give each tier its own `above`, or merge the two"))
                seen.add(above)
    return out


def _state_diagnostics(doc: Document, state: dict[str, Any]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    url, path = state.get("url"), state.get("path")
    if isinstance(url, str):
        try:
            urlsplit(url).port  # noqa: B018 - parsing the port is the check
        except ValueError:
            out.append(Diagnostic.at(
                doc.mark(("state", "url")), "error", "E053",
                "state.url: its port is not a number from 1 to 65535",
                "write it as redis://HOST:6379/0"))
    if state.get("kind") == "sqlite" and isinstance(path, str) and path != ":memory:":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):  # a fact of this machine: a warning, not an error
            out.append(Diagnostic.at(
                doc.mark(("state", "path")), "warning", "W110",
                doc.redact(f"state.path: the directory {folder!r} does not exist"),
                "create it (mkdir -p), or point path at a file in an existing directory"))
    return out


def _url_and_key_diagnostics(doc: Document) -> list[Diagnostic]:
    """E050 for a base_url that is no http(s) URL, W105 for an api_key written in the file."""
    providers = doc.data.get("providers") if isinstance(doc.data, dict) else None
    if not isinstance(providers, dict):
        return []
    refs: dict[Path, list[bool]] = {}
    for ref in doc.env_refs:
        refs.setdefault(ref.path, []).append(ref.present)
    out = []
    for name, p in providers.items():
        if not isinstance(p, dict):
            continue
        kind = p.get("kind") if isinstance(p.get("kind"), str) else None
        url, url_path = p.get("base_url"), ("providers", name, "base_url")
        if isinstance(url, str) and all(refs.get(url_path, [])) and not _is_http_url(url):
            example = BASE_URLS.get(kind or "", "http://127.0.0.1:8080")
            shown = "the value" if "@" in url else repr(url)  # user:password@host stays unseen
            out.append(Diagnostic.at(
                doc.mark(url_path), "error", "E050",
                doc.redact(f"{dotted(url_path)}: {shown} is not an http(s) URL with a host"),
                doc.redact(f"write the whole URL, e.g. base_url: {example}")))
        elif isinstance(url, str) and kind is not None and kind in KINDS and kind != "fake":
            out += _version_diagnostics(doc, url, url_path, kind)
        key_path = ("providers", name, "api_key")
        # Only files: Router.from_dict callers often pass a key they read themselves.
        key = p.get("api_key")
        if (key and key_path not in refs and doc.mark(key_path).line
                and not (isinstance(key, str) and env_mistake(key))):  # E008 says it better
            out.append(Diagnostic.at(
                doc.mark(key_path), "warning", "W105",
                f"{dotted(key_path)} is written in the file",
                f"secrets come from the environment: write api_key: ${{{_key_var(name, kind)}}}"))
    return out


_VERSION_SEGMENT = re.compile(r"v\d+(?:\.\d+)?(?:alpha|beta)?\d*")


def _version_diagnostics(doc: Document, url: str, url_path: Path, kind: str) -> list[Diagnostic]:
    """W109 for a base_url against its kind's convention: openai and openai-compatible
    include the API version (/v1), the others do not (their clients add it)."""
    try:
        segments = [s for s in urlsplit(url).path.split("/") if s]
    except ValueError:  # not a URL at all ("[" unclosed): E050's, or the environment's, to say
        return []
    has_version = any(_VERSION_SEGMENT.fullmatch(s) for s in segments)
    spec = KINDS[kind]
    shown = "the URL" if "@" in url else repr(url)  # user:password@host stays unseen
    if spec.base_url_has_version and not has_version:
        message = (f"{dotted(url_path)}: {shown} has no version segment; kind {kind} adds "
                   "only /chat/completions to it")
    elif not spec.base_url_has_version and segments and _VERSION_SEGMENT.fullmatch(segments[-1]):
        message = (f"{dotted(url_path)}: {shown} ends in /{segments[-1]}; kind {kind} adds the "
                   f"version itself, so requests would go to .../{segments[-1]}/{segments[-1]}/...")
    else:
        return []
    return [Diagnostic.at(doc.mark(url_path), "warning", "W109", doc.redact(message),
                          doc.redact(f"follow the kind's convention, e.g. base_url: "
                                     f"{spec.base_url_example}"))]


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _key_var(name: str, kind: str | None) -> str:
    spec = KINDS.get(kind or "")
    if spec is not None and spec.key_env:
        return spec.key_env
    return re.sub(r"[^A-Za-z0-9]+", "_", name).upper() + "_API_KEY"
