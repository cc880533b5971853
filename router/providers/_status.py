"""HTTP error helpers shared by every provider kind: the default status table, Retry-After,
``x-should-retry``, error bodies and redaction. No aiohttp here; ``base`` re-exports these.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.errors import ErrorClass, LlmError, make_error
from router.obs.redact import redact_with

_MESSAGE_LIMIT = 500  # characters of a provider message kept in our error message

_STATUS_CLASSES: dict[int, ErrorClass] = {
    400: ErrorClass.INVALID_REQUEST,
    401: ErrorClass.AUTH,
    403: ErrorClass.PERMISSION,
    404: ErrorClass.NOT_FOUND,
    408: ErrorClass.TIMEOUT,
    409: ErrorClass.SERVER,  # lock conflict: openai-python retries it
    413: ErrorClass.CONTEXT_WINDOW,
    422: ErrorClass.INVALID_REQUEST,
    429: ErrorClass.RATE_LIMIT,
    500: ErrorClass.SERVER,
    502: ErrorClass.SERVER,
    503: ErrorClass.OVERLOADED,
    529: ErrorClass.OVERLOADED,  # Anthropic "overloaded_error"
}


def classify_status(status: int) -> ErrorClass:
    """The default error class of an HTTP status; provider modules refine it from the body."""
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    if 400 <= status < 500:
        return ErrorClass.INVALID_REQUEST
    return ErrorClass.SERVER


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (ms) or ``retry-after`` (seconds or HTTP date).

    ``None`` when absent or unparseable; a date in the past gives 0. Same precedence as
    openai-python's ``_parse_retry_after_header``: milliseconds first, then seconds, then a date.
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are GMT
        return None
    return max(when.timestamp() - time.time(), 0.0)


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    """The server's own verdict from ``x-should-retry: true|false`` (None when absent)."""
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def redact_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every configured secret (``router.obs.redact``'s registry, plus
    ``secrets``) replaced by ``***``: whole values only, nothing guessed from its shape (a
    "Bearer <word>" guess blanked OpenAI's own "using Bearer auth" hint)."""
    return redact_with(text, secrets)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """An error response body, read safely: ``text`` (truncated) and ``json`` (None if not JSON)."""

    text: str
    json: Any = None

    def error_object(self) -> Mapping[str, Any]:
        """The ``{"error": {...}}`` object if the body has that shape (most vendors), else {}."""
        if isinstance(self.json, dict):
            err = self.json.get("error")
            if isinstance(err, dict):
                return err
        return {}


def make_status_error(
    error_class: ErrorClass,
    status: int | None,
    headers: Mapping[str, str],
    *,
    provider_message: str | None,
    provider_type: str | None = None,
    provider_code: str | None = None,
    retryable: bool | None = None,
    secrets: tuple[str, ...] = (),
) -> LlmError:
    """Build the LlmError for an HTTP error: message redacted and truncated, Retry-After read,
    ``x-should-retry`` honoured unless ``retryable`` is forced by the caller."""
    message = redact_secrets((provider_message or "").strip(), secrets)[:_MESSAGE_LIMIT]
    if retryable is None:
        retryable = parse_should_retry(headers)
    return make_error(
        error_class,
        message or (f"HTTP {status}" if status else "provider error"),
        status=status,
        retry_after=parse_retry_after(headers),
        retryable=retryable,
        provider_type=provider_type,
        provider_code=provider_code,
        provider_message=message or None,
    )
