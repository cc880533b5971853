"""A loaded route file (Document: plain data, where each value sits, its ${ENV} uses and its
secrets) and the Builder every loader shares: positions, ${ENV} substitution, secrets,
diagnostics."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from router.diagnostics import Diagnostic, Mark, Severity
from router.obs.redact import redactor_for
from router.secret import SECRET_SETTINGS

Path = tuple[str | int, ...]

# Environment variables whose values are secrets wherever they are used.
_SECRET_VAR = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
# `$${` (a literal `${`), or `${` up to the first `}`; a missing `}` still matches, to report it.
_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
# Environment references other tools use, which are plain text here: `$NAME` without braces,
# LiteLLM's `os.environ/NAME`, `env.NAME` (a whole value only, so no ordinary text matches).
_ENV_MISTAKE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)$(?!\n)|os\.environ/([A-Za-z_][A-Za-z0-9_]*)"
                          r"$(?!\n)|env\.([A-Z_][A-Z0-9_]*)$(?!\n)")
_REF_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
SKELETON = (
    "a minimal route file:\n"
    "      version: 1\n"
    '      providers: {openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}}\n'
    "      models: {fast: [openai:gpt-4o-mini]}"
)


@dataclass(frozen=True, slots=True)
class EnvRef:
    """One `${VAR}` use: the value's path, the variable, and whether the environment had it."""

    path: Path
    var: str
    has_default: bool
    present: bool
    mark: Mark


@dataclass(frozen=True)
class Document:
    """A loaded route file: plain data plus the position of every value and key in it."""

    file: str
    data: Any
    marks: Mapping[Path, Mark]
    key_marks: Mapping[Path, Mark]
    env_refs: tuple[EnvRef, ...]
    secrets: frozenset[str]

    def mark(self, path: Sequence[str | int], *, key: bool = False) -> Mark:
        """The mark of path (of its key if key=True), else of its longest marked prefix."""
        p = tuple(path)
        if key and p in self.key_marks:
            return self.key_marks[p]
        while p not in self.marks:
            if not p:
                return Mark(self.file)
            p = p[:-1]
        return self.marks[p]

    def redact(self, text: str) -> str:
        """Text with every secret of this file replaced by `***` (router.obs.redact's rules:
        whole values only, a short one only as a whole token)."""
        return redactor_for(self.secrets)(text)


class MarkTable(Mapping[Path, Mark]):
    """Positions turned into Marks when asked for (most never are)."""

    __slots__ = ("_file", "_pos")

    def __init__(self, file: str, positions: dict[Path, int]) -> None:
        self._file, self._pos = file, positions

    def __getitem__(self, path: Path) -> Mark:
        pos = self._pos[path]
        return Mark(self._file, pos >> 32, pos & 0xFFFFFFFF)

    def __contains__(self, path: object) -> bool:
        return path in self._pos

    def __iter__(self) -> Iterator[Path]:
        return iter(self._pos)

    def __len__(self) -> int:
        return len(self._pos)

    def __repr__(self) -> str:
        return f"<{len(self)} marks in {self._file}>"


class Fatal(Exception):
    """The text cannot become data; carries the diagnostic that says why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def holds_secret(path: Path) -> bool:
    """A string here is a credential: under api_key, token, password or secret, or a header."""
    return bool(path) and (path[-1] in SECRET_SETTINGS or (len(path) > 1 and path[-2] == "headers"))


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out or "<root>"


def env_mistake(value: str) -> str | None:
    """The variable a value like ``$NAME``, ``os.environ/NAME`` or ``env.NAME`` meant (E008)."""
    mistake = _ENV_MISTAKE.match(value)
    return next(g for g in mistake.groups() if g) if mistake else None


class Builder:
    """What every loader records: positions, env references, secrets and diagnostics."""

    def __init__(self, file: str, env: Mapping[str, str] | None) -> None:
        self.file = file
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.marks: dict[Path, int] = {}
        self.key_marks: dict[Path, int] = {}
        self.env_refs: list[EnvRef] = []
        self.secrets: set[str] = set()
        self.diagnostics: list[Diagnostic] = []

    def mark(self, pos: int) -> Mark:
        return Mark(self.file, pos >> 32, pos & 0xFFFFFFFF)

    def report(self, pos: int, code: str, message: str, hint: str,
               severity: Severity = "error") -> None:
        self.diagnostics.append(Diagnostic.at(self.mark(pos), severity, code, message, hint))

    def fatal(self, pos: int, code: str, message: str, hint: str) -> NoReturn:
        raise Fatal(Diagnostic.at(self.mark(pos), "error", code, message, hint))

    def document(self, data: Any) -> Document:
        return Document(self.file, data, MarkTable(self.file, self.marks),
                        MarkTable(self.file, self.key_marks), tuple(self.env_refs),
                        frozenset(self.secrets))

    def string(self, value: str, path: Path, pos: int) -> str:
        """A string value, interpolated, and kept as a secret if its key says it is one."""
        if value[:1] in "$oe" and (var := env_mistake(value)):
            self.report(pos, "E008", f"{dotted(path)}: {value!r} is not read from the "
                        "environment here", f"write ${{{var}}} to use the variable {var}")
        if "$" in value:
            value = _REF.sub(lambda m: self._substitute(m, path, pos), value)
        if value and holds_secret(path):
            self.secrets.add(value)
        return value

    def note_secrets(self, path: Path, value: Any) -> None:
        """Remember the secrets in a value that an alias or a merge puts at path."""
        if isinstance(value, str) and value and holds_secret(path):
            self.secrets.add(value)
        elif path and path[-1] == "headers" and isinstance(value, dict):
            self.secrets.update(v for v in value.values() if isinstance(v, str) and v)

    def _substitute(self, match: re.Match[str], path: Path, pos: int) -> str:
        whole, body, closed = match.group(0, 1, 2)
        if body is None:
            return "${"
        ref = _REF_BODY.fullmatch(body) if closed else None
        if ref is None or "${" in (ref.group(2) or ""):
            problem = "is not ${NAME} or ${NAME:-default}" if closed else "has no closing '}'"
            self.report(pos, "E007", f"environment reference {whole!r} {problem}",
                        "names match [A-Za-z_][A-Za-z0-9_]*; write '$${' for a literal '${'")
            return str(whole)
        var, default = ref.group(1, 2)
        value = self.env.get(var)
        self.env_refs.append(EnvRef(path, var, default is not None, value is not None,
                                    self.mark(pos)))
        if value:
            if holds_secret(path) or _SECRET_VAR.search(var):
                self.secrets.add(value)
            return value
        if default is not None:
            if not default and value is None and holds_secret(path):
                self.report(pos, "W108", f"{dotted(path)} is empty: {var} is not set and the "
                            "default after :- is empty", f"export {var}=..., or remove the "
                            "provider if no route uses it", "warning")
            return str(default)
        if value is None:
            self.report(pos, "W101", f"environment variable {var} is not set (used in "
                        f"{dotted(path)})", f"export {var}=... or use ${{{var}:-default}}",
                        "warning")
        return ""

    def plain(self, value: Any, path: Path) -> Any:
        """A deep copy of plain Python data, interpolated like a file (for from_dict)."""
        self.marks[path] = 0
        if isinstance(value, str):
            return self.string(value, path, 0)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    self.report(0, "E006", f"keys must be strings: {key!r} in {dotted(path)}",
                                f"use the string {str(key)!r} as the key")
                    key = str(key)
                self.key_marks[(*path, key)] = 0
                out[key] = self.plain(item, (*path, key))
            return out
        if isinstance(value, list | tuple):
            return [self.plain(item, (*path, i)) for i, item in enumerate(value)]
        return value


