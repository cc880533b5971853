"""The one registry of configured secret values and ``redact(text)``, which replaces whole
secret values only (see ``router.secret`` for the rules; it lives there because
``router.errors``, a base module, redacts every LlmError message).
"""

from __future__ import annotations

from router.secret import (
    LONG_SECRET,
    MASK,
    Redactor,
    add_secrets,
    holds_secret,
    redact,
    redact_excerpt,
    redact_with,
    redactor_for,
    remove_secrets,
)

__all__ = ["LONG_SECRET", "MASK", "Redactor", "add_secrets", "holds_secret", "redact",
           "redact_excerpt", "redact_with", "redactor_for", "remove_secrets"]
