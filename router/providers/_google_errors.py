"""Gemini API error bodies to router errors. Pure; no I/O.

Body: ``{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED", "details":
[...]}}`` (google.rpc.Status; streamGenerateContent may wrap it in a one-element list). Status
table: https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes ; detail types
(ErrorInfo, QuotaFailure, RetryInfo): https://cloud.google.com/apis/design/errors

Decisions beyond the table:

* ``API_KEY_INVALID`` (ErrorInfo reason) arrives as 400 INVALID_ARGUMENT: it is ``auth``.
* A prompt over the model's input limit ("The input token count (N) exceeds the maximum number
  of tokens allowed (M).") is 400 INVALID_ARGUMENT: it is ``context_window``.
* FAILED_PRECONDITION (400: free tier not available in the caller's region, billing not
  enabled) is ``permission``: this key cannot be used from here, waiting does not help.
* RESOURCE_EXHAUSTED (429) is ``rate_limit``, retried after RetryInfo's ``retryDelay`` — except
  when a QuotaFailure names a per-day quota (``...PerDay...``) or a quota of 0: that is
  ``quota_exhausted`` (next target at once), since no retry succeeds before the daily reset
  (midnight Pacific) or without a plan change. Every Gemini 429 says "check your plan and
  billing details", so the message text is not used.
* UNAVAILABLE (503, "The model is overloaded") is ``overloaded``; DEADLINE_EXCEEDED (504) is
  ``timeout``; INTERNAL (500) is ``server``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from router.errors import ErrorClass, LlmError
from router.providers.base import ErrorBody, classify_status, make_status_error

_GRPC_CLASSES: dict[str, ErrorClass] = {
    "INVALID_ARGUMENT": ErrorClass.INVALID_REQUEST,
    "OUT_OF_RANGE": ErrorClass.INVALID_REQUEST,
    "FAILED_PRECONDITION": ErrorClass.PERMISSION,
    "UNAUTHENTICATED": ErrorClass.AUTH,
    "PERMISSION_DENIED": ErrorClass.PERMISSION,
    "NOT_FOUND": ErrorClass.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorClass.RATE_LIMIT,
    "INTERNAL": ErrorClass.SERVER,
    "UNKNOWN": ErrorClass.SERVER,
    "UNAVAILABLE": ErrorClass.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorClass.TIMEOUT,
}
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "ACCESS_TOKEN_EXPIRED", "ACCESS_TOKEN_INVALID"})
_CONTEXT = re.compile(r"input token count.*exceeds the maximum|exceeds the maximum number of "
                      r"tokens|context (?:length|window)", re.IGNORECASE | re.DOTALL)
_TYPE_PREFIX = "type.googleapis.com/google.rpc."


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def error_object(body: ErrorBody) -> Mapping[str, Any]:
    """The google.rpc.Status object of a body (``{"error": ...}`` or ``[{"error": ...}]``)."""
    data = body.json
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _details(err: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    details = err.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details
            if isinstance(d, dict) and d.get("@type") == _TYPE_PREFIX + kind]


def _reason(err: Mapping[str, Any]) -> str:
    return next((_str(d.get("reason")) for d in _details(err, "ErrorInfo") if d.get("reason")),
                "")


def _quota_ids(err: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(quotaId, quotaValue) of every QuotaFailure violation."""
    return [(_str(v.get("quotaId")), str(v.get("quotaValue", "")))
            for d in _details(err, "QuotaFailure")
            for v in d.get("violations") or () if isinstance(v, dict)]


def retry_delay(err: Mapping[str, Any]) -> float | None:
    """RetryInfo's ``retryDelay`` ("17s", "0.250s": a protobuf Duration) in seconds."""
    for d in _details(err, "RetryInfo"):
        value = _str(d.get("retryDelay"))
        if value.endswith("s"):
            try:
                seconds = float(value[:-1])
            except ValueError:
                continue
            if seconds >= 0:
                return seconds
    return None


def _is_hard_quota(quotas: Sequence[tuple[str, str]]) -> bool:
    return any("perday" in qid.lower() or value == "0" for qid, value in quotas)


def classify(status: int | None, err: Mapping[str, Any], message: str) -> ErrorClass:
    """The ErrorClass of one Gemini error (see the module docstring)."""
    grpc = _str(err.get("status"))
    if _reason(err) in _AUTH_REASONS or "api key not valid" in message.lower():
        return ErrorClass.AUTH
    cls = _GRPC_CLASSES.get(grpc)
    if cls is None:
        cls = classify_status(status) if status is not None else ErrorClass.SERVER
    if cls is ErrorClass.INVALID_REQUEST and _CONTEXT.search(message):
        return ErrorClass.CONTEXT_WINDOW
    if cls is ErrorClass.RATE_LIMIT and _is_hard_quota(_quota_ids(err)):
        return ErrorClass.QUOTA_EXHAUSTED
    return cls


def map_google_error(status: int | None, headers: Mapping[str, str], body: ErrorBody, *,
                     secrets: tuple[str, ...] = ()) -> LlmError:
    """The LlmError for a Gemini error body (status None: an error event inside a 200 stream).

    ``retry_after`` is the larger of RetryInfo's delay and the Retry-After header: retrying
    sooner than either party asked only meets another 429.
    """
    err = error_object(body)
    message = _str(err.get("message")) or body.text
    error_class = classify(status, err, message)
    quotas = _quota_ids(err)
    error = make_status_error(
        error_class, status, headers,
        provider_message=message,
        provider_type=_str(err.get("status")) or None,
        provider_code=_reason(err) or (quotas[0][0] if quotas else "") or None,
        retryable=False if error_class is ErrorClass.QUOTA_EXHAUSTED else None,
        secrets=secrets,
    )
    delays = [d for d in (retry_delay(err), error.retry_after) if d is not None]
    error.retry_after = max(delays) if delays else None
    return error
