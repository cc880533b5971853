"""A diagnostic: one problem in a route file, with where it is and how to fix it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in a file: 1-based line and column (0 when unknown, e.g. a dict config)."""

    file: str
    line: int = 0
    col: int = 0


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem: file, line, column, severity, stable code, message and a hint to fix it."""

    file: str
    line: int
    col: int
    severity: Severity
    code: str
    message: str
    hint: str = ""

    @classmethod
    def at(cls, mark: Mark, severity: Severity, code: str, message: str,
           hint: str = "") -> Diagnostic:
        return cls(mark.file, mark.line, mark.col, severity, code, message, hint)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format_text(self) -> str:
        """Compiler style: ``routes.yaml:12:7: error[E012] message`` plus an indented hint."""
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        out = f"{where}: {self.severity}[{self.code}] {self.message}"
        if self.hint:
            out += f"\n    hint: {self.hint}"
        return out

    def format_github(self) -> str:
        """A GitHub Actions workflow annotation."""
        level = "error" if self.severity == "error" else "warning"
        msg = self.message + (f" (hint: {self.hint})" if self.hint else "")
        msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        line, col = max(self.line, 1), max(self.col, 1)
        file = _escape_property(self.file)
        props = f"file={file},line={line},col={col},title={self.code}"
        return f"::{level} {props}::{msg}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col,
                "severity": self.severity, "code": self.code,
                "message": self.message, "hint": self.hint}

    def to_json(self) -> str:
        return json.dumps(self.as_dict())


def _escape_property(value: str) -> str:
    # GitHub workflow command properties escape % CR LF : , (actions/toolkit command.ts).
    return (value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            .replace(":", "%3A").replace(",", "%2C"))


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.col, d.code)
