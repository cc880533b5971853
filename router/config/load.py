"""Load a route file into a Document: plain data, where each value sits, and its ${ENV} uses.
The YAML event walk is in ``_yaml``; the Document and the shared builder in ``document``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from router.config._yaml import FAST, EventSource, Loader, YamlBuilder
from router.config.document import SKELETON, Builder, Document, EnvRef, Fatal
from router.diagnostics import Diagnostic

__all__ = ["Document", "EnvRef", "from_dict", "load_file", "load_text"]

# What PyYAML's reader accepts (yaml/reader.py NON_PRINTABLE), checked up front so the error
# names a byte offset whichever parser runs.
_NON_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

def _bad_bytes(filename: str, data: bytes, at: int, what: str, hint: str) -> Fatal:
    """E002 for the byte at offset `at` of data (the file after any BOM)."""
    line, col = data.count(b"\n", 0, at) + 1, at - data.rfind(b"\n", 0, at)
    return Fatal(Diagnostic(filename, line, col, "error", "E002",
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


def build_document(text: str, filename: str, env: Mapping[str, str] | None,
                   parser: Callable[[str], EventSource]) -> tuple[Document, list[Diagnostic]]:
    """Parse ``text`` with ``parser`` (libyaml's or PyYAML's) into a Document, diagnostics."""
    source = parser(text)
    try:
        builder = YamlBuilder(filename, env, source)
        data = builder.stream()
    finally:
        source.dispose()
    if data is None:
        builder.fatal(0, "E005", "the route file is empty", SKELETON)
    if not isinstance(data, dict):
        kind = _KINDS.get(type(data), type(data).__name__)
        builder.fatal(builder.marks[()], "E005",
                      f"the top level of a route file must be a mapping, not {kind}", SKELETON)
    return builder.document(data), builder.diagnostics


def _parse(text: str, filename: str,
           env: Mapping[str, str] | None) -> tuple[Document, list[Diagnostic]]:
    if FAST is not None:
        # On any error, parse again with PyYAML: libyaml's messages are terse ("did not find
        # expected key") where PyYAML's say what it expected.
        try:
            return build_document(text, filename, env, FAST)
        except (yaml.YAMLError, RecursionError):
            pass
    try:
        return build_document(text, filename, env, Loader)
    except yaml.MarkedYAMLError as e:
        raise Fatal(_syntax_error(e, text, filename)) from e
    except (yaml.YAMLError, RecursionError) as e:
        raise Fatal(Diagnostic(filename, 0, 0, "error", "E003", "the file cannot be parsed "
                                "as YAML (nested too deeply?)", "is it a route file?")) from e


def load_text(text: str | bytes, filename: str = "<string>",
              env: Mapping[str, str] | None = None) -> tuple[Document | None, list[Diagnostic]]:
    """Load route-file text; the Document is None only when the text cannot become data."""
    try:
        return _parse(_decode(text, filename), filename, env)
    except Fatal as e:
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
    builder = Builder(filename, env)
    return builder.document(builder.plain(data, ())), builder.diagnostics
