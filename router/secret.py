"""Secrets: ``Secret``, a value that never shows itself (API keys from the environment), and
the one registry of configured secret values with ``redact``, which hides them in text.

``Secret`` is like pydantic's SecretStr (same ``get_secret_value``), without importing pydantic
on the engine's import path.

Every API key and every ``headers:`` value a Router is built with is registered here, so any
text that may quote upstream bytes (error messages, attempt details, log events, CLI lines) is
cleaned by one call. Redaction replaces whole secret values only and never touches other text:
a secret of 8 characters or more is hidden wherever it occurs (also inside a longer token, e.g.
``key=<secret>&``), a shorter one only where it stands as a whole token, so a one-letter key
does not blank that letter out of every word (and ``errors:`` rules with ``match:`` keep
matching). The pattern is compiled once per change of the registry; with nothing registered,
``redact`` is one ``is None`` check. This is a base module (``router.errors`` uses it);
``router.obs.redact`` is its public seat for the other packages.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable

MASK = "***"
#: Setting names whose string values are secrets wherever they appear (a header value is one
#: too): the loader, the config checks and the engine read this one list.
SECRET_SETTINGS = frozenset({"api_key", "token", "password", "secret"})
#: Secrets at least this long are hidden even inside a longer token; shorter ones only whole.
LONG_SECRET = 8
# Characters that make up key-like tokens: a short secret next to one of them is part of a
# longer word, not the secret.
_TOKEN_CHAR = r"A-Za-z0-9_\-"


def _alternative(value: str) -> str:
    escaped = re.escape(value)
    if len(value) >= LONG_SECRET:
        return escaped
    return f"(?<![{_TOKEN_CHAR}]){escaped}(?![{_TOKEN_CHAR}])"


def _compile(values: frozenset[str]) -> re.Pattern[str] | None:
    # Longest first: regex alternation takes the first branch that matches at a position, so a
    # secret that contains another is hidden whole.
    ordered = sorted(values, key=lambda v: (-len(v), v))
    return re.compile("|".join(map(_alternative, ordered))) if ordered else None


def _credential_parts(value: str) -> Iterable[str]:
    """``value`` and, for an RFC 7235 credential (``Bearer <token>``), the token alone: an
    upstream may echo the token without its scheme."""
    yield value
    parts = value.split()
    if len(parts) == 2 and parts[0].isalpha() and len(parts[1]) >= LONG_SECRET:
        yield parts[1]


class Redactor:
    """A set of secret values and the one compiled pattern that hides them.

    Values are counted: each ``add`` of a value needs a ``discard`` of it before it is
    forgotten, so two Routers sharing a key do not unregister it for each other.
    """

    __slots__ = ("_counts", "_lock", "_pattern", "_values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (empty ones ignored); recompiles only when one is new."""
        with self._lock:
            for part in (p for v in values if v for p in _credential_parts(v)):
                self._counts[part] = self._counts.get(part, 0) + 1
            self._rebuild()

    def discard(self, values: Iterable[str]) -> None:
        """Undo one ``add`` of ``values``; a value is forgotten when no ``add`` is left."""
        with self._lock:
            for part in (p for v in values if v for p in _credential_parts(v)):
                left = self._counts.get(part, 0) - 1
                if left > 0:
                    self._counts[part] = left
                else:
                    self._counts.pop(part, None)
            self._rebuild()

    def _rebuild(self) -> None:
        values = frozenset(self._counts)
        if values != self._values:
            pattern = _compile(values)
            # one assignment each: a reader sees the old pattern or the new, never a broken one
            self._values = values
            self._pattern = pattern

    def __call__(self, text: str) -> str:
        """``text`` with every whole occurrence of a secret replaced by ``***``."""
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)

    def finds(self, text: str) -> bool:
        """Whether ``text`` holds a secret that ``self(text)`` would hide."""
        pattern = self._pattern
        return pattern is not None and pattern.search(text) is not None

    @property
    def values(self) -> frozenset[str]:
        """The registered values (for building a wider Redactor; never print them)."""
        return self._values

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._values)} secrets>)"


_registry = Redactor()


def add_secrets(values: Iterable[str]) -> None:
    """Register configured secret values (API keys, header values) for every ``redact``."""
    _registry.add(values)


def remove_secrets(values: Iterable[str]) -> None:
    """Undo one ``add_secrets(values)`` (a closing Router): the registry does not grow for
    ever in a process that builds many Routers."""
    _registry.discard(values)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (whole values only)."""
    return _registry(text)


def holds_secret(text: str) -> bool:
    """Whether ``redact(text)`` would hide anything (one search, no new string)."""
    return _registry.finds(text)


def secret_values() -> frozenset[str]:
    """The registered values (never print them): ``holds_secret(text)`` is False when none
    is a substring of ``text``, a check much cheaper than the pattern's search."""
    return _registry.values


def redact_with(text: str, extra: Iterable[str]) -> str:
    """``redact``, also hiding ``extra`` (e.g. the key of a provider built without a Router)
    in the same single pass, so a registered value inside an extra one cannot split it."""
    more = frozenset(v for v in extra if v) - _registry.values
    if not more:
        return _registry(text)
    return redactor_for(_registry.values | more)(text)


def redact_excerpt(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` after redaction: cutting first could leave
    the beginning of a secret that no longer matches."""
    return _registry(text)[:limit]


@functools.lru_cache(maxsize=64)
def redactor_for(values: frozenset[str]) -> Redactor:
    """A Redactor for ``values`` alone (same rules as the registry), built once per set: for
    text produced before a Router exists, e.g. a route file's diagnostics."""
    return Redactor(values)


class Secret:
    """A secret string; str() and repr() show stars, never the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The value itself: send it, never print it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
