"""The whole pipeline a route file goes through: load -> check structure -> compile (meaning).

Every stage reports all its problems; later stages run as far as the earlier ones allow, so one
run shows as much as can be known.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.config.check import check_structure
from router.config.load import Document, from_dict, load_file, load_text
from router.config.model import RouteFileCfg
from router.diagnostics import Diagnostic, sort_key
from router.plan.routes import Plan


@dataclass
class ValidationResult:
    """What validating produced: the diagnostics, and the Plan when the file compiles."""

    file: str
    document: Document | None
    config: RouteFileCfg | None
    plan: Plan | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    def missing_key_errors(self, providers: set[str]) -> list[Diagnostic]:
        """Errors for providers in ``providers`` whose environment variables are missing."""
        out: list[Diagnostic] = []
        if self.plan is None or self.document is None:
            return out
        for name in sorted(providers):
            spec = self.plan.providers.get(name)
            if spec is None or not spec.missing_env:
                continue
            mark = self.document.mark(("providers", name), key=True)
            vars_ = ", ".join(spec.missing_env)
            out.append(Diagnostic.at(
                mark, "error", "E060",
                f"provider {name!r} is used by a route but {vars_} is not set",
                f"export {spec.missing_env[0]}=... before starting, or remove {name!r} "
                "from the chains that use it"))
        return out


def _finish(doc: Document | None, diags: list[Diagnostic],
            env: Mapping[str, str] | None, file: str) -> ValidationResult:
    if doc is None:
        return ValidationResult(file, None, None, None, sorted(diags, key=sort_key))
    cfg, structural = check_structure(doc)
    diags = diags + structural
    plan = None
    from router.config.compile import compile_plan

    if cfg is not None and not any(d.code == "E015" for d in diags):
        usable = not any(d.is_error for d in diags)
        compiled, meaning = compile_plan(cfg, doc, env)
        plan = compiled if usable else None
        diags += meaning
    else:
        # Every problem in one run: the meaning of the well-formed parts is checked too; no
        # Plan comes of it.
        from router.config._salvage import salvage

        salvaged, dropped = salvage(doc.data)
        if salvaged is not None:
            diags += compile_plan(salvaged, doc, env, dropped=dropped)[1]
    unique = list(dict.fromkeys(diags))
    return ValidationResult(doc.file, doc, cfg, plan, sorted(unique, key=sort_key))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # Loading and compiling allocate ~100k long-lived objects and free few: the cyclic
    # collector would rescan them again and again (20-30% of a large file's time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def validate_file(path: Path, *, env: Mapping[str, str] | None = None) -> ValidationResult:
    """Validate the route file at ``path``."""
    with _no_gc():
        doc, diags = load_file(path, env=env)
        return _finish(doc, diags, env, str(path))


def validate_text(text: str | bytes, filename: str = "<string>", *,
                  env: Mapping[str, str] | None = None) -> ValidationResult:
    with _no_gc():
        doc, diags = load_text(text, filename, env=env)
        return _finish(doc, diags, env, filename)


def validate_dict(data: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                  filename: str = "<dict>") -> ValidationResult:
    with _no_gc():
        doc, diags = from_dict(data, filename, env=env)
        return _finish(doc, diags, env, filename)
