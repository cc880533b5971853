"""Anthropic Messages API (``POST {base_url}/v1/messages``).

Wire details live in ``_anthropic_wire`` (request, response, errors) and ``_anthropic_stream``
(stream events); this module does the HTTP exchange and the SSE loop.
Stream protocol: https://docs.anthropic.com/en/api/messages-streaming

Notes for callers:

- ``max_tokens`` is required by the API: when the request has none, the model's output limit
  from the catalog (capped at 8192) is sent, or 4096 for a model the catalog lacks.
- ``response_format`` json_schema is served by a forced *answer tool*; its input comes back as
  ``text`` (streamed as text deltas) and never as a tool call. json_object is a system
  instruction. ``seed`` is not sent (no equivalent).
- ``extra["betas"]`` (a list of beta names, as anthropic-sdk-python's ``betas``) is sent as
  the ``anthropic-beta`` header, after any the provider's configured headers name.
- Extended thinking: ``extra["thinking"]`` is sent as given; otherwise ``reasoning_effort``
  low/medium/high becomes a budget of 1024/4096/16384 tokens. With thinking on, temperature and
  top_p are dropped (the API rejects them) and thinking text goes to ``reasoning`` /
  ``reasoning_delta``, never to ``text``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from router.errors import ErrorClass, LlmError
from router.providers._anthropic_reply import parse_message
from router.providers._anthropic_stream import StreamAssembler
from router.providers._anthropic_wire import build_body
from router.providers._compat_errors import map_compat_error
from router.providers.base import (
    ErrorBody,
    HttpCall,
    HttpPool,
    HttpProvider,
    ProviderConfig,
    classify_status,
    make_status_error,
)
from router.types import ChatRequest, ChatResponse

__all__ = ["DEFAULT_ANTHROPIC_VERSION", "AnthropicProvider", "map_anthropic_error"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_BETA_HEADER = "anthropic-beta"


# --------------------------------------------------------------------------------------------
# Errors (https://docs.anthropic.com/en/api/errors): classified once, here

_TYPE_CLASSES: dict[str, ErrorClass] = {
    "invalid_request_error": ErrorClass.INVALID_REQUEST,
    "authentication_error": ErrorClass.AUTH,
    "billing_error": ErrorClass.QUOTA_EXHAUSTED,
    "permission_error": ErrorClass.PERMISSION,
    "not_found_error": ErrorClass.NOT_FOUND,
    "request_too_large": ErrorClass.CONTEXT_WINDOW,
    "rate_limit_error": ErrorClass.RATE_LIMIT,
    "api_error": ErrorClass.SERVER,
    "timeout_error": ErrorClass.SERVER,  # upstream 504: retry like any 5xx
    "overloaded_error": ErrorClass.OVERLOADED,
}
# Out of credit or over a spend limit: 400 invalid_request_error with one of these messages,
# or 429 rate_limit_error whose details.error_code says so (no retry-after: waiting won't help).
_QUOTA_MESSAGES = ("credit balance is too low", "reached your specified api usage limits",
                   "reached your specified workspace api usage limits",
                   "reached your api usage limits")
_QUOTA_CODES = frozenset({"enforced_spend_limit_reached"})
_PROMPT_TOO_LONG = re.compile(r"prompt is too long:\s*(\d+)\s*tokens")
_CONTEXT_LIMIT = re.compile(r"exceed context limit:\s*(\d+)\s*\+\s*(\d+)\s*>\s*(\d+)")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _needed_tokens(message: str) -> int | None:
    """The prompt size (plus max_tokens, when the message adds them) a context error reports."""
    if m := _PROMPT_TOO_LONG.search(message):
        return int(m.group(1))
    if m := _CONTEXT_LIMIT.search(message):
        return int(m.group(1)) + int(m.group(2))
    return None


def _error_class(status: int | None, err_type: str, code: str, message: str) -> ErrorClass:
    lowered = message.lower()
    if (err_type == "billing_error" or status == 402 or code in _QUOTA_CODES
            or any(q in lowered for q in _QUOTA_MESSAGES)):
        return ErrorClass.QUOTA_EXHAUSTED
    if _needed_tokens(lowered) is not None or "prompt is too long" in lowered:
        return ErrorClass.CONTEXT_WINDOW
    by_type = _TYPE_CLASSES.get(err_type)
    if by_type is not None:
        return by_type
    return classify_status(status) if status is not None else ErrorClass.SERVER


def map_anthropic_error(status: int | None, headers: Mapping[str, str], body: ErrorBody, *,
                        secrets: tuple[str, ...] = ()) -> LlmError:
    """The LlmError for ``{"type": "error", "error": {"type", "message", "details"?}}``
    (status None for an ``error`` event inside a 200 stream). A context-window error carries
    ``needed_tokens`` when the message states it."""
    err = body.error_object()
    err_type = _str(err.get("type"))
    details = err.get("details")
    code = _str(details.get("error_code")) if isinstance(details, dict) else ""
    message = _str(err.get("message")) or body.text
    error_class = _error_class(status, err_type, code, message)
    error = make_status_error(
        error_class, status, headers,
        provider_message=message,
        provider_type=err_type or None,
        provider_code=code or None,
        # Out of credit is not fixed by waiting, whatever x-should-retry says.
        retryable=False if error_class is ErrorClass.QUOTA_EXHAUSTED else None,
        secrets=secrets,
    )
    if error_class is ErrorClass.CONTEXT_WINDOW:
        error.needed_tokens = _needed_tokens(message.lower())  # type: ignore[attr-defined]
    if err_type not in _TYPE_CLASSES:  # not Anthropic's words: an engine's (llama-server...)
        return map_compat_error(status, headers, body, fallback=error, secrets=secrets)
    return error


# --------------------------------------------------------------------------------------------
# The provider


class AnthropicProvider(HttpProvider):
    """api.anthropic.com: ``x-api-key`` and ``anthropic-version`` headers.

    Options: ``anthropic_version`` (default 2023-06-01), ``capabilities`` (overrides of what
    the catalog says of every model). Config ``headers`` (e.g. ``anthropic-beta``) are sent too.
    Capabilities: the catalog's facts of each model; json_schema always (the answer tool).
    """

    kind: ClassVar[str] = "anthropic"
    terminator: ClassVar[str] = "message_stop"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base_url = (config.base_url or self.default_base_url or "").rstrip("/")
        self._url = base_url + "/v1/messages"
        version = config.options.get("anthropic_version") or DEFAULT_ANTHROPIC_VERSION
        auth = {"anthropic-version": str(version)}
        if self._secret:
            auth["x-api-key"] = self._secret
        self._headers, self._stream_headers = self.headers(auth)

    def request(self, model: str, request: ChatRequest, *, stream: bool) -> HttpCall:
        headers = self._stream_headers if stream else self._headers
        if "betas" in request.extra:
            request, headers = self._betas(request, headers)
        body, answer = build_body(model, request, stream=stream)
        if stream:
            return HttpCall(self._url, body, headers, model, StreamAssembler(answer), answer)
        return HttpCall(self._url, body, headers, model, None, answer)

    @staticmethod
    def _betas(request: ChatRequest, headers: dict[str, str]) -> tuple[ChatRequest,
                                                                        dict[str, str]]:
        """``extra["betas"]`` out of the body and into the ``anthropic-beta`` header (added
        to a configured one)."""
        extra = dict(request.extra)
        betas = extra.pop("betas")  # beta names (checked with the request: router.engine)
        headers = dict(headers)
        name = next((h for h in headers if h.lower() == _BETA_HEADER), _BETA_HEADER)
        names = [b.strip() for b in headers.get(name, "").split(",") if b.strip()]
        names += [b for b in betas if b not in names]
        if names:
            headers[name] = ",".join(names)
        return replace(request, extra=extra), headers

    def parse_reply(self, data: Any, call: HttpCall) -> ChatResponse:
        return parse_message(data, call.model, call.context)

    def is_error(self, data: Any, event: str | None) -> bool:
        return event == "error" or (isinstance(data, dict) and data.get("type") == "error")

    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        return map_anthropic_error(status, headers, body, secrets=self._secrets)
