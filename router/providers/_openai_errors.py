"""OpenAI's error bodies (``{"error": {"message", "type", "param", "code"}}``) as LlmErrors:
classified once, here. Azure OpenAI and OpenAI-compatible servers start from this mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.errors import ErrorClass, LlmError, QuotaExhaustedError
from router.providers.base import ErrorBody, classify_status, make_status_error

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_POLICY_CODES = frozenset({"content_filter", "content_policy_violation"})
_QUOTA = "insufficient_quota"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _error_class(status: int | None, err_type: str, code: str, message: str) -> ErrorClass:
    if err_type == _QUOTA or code == _QUOTA:
        return ErrorClass.QUOTA_EXHAUSTED
    if status is None or 400 <= status < 500:
        if code in _CONTEXT_CODES or "maximum context length" in message.lower():
            return ErrorClass.CONTEXT_WINDOW
        if code in _POLICY_CODES:
            return ErrorClass.CONTENT_POLICY
    if status is not None:
        return classify_status(status)
    # A mid-stream error event has no status of its own: read its type.
    if code == "rate_limit_exceeded" or err_type in ("rate_limit_error", "tokens", "requests"):
        return ErrorClass.RATE_LIMIT
    if err_type == "invalid_request_error":
        return ErrorClass.INVALID_REQUEST
    return ErrorClass.SERVER


def map_openai_error(
    status: int | None,
    headers: Mapping[str, str],
    body: ErrorBody,
    *,
    secrets: tuple[str, ...] = (),
) -> LlmError:
    """The LlmError for an OpenAI error body ``{"error": {"message","type","param","code"}}``
    (status None for an error event inside a 200 stream)."""
    err = body.error_object()
    err_type = _str(err.get("type"))
    code = _str(err.get("code"))
    message = _str(err.get("message")) or body.text
    error_class = _error_class(status, err_type, code, message)
    return make_status_error(
        error_class,
        status,
        headers,
        provider_message=message,
        provider_type=err_type or None,
        provider_code=code or None,
        # Out of credit is not fixed by waiting, whatever x-should-retry says.
        retryable=False if error_class is QuotaExhaustedError.error_class else None,
        secrets=secrets,
    )


__all__ = ["map_openai_error"]
