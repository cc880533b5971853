"""A value that never shows itself: API keys from the environment.

Like pydantic's SecretStr (same ``get_secret_value``), without importing pydantic on the
engine's import path.
"""

from __future__ import annotations


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
