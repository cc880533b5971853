"""The YAML event walk behind load: parser events (libyaml's when present) turned into data,
positions and diagnostics, catching what PyYAML lets pass.

The walk runs over parser events, not composed nodes: libyaml's composer calls back into Python
for every scalar, which alone costs more than the load budget on large files, and only events
show where an alias is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

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

from router.config.document import SKELETON, Builder, EnvRef, Path

# A `<<` source: the mapping, then the positions of its entries' values and keys.
_Source = tuple[dict[str, Any], dict[Path, int], dict[Path, int]]
_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE, _SEQ, _MAP = _TAG + "merge", _TAG + "seq", _TAG + "map"


class Loader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false, any case: YAML 1.1 reads `on:` as True.

    Timestamps stay strings (data is JSON-like), and `=` is a string, not SafeLoader's
    unconstructible !!value.
    """


Loader.yaml_implicit_resolvers = {
    first: [(t, rx) for t, rx in resolvers if t not in (_BOOL, _TAG + "timestamp", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF"))
# Only first characters that some resolver claims: any other plain scalar is a string.
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: resolvers for first, resolvers in Loader.yaml_implicit_resolvers.items() if resolvers}
_CONSTRUCTOR = SafeConstructor()
_CONSTRUCT = {tag: getattr(SafeConstructor, "construct_yaml_" + tag.removeprefix(_TAG))
              for tag in (_INT, _FLOAT, _BOOL, _NULL)}


class EventSource(Protocol):
    def get_event(self) -> Any: ...
    def dispose(self) -> None: ...


# Events carry no resolved tags, so tag_of() applies Loader's table whichever parser produced them.
FAST: Callable[[str], EventSource] | None = getattr(yaml, "CSafeLoader", None)


def _pos(mark: Any) -> int:
    """A parser mark as one int, 1-based `line << 32 | column`; 0 is "no position".

    Keeping ~100k parser Mark objects alive makes the garbage collector rescan them all
    through the load; ints are not tracked.
    """
    return int((mark.line + 1) << 32 | (mark.column + 1))


def tag_of(event: Any) -> str:
    """The tag SafeLoader's composer would give this scalar, with Loader's resolvers."""
    tag: str | None = event.tag
    if tag is not None and tag != "!":
        return tag
    value: str = event.value
    if event.implicit[0]:
        for candidate, regexp in _IMPLICIT.get(value[:1], ()):
            if regexp.match(value):
                return candidate
    return _STR


class YamlBuilder(Builder):
    """Turns one stream of parser events into data, catching what PyYAML lets pass."""

    def __init__(self, file: str, env: Mapping[str, str] | None, source: EventSource) -> None:
        super().__init__(file, env)
        self.next = source.get_event
        self.anchors: dict[str, Any] = {}
        # anchor -> (its path, the ${ENV} uses inside it): an alias repeats them at its own
        # path, so a key that came from the environment through an anchor is known as such.
        self.anchor_refs: dict[str, tuple[Path, list[EnvRef]]] = {}

    def stream(self) -> Any:
        self.next()  # StreamStartEvent
        if type(self.next()) is StreamEndEvent:
            self.fatal(0, "E005", "the route file is empty", SKELETON)
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
        if kind is AliasEvent:  # the parser emits nothing else where a node may start
            value = self.alias(event)
            self.note_secrets(path, value)
            self.repeat_refs(event.anchor, path)
            return value
        first_ref = len(self.env_refs)
        if kind is ScalarEvent:
            value = self.scalar(event, path, pos)
        elif kind is MappingStartEvent:
            value = self.mapping(event, path)
        else:
            value = self.sequence(event, path)
        if event.anchor is not None:
            self.anchors[event.anchor] = value
            self.anchor_refs[event.anchor] = (path, self.env_refs[first_ref:])
        return value

    def repeat_refs(self, anchor: str, path: Path) -> None:
        """Record the ${ENV} uses of ``anchor``'s value again at ``path``, where it is used."""
        source = self.anchor_refs.get(anchor)
        if source is not None:
            at, refs = source
            self.env_refs.extend(replace(r, path=(*path, *r.path[len(at):])) for r in refs)

    def alias(self, event: Any) -> Any:
        if event.anchor not in self.anchors:
            self.fatal(_pos(event.start_mark), "E003", f"alias *{event.anchor} has no anchor "
                       "before it", f"define &{event.anchor} on a value above this one")
        return self.anchors[event.anchor]

    def scalar(self, event: Any, path: Path, pos: int) -> Any:
        if event.tag is None and not (event.implicit[0] and event.value[:1] in _IMPLICIT):
            return self.string(event.value, path, pos)  # the common case, without tag_of()
        tag = tag_of(event)
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
            if type(event) is ScalarEvent and event.value == "<<" and tag_of(event) == _MERGE:
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
            if (event.tag is not None or text[:1] in _IMPLICIT) and (tag := tag_of(event)) != _STR:
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


