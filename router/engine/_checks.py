"""Leaf checks of call input: text, numbers, flags and JSON values, each raising
InvalidRequestError that names the parameter path and never echoes a long value.

Pure type checks, no copies. Nested values are walked iteratively with a depth bound, so a
deep value is refused instead of overflowing the stack later (json.dumps, repr, str).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn, cast

from router.errors import InvalidRequestError

#: Deepest nesting accepted in a JSON value (tool arguments and schemas, response schemas,
#: provider-specific params). Far above what any vendor accepts, far below the C stack.
MAX_DEPTH = 64
#: Integers are sent as JSON numbers: vendors parse them as 64-bit at most, and Python refuses
#: to print ints above 4300 digits.
_MAX_INT_BITS = 64
_SHOWN_CHARS = 24  # longer strings are described, not quoted: they may be secrets or prompts
_SHOWN_KEYS = 6  # levels of a path inside a JSON value named in a message

#: A path inside a JSON value, as a linked list built only when walking: (parent, key).
_Trail = tuple[Any, str | int] | None


def fail(path: str, problem: str) -> NoReturn:
    """Raise the InvalidRequestError of ``path`` with ``problem`` (``param`` is ``path``)."""
    error = InvalidRequestError(f"{path} {problem}")
    error.param = path
    raise error


def describe(value: object) -> str:
    """A short, safe description of a value for an error message."""
    if isinstance(value, str):
        if len(value) <= _SHOWN_CHARS and value.isprintable():
            return repr(value)
        return f"a string of {len(value)} characters"
    if value is None or isinstance(value, bool) or (
            isinstance(value, int) and value.bit_length() <= _MAX_INT_BITS):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    return f"a {type(value).__name__}"


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (which no UTF-8 body can carry)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text(value: object, path: str) -> str:
    """``value`` if it is a string that UTF-8 can encode."""
    if not isinstance(value, str):
        fail(path, f"must be a string, not {describe(value)}")
    if has_surrogates(value):
        fail(path, "contains a lone surrogate (not valid Unicode text)")
    return value


def optional_text(value: object, path: str) -> str | None:
    return None if value is None else text(value, path)


def flag(value: object, path: str) -> bool | None:
    """``value`` if it is None or a bool."""
    if value is None or value is True or value is False:
        return value
    fail(path, f"must be true or false, not {describe(value)}")


def integer(value: object, path: str, minimum: int | None = None) -> int:
    """``value`` if it is an int (bool is not) within 64 bits and at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        fail(path, f"must be an integer, not {describe(value)}")
    if value.bit_length() > _MAX_INT_BITS:
        fail(path, "is an integer beyond 64 bits")
    if minimum is not None and value < minimum:
        fail(path, f"must be at least {minimum} (got {value})")
    return value


def number(value: object, path: str) -> float:
    """``value`` if it is a finite int or float (bool is not)."""
    if type(value) is float or isinstance(value, float):
        if math.isfinite(value):
            return value
        fail(path, f"must be a finite number, not {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value, path)  # sent as given: 1 stays 1
    fail(path, f"must be a number, not {describe(value)}")


def _trail_path(path: str, trail: _Trail) -> str:
    keys: list[str | int] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    keys.reverse()
    tail = "..." if len(keys) > _SHOWN_KEYS else ""  # a deep path is cut after a few levels
    out = [path]
    for key in keys[:_SHOWN_KEYS]:
        if isinstance(key, int):
            out.append(f"[{key}]")
        elif key.isidentifier() and len(key) <= _SHOWN_CHARS:
            out.append(f".{key}")
        else:
            out.append(f"[{describe(key)}]")
    out.append(tail)
    return "".join(out)


def _scalar_problem(value: object) -> str | None:
    """Why a non-container value cannot be sent as JSON (None: it can)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return "contains a lone surrogate (not valid Unicode text)" if has_surrogates(value) \
            else None
    if isinstance(value, int):
        return "is an integer beyond 64 bits" if value.bit_length() > _MAX_INT_BITS else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"is {value!r}, which JSON cannot carry"
    return f"is a {type(value).__name__}, which is not a JSON value"


def json_value(value: Any, path: str) -> Any:
    """``value`` if ``json.dumps`` makes valid, UTF-8-encodable JSON of it: dicts with string
    keys, lists and tuples at most MAX_DEPTH deep, strings, finite numbers, bools and None."""
    stack: list[tuple[Any, int, _Trail]] = [(value, 0, None)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth, trail = pop()
        if isinstance(v, dict | list | tuple):
            if depth >= MAX_DEPTH:
                fail(_trail_path(path, trail), f"is nested deeper than {MAX_DEPTH} levels")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for key, item in items:
                if isinstance(v, dict) and (not isinstance(key, str) or has_surrogates(key)):
                    fail(_trail_path(path, trail),
                         f"has a key that is not a valid string ({describe(key)})")
                if type(item) is str and item.isascii():
                    continue  # the common leaf, without a push
                push((item, depth + 1, (trail, key)))
        else:
            problem = _scalar_problem(v)
            if problem is not None:
                fail(_trail_path(path, trail), problem)
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def json_object_text(raw: str, path: str) -> dict[str, Any]:
    """The JSON object in ``raw`` (blank: ``{}``), checked as ``json_value``."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        error = InvalidRequestError(f"{path} is not valid JSON")
        error.param = path
        raise error from e
    if not isinstance(parsed, dict):
        fail(path, f"must be a JSON object, not {describe(parsed)}")
    json_value(parsed, path)  # escapes such as "\ud800" parse into lone surrogates
    return parsed


def nonempty(value: object, path: str) -> str:
    """A name that must be given: a non-empty string."""
    if value is None:
        fail(path, "is missing")
    if not text(value, path):
        fail(path, "is empty")
    return cast(str, value)


_BETA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def beta_names(value: object, path: str) -> list[str]:
    """Anthropic's ``betas``: a list of beta names (sent as the ``anthropic-beta`` header)."""
    if not isinstance(value, list) or not all(
            isinstance(b, str) and _BETA_NAME.fullmatch(b) for b in value):
        fail(path, "must be a list of beta names such as 'context-1m-2025-08-07'")
    return value


def server_tools(value: object, path: str) -> list[dict[str, Any]]:
    """Anthropic's ``server_tools``: tool objects with a ``type`` and a ``name`` each, sent as
    given (the API says what else each type takes)."""
    if not isinstance(value, list):
        fail(path, f"must be a list of tool objects, not {describe(value)}")
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str) \
                or not isinstance(tool.get("name"), str):
            fail(f"{path}[{i}]", 'must be an object with a "type" and a "name" '
                                 '({"type": "web_search_20250305", "name": "web_search"})')
        json_value(tool, f"{path}[{i}]")
    return value


_TTLS = ("5m", "1h")


def cache_control(value: object, path: str) -> dict[str, Any] | None:
    """A prompt-cache breakpoint: None, or ``{"type": "ephemeral"}`` with an optional
    ``"ttl"`` of ``"5m"`` or ``"1h"`` (Anthropic's shape, the only one any API takes)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        fail(path, f"must be an object, not {describe(value)}")
    if value.get("type") != "ephemeral":
        fail(f"{path}.type", f"must be ephemeral, not {describe(value.get('type'))}")
    ttl = value.get("ttl")
    if ttl is not None and ttl not in _TTLS:
        fail(f"{path}.ttl", f"must be 5m or 1h, not {describe(ttl)}")
    for key in value:
        if key not in ("type", "ttl"):
            fail(path, f"has an unknown key {describe(key)} (type and ttl are known)")
    return value


def provider_state(value: object, path: str) -> dict[str, Any] | None:
    """A message's or tool call's ``provider_state``: None, or a JSON object whose ``kind``
    names the provider kind that made it (only that kind reads it; the rest is opaque)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        fail(path, f"must be an object, not {describe(value)}")
    kind = value.get("kind")
    if not isinstance(kind, str) or not kind:
        fail(f"{path}.kind", f"must be a provider kind, not {describe(kind)}")
    return json_value(value, path)  # type: ignore[no-any-return]
