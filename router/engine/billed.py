"""What a failed attempt cost: an opener that fails after the provider billed it (a stream that
read output, then broke; a refusal routed around) raises ``Billed``, which the attempt step
records with that usage and cost."""

from __future__ import annotations

from router.errors import LlmError
from router.types import Usage

#: The usage and cost of a failed attempt that was billed: a stream that read output, then
#: failed (estimated), or a refusal under a content_policy action other than fail.
Spent = tuple[Usage, float | None]


class Billed(Exception):
    """An opener's failed attempt that the provider billed: ``error`` and what it
    ``spent``. It never leaves the attempt step, which records ``error`` with that usage and
    cost (a stream that read output, then failed; a refusal routed around)."""

    def __init__(self, error: LlmError, spent: Spent) -> None:
        super().__init__(error)
        self.error, self.spent = error, spent


__all__ = ["Billed", "Spent"]
