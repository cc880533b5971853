"""Load a route file into a Document: plain data, the line/column of every value, env references.

The walk runs over parser *events* rather than composed nodes: libyaml composes by calling back
into Python for every scalar, which costs more than the whole load budget on large files, and
events are also the only place an alias's use site is visible.
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

from router.config.diagnostics import Diagnostic, Mark

Path = tuple[str | int, ...]
# A `<<` source: the mapping, and the value and key marks of its entries.
_Source = tuple[dict[str, Any], dict[Path, Any], dict[Path, Any]]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE, _SEQ, _MAP = _TAG + "merge", _TAG + "seq", _TAG + "map"
_SECRET_KEYS = frozenset({"api_key", "token", "password", "secret"})
# `${NAME}`, `${NAME:-default}`, or the `$${` escape; a missing `}` is caught so it can be reported.
_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_REF_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
# The characters PyYAML's reader accepts (yaml/reader.py NON_PRINTABLE), checked up front so the
# error can name a byte offset whichever parser runs.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_EMPTY_HINT = (
    "a minimal route file:\n"
    "      version: 1\n"
    '      providers: {openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}}\n'
    "      models: {fast: [openai:gpt-4o-mini]}"
)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false: YAML 1.1 reads the route key `on:` as True.

    Timestamps stay strings (data must be JSON-like) and `=` is not the unconstructible !!value.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TAG + "timestamp", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF"))
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = _Loader.yaml_implicit_resolvers
_CONSTRUCT = {
    _INT: SafeConstructor.construct_yaml_int,
    _FLOAT: SafeConstructor.construct_yaml_float,
    _BOOL: SafeConstructor.construct_yaml_bool,
    _NULL: SafeConstructor.construct_yaml_null,
}
_CONSTRUCTOR = SafeConstructor()


class _EventSource(Protocol):
    def get_event(self) -> Any: ...
    def dispose(self) -> None: ...


try:
    from yaml import CSafeLoader

    class _CLoader(CSafeLoader):
        """libyaml-backed twin of _Loader: same events and marks, several times faster."""

    _CLoader.yaml_implicit_resolvers = _IMPLICIT
    _FAST: Callable[[str], _EventSource] | None = _CLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _FAST = None


@dataclass(frozen=True, slots=True)
class EnvRef:
    """One `${VAR}` use: where, which variable, and whether the environment had it."""

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
        """The mark of path (its key's if key=True), else of its longest marked prefix."""
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
        # Longest first, so a secret containing another is hidden whole.
        ordered = sorted(self.secrets, key=len, reverse=True)
        return re.compile("|".join(map(re.escape, ordered))) if ordered else None


class _MarkTable(Mapping[Path, Mark]):
    """Parser positions turned into Marks on access: making ~100k Marks up front costs more
    than parsing."""

    __slots__ = ("_file", "_raw")

    def __init__(self, file: str, raw: dict[Path, Any]) -> None:
        self._file, self._raw = file, raw

    def __getitem__(self, path: Path) -> Mark:
        raw = self._raw[path]
        return Mark(self._file) if raw is None else Mark(self._file, raw.line + 1, raw.column + 1)

    def __contains__(self, path: object) -> bool:
        return path in self._raw

    def __iter__(self) -> Iterator[Path]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class _MergeKey:
    """What key() returns for `<<`, so no key read from the file can be mistaken for it."""


_MERGE_KEY = _MergeKey()


class _Fatal(Exception):
    """The text cannot become data; carries the one diagnostic that says why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out or "<root>"


class _Builder:
    """Collects what every loader records: marks, env references, secrets, diagnostics."""

    def __init__(self, file: str, env: Mapping[str, str] | None) -> None:
        self.file = file
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.marks: dict[Path, Any] = {}  # a parser mark, or None for "no position"
        self.key_marks: dict[Path, Any] = {}
        self.env_refs: list[EnvRef] = []
        self.secrets: set[str] = set()
        self.diagnostics: list[Diagnostic] = []

    def to_mark(self, raw: Any) -> Mark:
        return Mark(self.file) if raw is None else Mark(self.file, raw.line + 1, raw.column + 1)

    def error(self, raw: Any, code: str, message: str, hint: str) -> None:
        self.diagnostics.append(Diagnostic.at(self.to_mark(raw), "error", code, message, hint))

    def document(self, data: Any) -> Document:
        return Document(self.file, data, _MarkTable(self.file, self.marks),
                        _MarkTable(self.file, self.key_marks), tuple(self.env_refs),
                        frozenset(self.secrets))

    def string(self, value: str, path: Path, raw: Any) -> str:
        """A string value after interpolation, remembered as a secret if its key says so."""
        if "$" in value:
            value = _REF.sub(lambda m: self._substitute(m, path, raw), value)
        self.note_secrets(path, value)
        return value

    def note_secrets(self, path: Path, value: Any) -> None:
        if not path or not value:
            return
        last = path[-1]
        if isinstance(value, str):
            if isinstance(last, str) and (last.lower() in _SECRET_KEYS
                                          or (len(path) > 1 and path[-2] == "headers")):
                self.secrets.add(value)
        elif last == "headers" and isinstance(value, dict):
            self.secrets.update(v for v in value.values() if isinstance(v, str) and v)

    def _substitute(self, match: re.Match[str], path: Path, raw: Any) -> str:
        whole, body = match.group(0), match.group(1)
        if body is None:
            return "${"
        ref = _REF_BODY.fullmatch(body) if match.group(2) else None
        if ref is None or "${" in (ref.group(2) or ""):
            problem = "has no closing '}'" if not match.group(2) else "is not ${NAME} or ${NAME:-default}"
            self.error(raw, "E007", f"environment reference {whole!r} {problem}",
                       "names match [A-Za-z_][A-Za-z0-9_]*; write '$${' for a literal '${'")
            return whole
        var, default = ref.group(1), ref.group(2)
        value = self.env.get(var)
        self.env_refs.append(EnvRef(path, var, default is not None, value is not None,
                                    self.to_mark(raw)))
        if value:
            self.secrets.add(value)
            return value
        if default is not None:
            return default
        if value is None:
            self.diagnostics.append(Diagnostic.at(
                self.to_mark(raw), "warning", "W101",
                f"environment variable {var} is not set (used in {_dotted(path)})",
                f"export {var}=... or use ${{{var}:-default}}"))
        return ""

    def plain(self, value: Any, path: Path) -> Any:
        """A deep copy of plain Python data, interpolated like a file (from_dict)."""
        self.marks[path] = None
        if isinstance(value, str):
            return self.string(value, path, None)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    self.error(None, "E006", f"keys must be strings: {key!r} in {_dotted(path)}",
                               f"use the string {str(key)!r} as the key")
                    key = str(key)
                self.key_marks[(*path, key)] = None
                out[key] = self.plain(item, (*path, key))
            return out
        if isinstance(value, list | tuple):
            return [self.plain(item, (*path, i)) for i, item in enumerate(value)]
        return value


class _YamlBuilder(_Builder):
    """Turns one stream of parser events into data, checking what PyYAML lets pass."""

    def __init__(self, file: str, env: Mapping[str, str] | None, source: _EventSource) -> None:
        super().__init__(file, env)
        self.next = source.get_event
        self.anchors: dict[str, Any] = {}

    def fatal(self, raw: Any, code: str, message: str, hint: str) -> NoReturn:
        raise _Fatal(Diagnostic.at(self.to_mark(raw), "error", code, message, hint))

    def stream(self) -> Any:
        self.next()  # StreamStartEvent
        start = self.next()
        if type(start) is StreamEndEvent:
            self.fatal(None, "E005", "the route file is empty", _EMPTY_HINT)
        data = self.node(self.next(), ())
        self.next()  # DocumentEndEvent
        extra = self.next()
        if type(extra) is not StreamEndEvent:
            self.fatal(extra.start_mark, "E003", "a route file holds one YAML document; "
                       "found a second one", "remove the extra '---' and what follows it")
        return data

    def node(self, event: Any, path: Path) -> Any:
        self.marks[path] = event.start_mark
        kind = type(event)
        if kind is ScalarEvent:
            value = self.scalar(event, path)
        elif kind is MappingStartEvent:
            value = self.mapping(event, path)
        elif kind is SequenceStartEvent:
            value = self.sequence(event, path)
        elif kind is AliasEvent:
            value = self.alias(event)
            self.note_secrets(path, value)
            return value
        else:
            self.fatal(event.start_mark, "E003", f"unexpected {kind.__name__}", "")
        if event.anchor is not None:
            self.anchors[event.anchor] = value
        return value

    def alias(self, event: Any) -> Any:
        try:
            return self.anchors[event.anchor]
        except KeyError:
            self.fatal(event.start_mark, "E003", f"alias *{event.anchor} has no anchor before it",
                       f"define &{event.anchor} on an earlier value")

    def tag(self, event: Any) -> str:
        tag: str | None = event.tag
        if tag is not None and tag != "!":
            return tag
        if not event.implicit[0]:
            return _STR
        value: str = event.value
        for candidate, regexp in _IMPLICIT.get(value[:1], ()):
            if regexp.match(value):
                return candidate
        return _STR

    def scalar(self, event: Any, path: Path) -> Any:
        tag = self.tag(event)
        if tag == _STR:
            return self.string(event.value, path, event.start_mark)
        construct = _CONSTRUCT.get(tag)
        if construct is None:
            problem = f"unsupported tag {tag}"
        else:
            try:
                return construct(_CONSTRUCTOR, yaml.ScalarNode(tag, event.value))
            except (ValueError, TypeError, KeyError, yaml.YAMLError):
                problem = f"this value is not a valid {tag.removeprefix(_TAG)}"
        self.error(event.start_mark, "E008", problem,
                   "remove the tag; quote the value to keep it as a string")
        return self.string(event.value, path, event.start_mark)

    def sequence(self, start: Any, path: Path) -> list[Any]:
        self.check_tag(start, _SEQ)
        out: list[Any] = []
        event = self.next()
        while type(event) is not SequenceEndEvent:
            out.append(self.node(event, (*path, len(out))))
            event = self.next()
        return out

    def check_tag(self, event: Any, expected: str) -> None:
        if event.tag not in (None, "!", expected):
            self.error(event.start_mark, "E008", f"unsupported tag {event.tag}",
                       "route files use plain mappings, lists and scalars; remove the tag")

    def mapping(self, start: Any, path: Path) -> dict[str, Any]:
        self.check_tag(start, _MAP)
        out: dict[str, Any] = {}
        first: dict[str, Any] = {}  # key -> mark of its first occurrence
        sources: list[_Source] = []
        event = self.next()
        while type(event) is not MappingEndEvent:
            key = self.key(event)
            if isinstance(key, _MergeKey):
                sources.extend(self.merge_sources(path))
            elif key is None:
                self.skip(self.next())
            elif key in first:
                self.error(event.start_mark, "E004",
                           f"duplicate key {key!r} (first on line {first[key].line + 1})",
                           "remove one of them; YAML would silently keep the last")
                self.detached(self.next(), (*path, key))
            else:
                first[key] = event.start_mark
                self.key_marks[(*path, key)] = event.start_mark
                out[key] = self.node(self.next(), (*path, key))
            event = self.next()
        return self.merge(out, sources, path) if sources else out

    def key(self, event: Any) -> str | _MergeKey | None:
        """The key's text, _MERGE_KEY for `<<`, or None (after an E006) to drop the entry."""
        kind = type(event)
        if kind is ScalarEvent:
            tag = self.tag(event)
            if tag == _MERGE:
                return _MERGE_KEY
            if tag != _STR:
                self.error(event.start_mark, "E006", f"keys must be strings: {event.value!r} is "
                           f"read as {tag.removeprefix(_TAG)}", f'quote it: "{event.value}":')
            return str(event.value)
        if kind is AliasEvent and isinstance(value := self.alias(event), str):
            return value
        self.error(event.start_mark, "E006", "keys must be strings, not a list or a mapping",
                   "use a plain string key")
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

    def detached(self, event: Any, path: Path) -> tuple[Any, dict[Path, Any], dict[Path, Any]]:
        """Build a value whose marks must not land in the document (merge sources, dupes)."""
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
                self.error(item.start_mark, "E008", "`<<` merges a mapping or a list of mappings",
                           "point `<<:` at an anchored mapping, e.g. `<<: *defaults`")
            elif type(item) is AliasEvent:  # its entries are marked where the alias is used
                at = {(*path, k): item.start_mark for k in value}
                sources.append((value, at, at))
            else:
                sources.append((value, marks, key_marks))
        return sources

    def merge(self, out: dict[str, Any], sources: list[_Source], path: Path) -> dict[str, Any]:
        """YAML merge: explicit keys win, then earlier sources over later ones."""
        merged: dict[str, Any] = {}
        depth = len(path)
        for value, marks, key_marks in sources:
            taken = {k for k in value if k not in out and k not in merged}
            for k in taken:
                merged[k] = value[k]
                self.note_secrets((*path, k), value[k])
            for table, own in ((marks, self.marks), (key_marks, self.key_marks)):
                own.update((p, m) for p, m in table.items() if len(p) > depth and p[depth] in taken)
        merged.update(out)
        return merged




def _bad_bytes(filename: str, data: bytes, at: int, what: str, hint: str) -> _Fatal:
    """E002 at byte offset `at` of data (the text after any BOM)."""
    line_start = data.rfind(b"\n", 0, at) + 1
    line, col = data.count(b"\n", 0, at) + 1, len(data[line_start:at].decode(errors="replace")) + 1
    return _Fatal(Diagnostic(filename, line, col, "error", "E002",
                             f"{what} at byte offset {at} (line {line})", hint))


def _decode(text: str | bytes, filename: str) -> str:
    """The text to parse, BOM removed; E002 for anything that is not printable UTF-8 text."""
    if isinstance(text, bytes):
        data = text.removeprefix(b"\xef\xbb\xbf")
        if (nul := data.find(b"\0")) >= 0:
            raise _bad_bytes(filename, data, nul, "binary data (a NUL byte)",
                             "a route file is UTF-8 text: check that this is the right file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _bad_bytes(filename, data, e.start, f"not UTF-8: byte 0x{data[e.start]:02x}",
                             "save the file as UTF-8") from e
    text = text.removeprefix("\ufeff")
    if (bad := _NON_PRINTABLE.search(text)) is not None:
        at = bad.start()
        data = text[:at].encode()
        char = ord(text[at])
        what = "binary data (a NUL byte)" if char == 0 else f"control character U+{char:04X}"
        raise _bad_bytes(filename, data + b"?", len(data), what,
                         'remove it, or write it as an escape in a double-quoted string ("\\x1b")')
    return text


def _syntax_error(e: yaml.MarkedYAMLError, text: str, filename: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    message = e.problem or "invalid YAML"
    if e.context:
        where = e.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where and where != mark else ""
        message += f" ({e.context}{at})"
    lines = text.split("\n")
    line = lines[mark.line] if mark and mark.line < len(lines) else ""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    tabs = "\t" in indent or "\\t" in message or "tab character" in message
    hint = ("indent with spaces: YAML does not allow tabs in indentation" if tabs
            else "check the indentation, colons and quotes here and on the line before")
    line_no, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return Diagnostic(filename, line_no, col, "error", "E003", f"YAML syntax error: {message}", hint)


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
        raise _Fatal(Diagnostic(filename, 0, 0, "error", "E005", "the route file is empty",
                                _EMPTY_HINT))
    if not isinstance(data, dict):
        builder.fatal(builder.marks[()], "E005", "the top level of a route file must be a "
                      f"mapping, not {_KINDS.get(type(data), type(data).__name__)}", _EMPTY_HINT)
    return builder.document(data), builder.diagnostics


def _parse(text: str, filename: str, env: Mapping[str, str] | None,
           ) -> tuple[Document, list[Diagnostic]]:
    if _FAST is not None:
        # libyaml's syntax errors are terse ("did not find expected key"): on any error, parse
        # again with PyYAML, whose messages say what it expected.
        try:
            return _build(text, filename, env, _FAST)
        except (yaml.YAMLError, RecursionError):
            pass
    try:
        return _build(text, filename, env, _Loader)
    except yaml.MarkedYAMLError as e:
        raise _Fatal(_syntax_error(e, text, filename)) from e
    except yaml.YAMLError as e:
        raise _Fatal(Diagnostic(filename, 0, 0, "error", "E003", "YAML error: the file cannot "
                                "be parsed", "check that it is a YAML route file")) from e
    except RecursionError as e:
        raise _Fatal(Diagnostic(filename, 0, 0, "error", "E003", "the file nests too deeply to "
                                "load", "a route file needs a handful of levels")) from e


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
                   else "is a directory" if isinstance(e, IsADirectoryError)
                   else e.strerror or type(e).__name__)
        return None, [Diagnostic(filename, 0, 0, "error", "E001",
                                 f"cannot read the route file: {problem}",
                                 "check the path and that the file is readable")]
    return load_text(data, filename, env)


def from_dict(data: Mapping[str, Any], filename: str = "<dict>",
              env: Mapping[str, str] | None = None) -> tuple[Document, list[Diagnostic]]:
    """A Document from plain data: deep-copied and interpolated like a file, marks at line 0."""
    builder = _Builder(filename, env)
    return builder.document(builder.plain(data, ())), builder.diagnostics
