"""Every failure the proxy answers, in one table: ErrorClass -> HTTP status, and the error
body of each API (OpenAI's ``{"error": {message, type, param, code}}``, Anthropic's
``{"type": "error", "error": {type, message}}``) with statuses both official SDKs classify
right (openai ``_make_status_error``, anthropic ``ERROR_CLASSES``).

Provider keys never reach a body: LlmError messages are redacted where they are made
(router.errors), and a chain's summary lists classes and statuses, not upstream text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from router.errors import ErrorClass, InvalidRequestError, LlmError, NoRouteError, RouteFailed

#: The status the proxy answers for a call that ended with this class. Upstream failures the
#: router could not route around are 502 (the proxy is a gateway); timeouts are 504.
STATUS: dict[str, int] = {
    ErrorClass.INVALID_REQUEST: 400,
    ErrorClass.CONTEXT_WINDOW: 400,
    ErrorClass.CONTENT_POLICY: 400,
    ErrorClass.NO_ROUTE: 404,
    ErrorClass.BUDGET_EXCEEDED: 429,
    ErrorClass.RATE_LIMITED_LOCALLY: 429,
    ErrorClass.TIMEOUT: 504,
    ErrorClass.STORE_UNAVAILABLE: 503,
}
_GATEWAY = 502  # every other class: auth, permission, not_found, rate_limit, server, ...

#: Seconds a client is told to wait after a local refusal that names no wait: the budget and
#: rate-limit windows the proxy enforces are at least a minute long.
DEFAULT_RETRY_AFTER = 60

#: Anthropic's error ``type`` per status (docs.anthropic.com, "Errors").
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                    413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                    502: "api_error", 503: "overloaded_error", 504: "timeout_error"}
#: OpenAI's error ``type`` per status class.
_OPENAI_TYPES = {403: "permission_error", 429: "rate_limit_error", 500: "server_error",
                 502: "server_error", 503: "server_error", 504: "timeout_error"}



@dataclass(eq=False)  # an exception compares and hashes by identity
class ApiError(Exception):
    """A failure answered as an error body: ``code`` is the router's error class (or a
    proxy-level code such as ``invalid_api_key``); ``param`` the offending parameter."""

    status: int
    message: str
    code: str
    param: str | None = None
    retry_after: float | None = None
    target: str | None = None
    attempts: Sequence[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """Retry-After (whole seconds, rounded up) where the client should wait."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def invalid(param: str | None, message: str) -> ApiError:
    """A 400 naming ``param``."""
    return ApiError(400, message, "invalid_request_error", param=param)


def from_llm_error(e: LlmError) -> ApiError:
    """The answer to a call that failed with ``e`` (see STATUS)."""
    cls = e.error_class
    attempts: Sequence[Any] = getattr(e, "attempts", ())
    if isinstance(e, NoRouteError):  # raised before any target: the model names nothing
        return ApiError(404, e.message, "model_not_found", param="model")
    status = STATUS.get(cls, _GATEWAY)
    if any(r.reason == "deadline" for r in attempts):  # the call's deadline ended the walk
        status = 504
    elif cls is ErrorClass.NO_ROUTE:  # every target skipped: why decides who must act
        reasons = {r.reason for r in attempts}
        status = 400 if reasons and reasons <= {"capability", "context_window"} else 503
    retry_after = e.retry_after
    if status == 429 and retry_after is None:
        retry_after = DEFAULT_RETRY_AFTER
    message = e.message if not isinstance(e, RouteFailed) else summarize(e)
    # The router's own checks name the parameter; an upstream's 400 does not (its message is
    # the provider's, about the provider's own request).
    param = e.param if isinstance(e, InvalidRequestError) and e.status is None else None
    return ApiError(status, message, cls.value, param=param, retry_after=retry_after,
                    target=e.target, attempts=attempts)


def summarize(e: RouteFailed) -> str:
    """A chain's failure for a client: the router's sentence and one short line per attempt
    (target, outcome, class or skip reason, status); never upstream bodies or keys."""
    lines = []
    for r in e.attempts:
        if r.outcome == "skipped":
            lines.append(f"{r.target}: skipped ({r.reason})")
        else:
            what = r.error_class.value if r.error_class is not None else r.outcome
            status = f" HTTP {r.status}" if r.status else ""
            lines.append(f"{r.target}: {what}{status}")
    if not lines:
        return e.message
    return f"{e.message} [attempts: {'; '.join(lines)}]"


def openai_error_body(err: ApiError) -> dict[str, Any]:
    """OpenAI's error object."""
    kind = _OPENAI_TYPES.get(err.status, "invalid_request_error")
    return {"error": {"message": err.message, "type": kind, "param": err.param,
                      "code": err.code}}


def anthropic_error_body(err: ApiError, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error object."""
    kind = _ANTHROPIC_TYPES.get(err.status, "api_error" if err.status >= 500
                                else "invalid_request_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": err.message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


__all__ = ["DEFAULT_RETRY_AFTER", "STATUS", "ApiError", "anthropic_error_body",
           "from_llm_error", "invalid", "openai_error_body", "summarize"]
