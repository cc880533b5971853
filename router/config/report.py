"""Diagnostics rendered for people (text), programs (json) and GitHub Actions (annotations)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from router.diagnostics import Diagnostic, sort_key

Format = Literal["text", "json", "github"]


def format_diagnostics(diags: Sequence[Diagnostic], fmt: Format) -> str:
    """All diagnostics in one format, sorted by file, line and column.

    text ends with a summary line; json is one object with counts; github is one workflow
    annotation per diagnostic (and nothing when there are none).
    """
    ordered = sorted(diags, key=sort_key)
    errors = sum(1 for d in ordered if d.is_error)
    warnings = len(ordered) - errors
    if fmt == "text":
        return "\n".join([*(d.format_text() for d in ordered), _summary(errors, warnings)])
    if fmt == "json":
        return json.dumps({"ok": errors == 0, "errors": errors, "warnings": warnings,
                           "diagnostics": [d.as_dict() for d in ordered]}, indent=2)
    if fmt == "github":
        return "\n".join(d.format_github() for d in ordered)
    raise ValueError(f"unknown format {fmt!r}: use text, json or github")


def exit_code(diags: Sequence[Diagnostic], strict: bool) -> int:
    """0 when clean; 1 on any error, or on any warning when strict."""
    return int(any(d.is_error or strict for d in diags))


def _summary(errors: int, warnings: int) -> str:
    if not errors and not warnings:
        return "ok: no problems"
    return f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
