"""Load a route file into a Document: plain data, where each value sits, and its ${ENV} uses.

The walk runs over parser events, not composed nodes: libyaml's composer calls back into Python
for every scalar, which alone costs more than the load budget on large files, and only events
show where an alias is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn, Protocol

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from router.diagnostics import Diagnostic, Mark, Severity

Path = tuple[str | int, ...]
# A `<<` source: the mapping, then the positions of its entries' values and keys.
_Source = tuple[dict[str, Any], dict[Path, int], dict[Path, int]]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE, _SEQ, _MAP = _TAG + "merge", _TAG + "seq", _TAG + "map"
_SECRET_KEYS = frozenset({"api_key", "token", "password", "secret"})
# Environment variables whose values are secrets wherever they are used.
_SECRET_VAR = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
# `$${` (a literal `${`), or `${` up to the first `}`; a missing `}` still matches, to report it.
_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_REF_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
# What PyYAML's reader accepts (yaml/reader.py NON_PRINTABLE), checked up front so the error
# names a byte offset whichever parser runs.
_NON_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SKELETON = (
    "a minimal route file:\n"
    "      version: 1\n"
    '      providers: {openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}}\n'
    "      models: {fast: [openai:gpt-4o-mini]}"
)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false, any case: YAML 1.1 reads `on:` as True.

    Timestamps stay strings (data is JSON-like), and `=` is a string, not SafeLoader's
    unconstructible !!value.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(t, rx) for t, rx in resolvers if t not in (_BOOL, _TAG + "timestamp", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF"))
# Only first characters that some resolver claims: any other plain scalar is a string.
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: resolvers for first, resolvers in _Loader.yaml_implicit_resolvers.items() if resolvers}
_CONSTRUCTOR = SafeConstructor()
_CONSTRUCT = {tag: getattr(SafeConstructor, "construct_yaml_" + tag.removeprefix(_TAG))
              for tag in (_INT, _FLOAT, _BOOL, _NULL)}


class _EventSource(Protocol):
    def get_event(self) -> Any: ...
    def dispose(self) -> None: ...


# Events carry no resolved tags, so _tag() applies _Loader's table whichever parser produced them.
_FAST: Callable[[str], _EventSource] | None = getattr(yaml, "CSafeLoader", None)


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
        """Text with every secret replaced by `***`."""
        return text if self._secret_pattern is None else self._secret_pattern.sub("***", text)

    @cached_property
    def _secret_pattern(self) -> re.Pattern[str] | None:
        # Longest first, so a secret that contains another is hidden whole.
        # Values under 4 characters cannot be hidden without mangling every word around them.
        ordered = sorted((v for v in self.secrets if len(v) >= 4), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _pos(mark: Any) -> int:
    """A parser mark as one int, 1-based `line << 32 | column`; 0 is "no position".

    Keeping ~100k parser Mark objects alive makes the garbage collector rescan them all
    through the load; ints are not tracked.
    """
    return int((mark.line + 1) << 32 | (mark.column + 1))


class _MarkTable(Mapping[Path, Mark]):
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


class _Fatal(Exception):
    """The text cannot become data; carries the diagnostic that says why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _holds_secret(path: Path) -> bool:
    """A string here is a credential: under api_key, token, password or secret, or a header."""
    return bool(path) and (path[-1] in _SECRET_KEYS or (len(path) > 1 and path[-2] == "headers"))


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out or "<root>"


class _Builder:
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
        raise _Fatal(Diagnostic.at(self.mark(pos), "error", code, message, hint))

    def document(self, data: Any) -> Document:
        return Document(self.file, data, _MarkTable(self.file, self.marks),
                        _MarkTable(self.file, self.key_marks), tuple(self.env_refs),
                        frozenset(self.secrets))

    def string(self, value: str, path: Path, pos: int) -> str:
        """A string value, interpolated, and kept as a secret if its key says it is one."""
        if "$" in value:
            value = _REF.sub(lambda m: self._substitute(m, path, pos), value)
        if value and _holds_secret(path):
            self.secrets.add(value)
        return value

    def note_secrets(self, path: Path, value: Any) -> None:
        """Remember the secrets in a value that an alias or a merge puts at path."""
        if isinstance(value, str) and value and _holds_secret(path):
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
            if _holds_secret(path) or _SECRET_VAR.search(var):
                self.secrets.add(value)
            return value
        if default is not None:
            return str(default)
        if value is None:
            self.report(pos, "W101", f"environment variable {var} is not set (used in "
                        f"{_dotted(path)})", f"export {var}=... or use ${{{var}:-default}}",
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
                    self.report(0, "E006", f"keys must be strings: {key!r} in {_dotted(path)}",
                                f"use the string {str(key)!r} as the key")
                    key = str(key)
                self.key_marks[(*path, key)] = 0
                out[key] = self.plain(item, (*path, key))
            return out
        if isinstance(value, list | tuple):
            return [self.plain(item, (*path, i)) for i, item in enumerate(value)]
        return value


def _tag(event: Any) -> str:
    """The tag SafeLoader's composer would give this scalar, with _Loader's resolvers."""
    tag: str | None = event.tag
    if tag is not None and tag != "!":
        return tag
    value: str = event.value
    if event.implicit[0]:
        for candidate, regexp in _IMPLICIT.get(value[:1], ()):
            if regexp.match(value):
                return candidate
    return _STR


class _YamlBuilder(_Builder):
    """Turns one stream of parser events into data, catching what PyYAML lets pass."""

    def __init__(self, file: str, env: Mapping[str, str] | None, source: _EventSource) -> None:
        super().__init__(file, env)
        self.next = source.get_event
        self.anchors: dict[str, Any] = {}

    def stream(self) -> Any:
        self.next()  # StreamStartEvent
        if type(self.next()) is StreamEndEvent:
            self.fatal(0, "E005", "the route file is empty", _SKELETON)
        data = self.node(self.next(), ())
        self.next()  # DocumentEndEvent
        if type(extra := self.next()) is not StreamEndEvent:
            self.fatal(_pos(extra.start_mark), "E003", "a second YAML document starts here; a "
                       "route file is one document", "remove this '---' and what follows it")
        return data

    def node(self, event: Any, path: Path) -> Any:
        start = event.start_mark  # _pos() inlined: this runs for every value in the file
        self.marks[path] = pos = (start.line + 1) << 32 | (start.column + 1)
        kind = type(event)
        if kind is ScalarEvent:
            value = self.scalar(event, path, pos)
        elif kind is MappingStartEvent:
            value = self.mapping(event, path)
        elif kind is SequenceStartEvent:
            value = self.sequence(event, path)
        else:  # AliasEvent: the parser emits nothing else where a node may start
            value = self.alias(event)
            self.note_secrets(path, value)
            return value
        if event.anchor is not None:
            self.anchors[event.anchor] = value
        return value

    def alias(self, event: Any) -> Any:
        if event.anchor not in self.anchors:
            self.fatal(_pos(event.start_mark), "E003", f"alias *{event.anchor} has no anchor "
                       "before it", f"define &{event.anchor} on a value above this one")
        return self.anchors[event.anchor]

    def scalar(self, event: Any, path: Path, pos: int) -> Any:
        if event.tag is None and not (event.implicit[0] and event.value[:1] in _IMPLICIT):
            return self.string(event.value, path, pos)  # the common case, without _tag()
        tag = _tag(event)
        if tag == _STR:
            return self.string(event.value, path, pos)
        construct = _CONSTRUCT.get(tag)
        problem = f"unsupported tag {tag.replace(_TAG, '!!')}"
        if construct is not None:
            try:
                return construct(_CONSTRUCTOR, yaml.ScalarNode(tag, event.value))
            except (ValueError, TypeError, KeyError, yaml.YAMLError):
                problem = f"this value is not a valid {tag.removeprefix(_TAG)}"
        self.report(pos, "E008", problem, "remove the tag; quote the value to keep a string")
        return self.string(event.value, path, pos)

    def check_tag(self, event: Any, expected: str) -> None:
        if event.tag not in (None, "!", expected):
            tag = event.tag.replace(_TAG, "!!")
            self.report(_pos(event.start_mark), "E008", f"unsupported tag {tag}",
                        "route files use plain mappings, lists and scalars; remove the tag")

    def sequence(self, start: Any, path: Path) -> list[Any]:
        self.check_tag(start, _SEQ)
        out: list[Any] = []
        while type(event := self.next()) is not SequenceEndEvent:
            out.append(self.node(event, (*path, len(out))))
        return out

    def mapping(self, start: Any, path: Path) -> dict[str, Any]:
        self.check_tag(start, _MAP)
        out: dict[str, Any] = {}
        sources: list[_Source] = []
        while type(event := self.next()) is not MappingEndEvent:
            if type(event) is ScalarEvent and event.value == "<<" and _tag(event) == _MERGE:
                sources.extend(self.merge_sources(path))
            elif (key := self.key(event)) is None:
                self.skip(self.next())
            elif key in out:
                line = self.key_marks[(*path, key)] >> 32
                self.report(_pos(event.start_mark), "E004", f"duplicate key {key!r}, first on "
                            f"line {line}", "remove one of them; YAML would silently keep the last")
                self.detached(self.next(), (*path, key))
            else:
                key_path, start = (*path, key), event.start_mark
                self.key_marks[key_path] = (start.line + 1) << 32 | (start.column + 1)
                out[key] = self.node(self.next(), key_path)
        return self.merge(out, sources, path) if sources else out

    def key(self, event: Any) -> str | None:
        """The key's text; None (after an E006) when the entry has to be dropped."""
        kind = type(event)
        if kind is ScalarEvent:
            text: str = event.value
            if (event.tag is not None or text[:1] in _IMPLICIT) and (tag := _tag(event)) != _STR:
                self.report(_pos(event.start_mark), "E006", f"keys must be strings: {text!r} is "
                            f"read as {tag.replace(_TAG, '!!')}", f'quote it: "{text}":')
            if event.anchor is not None:
                self.anchors[event.anchor] = text
            return text
        if kind is AliasEvent and isinstance(value := self.alias(event), str):
            return value
        self.report(_pos(event.start_mark), "E006", "keys must be strings, not lists or "
                    "mappings", "use a plain string key")
        if kind is not AliasEvent:
            self.skip(event)
        return None

    def skip(self, event: Any) -> None:
        depth = 0
        while True:
            kind = type(event)
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1
            if depth == 0:
                return
            event = self.next()

    def detached(self, event: Any, path: Path) -> _Source:
        """Build a value whose positions must not land in the document (dupes, `<<` sources)."""
        saved = self.marks, self.key_marks
        self.marks, self.key_marks = {}, {}
        try:
            return self.node(event, path), self.marks, self.key_marks
        finally:
            self.marks, self.key_marks = saved

    def merge_sources(self, path: Path) -> list[_Source]:
        """The mappings a `<<` value names: one, or a list of them."""
        event, sources = self.next(), []
        items = iter(self.next, None) if type(event) is SequenceStartEvent else iter((event,))
        for item in items:
            if type(item) is SequenceEndEvent:
                break
            value, marks, key_marks = self.detached(item, path)
            if not isinstance(value, dict):
                self.report(_pos(item.start_mark), "E008", "`<<` merges a mapping or a list of "
                            "mappings", "point it at an anchored mapping: `<<: *defaults`")
            elif type(item) is AliasEvent:  # its entries are marked where the alias is used
                at = dict.fromkeys([(*path, k) for k in value], _pos(item.start_mark))
                sources.append((value, at, at))
            else:
                sources.append((value, marks, key_marks))
        return sources

    def merge(self, out: dict[str, Any], sources: list[_Source], path: Path) -> dict[str, Any]:
        """YAML merge: explicit keys win, then earlier sources over later ones."""
        merged: dict[str, Any] = {}
        depth = len(path)
        for value, marks, key_marks in sources:
            taken = [k for k in value if k not in out and k not in merged]  # keeps the order
            for k in taken:
                merged[k] = value[k]
                self.note_secrets((*path, k), value[k])
            chosen = set(taken)
            for table, own in ((marks, self.marks), (key_marks, self.key_marks)):
                own.update((p, m) for p, m in table.items()
                           if len(p) > depth and p[depth] in chosen)
        merged.update(out)
        return merged


def _bad_bytes(filename: str, data: bytes, at: int, what: str, hint: str) -> _Fatal:
    """E002 for the byte at offset `at` of data (the file after any BOM)."""
    line, col = data.count(b"\n", 0, at) + 1, at - data.rfind(b"\n", 0, at)
    return _Fatal(Diagnostic(filename, line, col, "error", "E002",
                             f"{what} at byte offset {at} (line {line})", hint))


def _decode(text: str | bytes, filename: str) -> str:
    """The text to parse, BOM removed; E002 unless it is printable UTF-8 text."""
    if isinstance(text, bytes):
        data = text.removeprefix(b"\xef\xbb\xbf")
        if (nul := data.find(b"\0")) >= 0:
            raise _bad_bytes(filename, data, nul, "binary data (a NUL byte)",
                             "a route file is UTF-8 text: is this the right file?")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _bad_bytes(filename, data, e.start, f"not UTF-8: byte 0x{data[e.start]:02x}",
                             "save the file as UTF-8") from e
    text = text.removeprefix("\ufeff")
    if (bad := _NON_PRINTABLE.search(text)) is not None:
        char, data = ord(bad.group()), text[: bad.start()].encode()
        what = "binary data (a NUL byte)" if char == 0 else f"non-printable character U+{char:04X}"
        raise _bad_bytes(filename, data, len(data), what,
                         'delete it, or write it as an escape in a double-quoted string: "\\x1b"')
    return text


def _syntax_error(e: yaml.MarkedYAMLError, text: str, filename: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    message = e.problem or "invalid YAML"
    if e.context:
        where = e.context_mark
        at = f" at line {where.line + 1}" if where and mark and where.line != mark.line else ""
        message += f" ({e.context}{at})"
    lines = text.split("\n")
    line = lines[mark.line] if mark and mark.line < len(lines) else ""
    tabs = "\t" in line[: len(line) - len(line.lstrip(" \t"))] or "'\\t'" in message
    hint = ("indent with spaces: YAML does not allow tabs in indentation" if tabs
            else "check the indentation, colons and quotes here and on the line above")
    line_no, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return Diagnostic(filename, line_no, col, "error", "E003", f"YAML syntax: {message}", hint)


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _build(text: str, filename: str, env: Mapping[str, str] | None,
           parser: Callable[[str], _EventSource]) -> tuple[Document, list[Diagnostic]]:
    source = parser(text)
    try:
        builder = _YamlBuilder(filename, env, source)
        data = builder.stream()
    finally:
        source.dispose()
    if data is None:
        builder.fatal(0, "E005", "the route file is empty", _SKELETON)
    if not isinstance(data, dict):
        kind = _KINDS.get(type(data), type(data).__name__)
        builder.fatal(builder.marks[()], "E005",
                      f"the top level of a route file must be a mapping, not {kind}", _SKELETON)
    return builder.document(data), builder.diagnostics


def _parse(text: str, filename: str,
           env: Mapping[str, str] | None) -> tuple[Document, list[Diagnostic]]:
    if _FAST is not None:
        # On any error, parse again with PyYAML: libyaml's messages are terse ("did not find
        # expected key") where PyYAML's say what it expected.
        try:
            return _build(text, filename, env, _FAST)
        except (yaml.YAMLError, RecursionError):
            pass
    try:
        return _build(text, filename, env, _Loader)
    except yaml.MarkedYAMLError as e:
        raise _Fatal(_syntax_error(e, text, filename)) from e
    except (yaml.YAMLError, RecursionError) as e:
        raise _Fatal(Diagnostic(filename, 0, 0, "error", "E003", "the file cannot be parsed "
                                "as YAML (nested too deeply?)", "is it a route file?")) from e


def load_text(text: str | bytes, filename: str = "<string>",
              env: Mapping[str, str] | None = None) -> tuple[Document | None, list[Diagnostic]]:
    """Load route-file text; the Document is None only when the text cannot become data."""
    try:
        return _parse(_decode(text, filename), filename, env)
    except _Fatal as e:
        return None, [e.diagnostic]


def load_file(path: str | os.PathLike[str],
              env: Mapping[str, str] | None = None) -> tuple[Document | None, list[Diagnostic]]:
    """Load a route file from disk; E001 when it cannot be read."""
    filename = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        problem = ("file not found" if isinstance(e, FileNotFoundError)
                   else e.strerror or type(e).__name__)
        return None, [Diagnostic(filename, 0, 0, "error", "E001",
                                 f"cannot read the route file: {problem}",
                                 "check the path, and that the file is readable")]
    return load_text(data, filename, env)


def from_dict(data: Mapping[str, Any], filename: str = "<dict>",
              env: Mapping[str, str] | None = None) -> tuple[Document, list[Diagnostic]]:
    """A Document from plain data: deep-copied and interpolated like a file, marks at line 0."""
    builder = _Builder(filename, env)
    return builder.document(builder.plain(data, ())), builder.diagnostics
