"""Every failure a user can see: the ErrorClass taxonomy, LlmError and its subclasses, ConfigError.

Classification happens once, at the provider edge; past it, code branches on ``error_class``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from router.secret import redact

if TYPE_CHECKING:
    from router.diagnostics import Diagnostic


class ErrorClass(enum.StrEnum):
    """What went wrong, independent of the provider that said it."""

    AUTH = "auth"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    INVALID_REQUEST = "invalid_request"
    CONTEXT_WINDOW = "context_window"
    CONTENT_POLICY = "content_policy"
    RATE_LIMIT = "rate_limit"
    QUOTA_EXHAUSTED = "quota_exhausted"
    OVERLOADED = "overloaded"
    SERVER = "server"
    TIMEOUT = "timeout"
    NETWORK = "network"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED_LOCALLY = "rate_limited_locally"
    STORE_UNAVAILABLE = "store_unavailable"
    NO_ROUTE = "no_route"
    STREAM_INTERRUPTED = "stream_interrupted"

    def __str__(self) -> str:
        return self.value


class Action(enum.StrEnum):
    """What the engine does after a failed attempt."""

    RETRY = "retry"  # retry the same target (backoff), then fall back
    FALLBACK = "fallback"  # next target at once
    FAIL = "fail"  # stop the route now

    def __str__(self) -> str:
        return self.value


#: The built-in action per error class (DESIGN.md, "Error classes and default actions").
DEFAULT_ACTIONS: dict[ErrorClass, Action] = {
    ErrorClass.RATE_LIMIT: Action.RETRY,
    ErrorClass.OVERLOADED: Action.RETRY,
    ErrorClass.SERVER: Action.RETRY,
    # ...except a connect, first-token or pool timeout while the chain has a later target
    # that can be tried: a silent provider stays silent, so the next one is tried at once
    # (router.engine.decision.FAST_FALLBACK_TIMEOUTS; only a chain's last target retries).
    ErrorClass.TIMEOUT: Action.RETRY,
    ErrorClass.NETWORK: Action.RETRY,
    ErrorClass.QUOTA_EXHAUSTED: Action.FALLBACK,
    ErrorClass.AUTH: Action.FALLBACK,
    ErrorClass.PERMISSION: Action.FALLBACK,
    ErrorClass.NOT_FOUND: Action.FALLBACK,
    ErrorClass.CONTEXT_WINDOW: Action.FALLBACK,
    # A safety system's verdict is an answer, not an outage: propagated, never routed around
    # unless a route says so (``on: {content_policy: fallback}``). A refusal the model sent
    # in a reply is then the answer, not an error (router.engine.refusals).
    ErrorClass.CONTENT_POLICY: Action.FAIL,
    ErrorClass.INVALID_REQUEST: Action.FAIL,
    ErrorClass.BUDGET_EXCEEDED: Action.FALLBACK,
    ErrorClass.RATE_LIMITED_LOCALLY: Action.FALLBACK,
    ErrorClass.STORE_UNAVAILABLE: Action.FALLBACK,
    ErrorClass.NO_ROUTE: Action.FAIL,
    # Met only when a replay of a broken stream diverged (router.engine.recover): the next
    # target replays in its turn.
    ErrorClass.STREAM_INTERRUPTED: Action.FALLBACK,
}

#: Classes whose failures count as "retryable" (transient) by default.
RETRYABLE_CLASSES = frozenset(c for c, a in DEFAULT_ACTIONS.items() if a is Action.RETRY)


class RouterError(Exception):
    """Base of every exception router raises on purpose."""


class LlmError(RouterError):
    """A failed LLM call, classified. ``error_class`` is what code should branch on."""

    error_class: ErrorClass = ErrorClass.SERVER  # fixed per subclass, as a class attribute

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        target: str | None = None,
        provider_type: str | None = None,
        provider_code: str | None = None,
        provider_message: str | None = None,
        timeout_kind: str | None = None,
    ) -> None:
        # Messages may quote upstream text that echoes a configured secret: hide it here, once,
        # so str, repr, attempt details, logs and CLI lines all see the redacted text.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = (
            self.error_class in RETRYABLE_CLASSES if retryable is None else retryable
        )
        self.target = target
        self.provider_type = provider_type
        self.provider_code = provider_code
        self.provider_message = None if provider_message is None else redact(provider_message)
        self.timeout_kind = timeout_kind

    def __str__(self) -> str:
        where = f" [{self.target}]" if self.target else ""
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{self.error_class.value}{status}{where}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error_class={self.error_class.value!r}, "
            f"status={self.status!r}, target={self.target!r}, message={self.message!r})"
        )

    def with_target(self, target: str) -> LlmError:
        """Set the target this error came from (once) and return self."""
        if self.target is None:
            self.target = target
        return self


class AuthError(LlmError):
    """The provider rejected the credentials (401)."""

    error_class = ErrorClass.AUTH


class PermissionDeniedError(LlmError):
    """The credentials are valid but not allowed to do this (403)."""

    error_class = ErrorClass.PERMISSION


class NotFoundError(LlmError):
    """The model or endpoint does not exist (404)."""

    error_class = ErrorClass.NOT_FOUND


class InvalidRequestError(LlmError):
    """The request is malformed; it would fail on every provider. ``param`` names the
    offending parameter (``messages[0].role``) when the router's own checks found it."""

    error_class = ErrorClass.INVALID_REQUEST
    param: str | None = None


class ContextWindowError(LlmError):
    """The prompt (plus max tokens) does not fit the model's context window."""

    error_class = ErrorClass.CONTEXT_WINDOW


class ContentPolicyError(LlmError):
    """The provider refused the content (safety or content filter)."""

    error_class = ErrorClass.CONTENT_POLICY


class RateLimitError(LlmError):
    """The provider's rate limit was hit (429, not quota)."""

    error_class = ErrorClass.RATE_LIMIT


class QuotaExhaustedError(LlmError):
    """The account is out of quota or credit (429 insufficient_quota)."""

    error_class = ErrorClass.QUOTA_EXHAUSTED


class OverloadedError(LlmError):
    """The provider is overloaded (529, 503 overloaded)."""

    error_class = ErrorClass.OVERLOADED


class ServerError(LlmError):
    """The provider failed (5xx)."""

    error_class = ErrorClass.SERVER


class TimeoutError_(LlmError):
    """A timeout fired; ``timeout_kind`` says which: connect, first_token, idle, total or
    deadline."""

    error_class = ErrorClass.TIMEOUT


class NetworkError(LlmError):
    """The connection failed or was reset."""

    error_class = ErrorClass.NETWORK


class BudgetExceededError(LlmError):
    """A budget cap would be exceeded."""

    error_class = ErrorClass.BUDGET_EXCEEDED


class RateLimitedLocallyError(LlmError):
    """A local rate limiter refused the call."""

    error_class = ErrorClass.RATE_LIMITED_LOCALLY


class StoreUnavailableError(LlmError):
    """The state store (budgets, rate limits, shared breakers) could not be reached or could
    not be written, and ``on_store_error: fail_closed`` says not to call unaccounted."""

    error_class = ErrorClass.STORE_UNAVAILABLE


class NoRouteError(LlmError):
    """The model name resolves to no target, or every target was skipped."""

    error_class = ErrorClass.NO_ROUTE


class StreamInterruptedError(LlmError):
    """A stream failed after its first chunk reached the caller and could not be recovered
    (``stream.recover``); ``partial_text`` holds what the caller got, ``attempts`` each
    AttemptRecord of the call (the failed ones last)."""

    error_class = ErrorClass.STREAM_INTERRUPTED

    def __init__(self, message: str, *, partial_text: str = "",
                 cause_class: ErrorClass | None = None, attempts: Sequence[Any] = (),
                 cause: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.partial_text = partial_text
        self.cause_class = cause_class
        #: Why the stream could not be recovered: ``resume_diverged`` when the last replay
        #: differed from what the caller had, else the class of the failure that broke it.
        self.cause = cause or (cause_class.value if cause_class is not None else None)
        self.attempts: list[Any] = list(attempts)  # router.types.AttemptRecord each


ERROR_TYPES: dict[ErrorClass, type[LlmError]] = {
    ErrorClass.AUTH: AuthError,
    ErrorClass.PERMISSION: PermissionDeniedError,
    ErrorClass.NOT_FOUND: NotFoundError,
    ErrorClass.INVALID_REQUEST: InvalidRequestError,
    ErrorClass.CONTEXT_WINDOW: ContextWindowError,
    ErrorClass.CONTENT_POLICY: ContentPolicyError,
    ErrorClass.RATE_LIMIT: RateLimitError,
    ErrorClass.QUOTA_EXHAUSTED: QuotaExhaustedError,
    ErrorClass.OVERLOADED: OverloadedError,
    ErrorClass.SERVER: ServerError,
    ErrorClass.TIMEOUT: TimeoutError_,
    ErrorClass.NETWORK: NetworkError,
    ErrorClass.BUDGET_EXCEEDED: BudgetExceededError,
    ErrorClass.RATE_LIMITED_LOCALLY: RateLimitedLocallyError,
    ErrorClass.STORE_UNAVAILABLE: StoreUnavailableError,
    ErrorClass.NO_ROUTE: NoRouteError,
    ErrorClass.STREAM_INTERRUPTED: StreamInterruptedError,
}


def make_error(error_class: ErrorClass, message: str, **kw: Any) -> LlmError:
    """Build the LlmError subclass for ``error_class``."""
    return ERROR_TYPES[error_class](message, **kw)


class RouteFailed(LlmError):
    """Every target of a route failed or was skipped; ``attempts`` holds each AttemptRecord."""

    # ``attempts`` holds router.types.AttemptRecord values; errors does not import types
    # (types imports errors), so the annotation says Any.
    def __init__(self, message: str, *, attempts: Sequence[Any],
                 last_error: LlmError | None, alias: str | None = None) -> None:
        cls = last_error.error_class if last_error is not None else ErrorClass.NO_ROUTE
        super().__init__(
            message,
            status=last_error.status if last_error else None,
            retry_after=last_error.retry_after if last_error else None,
            retryable=last_error.retryable if last_error else False,
            target=last_error.target if last_error else None,
        )
        self.error_class = cls  # the class of the last real attempt
        self.attempts: list[Any] = list(attempts)
        self.last_error = last_error
        self.alias = alias

    def __str__(self) -> str:
        return self.message  # already names the route, the attempts and the last error


class ConfigError(RouterError):
    """A route file (or dict) that cannot be used; ``diagnostics`` lists every problem."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        self.diagnostics = list(diagnostics)
        if self.diagnostics:
            message = message + "\n" + "\n".join(d.format_text() for d in self.diagnostics)
        super().__init__(message)
