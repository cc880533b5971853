"""How the engines behind the openai-compatible kind word their failures, as data.

Each engine (vLLM, llama.cpp's llama-server, Hugging Face TGI, LM Studio, Ollama's /v1, Groq,
Together, Fireworks, DeepSeek, Mistral, OpenRouter) answers a prompt that is too long, a spent
balance or a busy server in its own words and shapes. ``ROWS`` lists them, each with its
source; ``TOKEN_PATTERNS`` lists where a message states the prompt's real token count. Both are
read only when a call has failed: a success never touches this module.

A row matches when every condition it sets holds (status, type, code, a lower-cased substring
of the message, a key of the error's ``metadata``); the first matching row wins, so specific
rows come before broad ones. Wording no row knows is left to the OpenAI mapping
(``_openai_errors.map_openai_error``), as before; the route file's ``errors:`` rules are applied
after this, by the engine, and still win. To teach the router a new engine, add a row with
its source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from router.errors import ErrorClass, LlmError
from router.providers._status import ErrorBody, make_status_error

__all__ = ["ROWS", "TOKEN_PATTERNS", "ErrorFields", "Row", "error_fields", "find_row",
           "map_compat_error", "prompt_tokens"]

_CTX = ErrorClass.CONTEXT_WINDOW
_RATE = ErrorClass.RATE_LIMIT
_QUOTA = ErrorClass.QUOTA_EXHAUSTED
_BUSY = ErrorClass.OVERLOADED
_POLICY = ErrorClass.CONTENT_POLICY
_INVALID = ErrorClass.INVALID_REQUEST


@dataclass(frozen=True, slots=True)
class Row:
    """One way an engine words one failure. ``statuses`` None: any status, and an error event
    inside a 200 stream (no status); ``match`` is lower-case; ``retryable`` None keeps the
    class's default (and ``x-should-retry``)."""

    engine: str
    error_class: ErrorClass
    statuses: frozenset[int] | None = None
    type: str | None = None
    code: str | None = None
    match: str | None = None
    metadata: str | None = None
    retryable: bool | None = None


def _s(*statuses: int) -> frozenset[int]:
    return frozenset(statuses)


ROWS: tuple[Row, ...] = (
    # -- context overflow -----------------------------------------------------------------
    # llama.cpp tools/server/server-common.cpp format_error_response: type
    # "exceed_context_size_error", code 400; server-context.cpp: "request (%d tokens) exceeds
    # the available context size (%d tokens), try increasing it"; server-task.cpp adds
    # n_prompt_tokens and n_ctx to the error object (also on its /v1/messages).
    Row("llama-server", _CTX, type="exceed_context_size_error"),
    Row("llama-server", _CTX, match="exceeds the available context size"),
    # vLLM entrypoints/openai/serving_engine.py (<= 0.5, top-level {"object": "error", ...}):
    # "This model's maximum context length is N tokens. However, you requested M tokens
    # (X in the messages, Y in the completion)"; 0.10-0.17: "... your request has N input
    # tokens"; "'max_tokens' or 'max_completion_tokens' is too large: ..." (all 400
    # BadRequestError, {"error": {...}} from 0.10).
    Row("vllm", _CTX, statuses=_s(400), match="maximum context length is"),
    # vLLM renderers/params.py _token_len_check / _text_len_check: "You passed N input tokens
    # and requested M output tokens. However, the model's context length is only C tokens".
    Row("vllm", _CTX, statuses=_s(400), match="the model's context length is only"),
    # TGI router/src/validation.rs ValidationError::MaxTotalTokens / InputLength, answered
    # 422 {"error": "Input validation error: ...", "error_type": "validation"} by server.rs,
    # and mid-stream as {"error": {"message": ..., "http_status_code": 422}}
    # (infer/mod.rs into_openai_event).
    Row("tgi", _CTX, match="`inputs` tokens + `max_new_tokens` must be <="),
    Row("tgi", _CTX, match="`inputs` must have less than"),
    # LM Studio (lmstudio-ai/lmstudio-bug-tracker issues 237, 546): "Trying to keep the first
    # N tokens when context the overflows. However, the model is loaded with context length of
    # only C tokens"; its llama.cpp engine: "Cannot truncate prompt with n_keep (N) >= n_ctx
    # (C)" (anomalyco/opencode issue 11141); its MLX engine: "Context size has been exceeded"
    # (lmstudio-bug-tracker issue 2339).
    Row("lm-studio", _CTX, match="when context the overflows"),
    Row("lm-studio", _CTX, match="cannot truncate prompt with n_keep"),
    Row("lm-studio", _CTX, match="context size has been exceeded"),
    # Ollama: 400 {"error": "prompt too long; exceeded max context length by N tokens"}
    # (recorded bodies quoted in openclaw and pi-mono issue threads).
    Row("ollama", _CTX, statuses=_s(400), match="prompt too long; exceeded"),
    # Mistral (docs.mistral.ai known limitations): "Prompt contains N tokens ..., too large
    # for model with C maximum context length".
    Row("mistral", _CTX, match="too large for model with"),
    # Together (docs.together.ai/docs/error-codes): 403 "Input token count + max_tokens
    # parameter must be less than the context length of the model"; recorded 400 "The input
    # (N tokens) is longer than the model's context length (C tokens)."
    Row("together", _CTX, statuses=_s(403), match="context length"),
    Row("together", _CTX, statuses=_s(400), match="longer than the model's context length"),
    # -- rate limits ----------------------------------------------------------------------
    # Groq: 413 {"error": {"message": "Request too large for model ... on tokens per minute
    # (TPM): Limit 6000, Requested 14368 ...", "type": "tokens", "code": "rate_limit_exceeded"}}
    # (assafelovic/gpt-researcher issue 985): a request over the per-minute limit never fits,
    # so the next target, not a wait.
    Row("groq", _RATE, statuses=_s(413), code="rate_limit_exceeded", retryable=False),
    # Mistral: 429 {"object": "error", "message": "Rate limit exceeded", "type":
    # "rate_limited", "code": "1300"} (cline/cline issue 9085).
    Row("mistral", _RATE, type="rate_limited"),
    # -- quota, balance, credits ----------------------------------------------------------
    # 402 Payment Required: DeepSeek "Insufficient Balance" (api-docs.deepseek.com
    # quick_start/error_codes), Together "reached its maximum allowed monthly spending limit"
    # (docs.together.ai/docs/error-codes), Fireworks "exceeded usage limits"
    # (docs.fireworks.ai inference error codes), OpenRouter "insufficient credits"
    # (openrouter.ai/docs/api/reference/errors-and-debugging).
    Row("deepseek/together/fireworks/openrouter", _QUOTA, statuses=_s(402), retryable=False),
    # -- overloaded -----------------------------------------------------------------------
    # TGI server.rs: InferError::Overloaded is 429 {"error": "Model is overloaded",
    # "error_type": "overloaded"}: the server is busy, not the caller over a limit.
    Row("tgi", _BUSY, type="overloaded"),
    # Groq (console.groq.com/docs/errors): 498 Flex Tier Capacity Exceeded.
    Row("groq", _BUSY, statuses=_s(498)),
    # Mistral: {"object": "error", "message": "Service tier capacity exceeded for this
    # model.", "type": "invalid_request_error"} (continuedev/continue issue 6185; a 503 per
    # BerriAI/litellm pull 25078).
    Row("mistral", _BUSY, match="service tier capacity exceeded"),
    # llama-server: ERROR_TYPE_UNAVAILABLE is 503 "unavailable_error" ("Loading model").
    Row("llama-server", _BUSY, type="unavailable_error"),
    # -- content filter -------------------------------------------------------------------
    # DeepSeek: 400 {"error": {"message": "Content Exists Risk", "type":
    # "invalid_request_error", ...}} (recorded in public client test suites).
    Row("deepseek", _POLICY, match="content exists risk"),
    # OpenRouter: 403 when the model requires moderation and the input was flagged; the
    # error's metadata holds reasons and flagged_input (openrouter.ai errors docs).
    Row("openrouter", _POLICY, statuses=_s(403), metadata="flagged_input"),
    # -- validation -----------------------------------------------------------------------
    # TGI answers every other validation error with 422 "validation": fails everywhere.
    Row("tgi", _INVALID, type="validation"),
)

#: Where a message states the prompt's real token count (first group), per engine.
TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"request \((\d+) tokens\) exceeds",  # llama-server (server-context.cpp)
    r"\((\d+) in the messages",  # vLLM <= 0.5 (serving_engine.py)
    r"your request has (\d+) input tokens",  # vLLM 0.10-0.17
    r"you passed (\d+) input tokens",  # vLLM renderers/params.py
    r"your prompt contains (?:at least )?(\d+) input tokens",  # vLLM 0.18+
    r"given: (\d+) `inputs` tokens",  # TGI MaxTotalTokens
    r"`inputs` must have less than \d+ tokens\. given: (\d+)",  # TGI InputLength
    r"trying to keep the first (\d+) tokens",  # LM Studio
    r"n_keep \((\d+)\) >= n_ctx",  # LM Studio's llama.cpp engine
    r"prompt contains (\d+) tokens",  # Mistral
    r"\((\d+) of text input",  # OpenRouter ("you requested about M tokens (X of text input")
    r"the input \((\d+) tokens\) is longer",  # Together
))
#: Error-object fields that hold the prompt's token count (llama-server's server-task.cpp).
TOKEN_FIELDS = ("n_prompt_tokens",)


class ErrorFields(NamedTuple):
    """An error body's type, code, message and metadata, whatever its shape."""

    type: str
    code: str
    message: str
    metadata: Mapping[str, Any]
    error: Mapping[str, Any]


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def error_fields(body: ErrorBody) -> ErrorFields:
    """Read ``{"error": {...}}`` (OpenAI and most engines), ``{"error": "text", "error_type"}``
    (TGI) and top-level ``{"object": "error", "message", "type", "code"}`` (vLLM <= 0.5,
    Mistral) alike; a body that is no JSON object gives its text as the message."""
    data = body.json if isinstance(body.json, dict) else {}
    err = data.get("error")
    obj: Mapping[str, Any]
    if isinstance(err, dict):
        obj = err
    elif isinstance(err, str):
        obj = {"message": err, "type": data.get("error_type")}
    else:
        obj = data
    meta = obj.get("metadata")
    return ErrorFields(_str(obj.get("type")), _str(obj.get("code")),
                       _str(obj.get("message")) or body.text,
                       meta if isinstance(meta, dict) else {}, obj)


def find_row(status: int | None, fields: ErrorFields) -> Row | None:
    """The first row that matches, or None."""
    lowered = fields.message.lower()
    for row in ROWS:
        if ((row.statuses is None or status in row.statuses)
                and (row.type is None or row.type == fields.type)
                and (row.code is None or row.code == fields.code)
                and (row.match is None or row.match in lowered)
                and (row.metadata is None or row.metadata in fields.metadata)):
            return row
    return None


def prompt_tokens(fields: ErrorFields) -> int | None:
    """The prompt's token count the server reports, from a field or the message."""
    for name in TOKEN_FIELDS:
        value = fields.error.get(name)
        if type(value) is int and value > 0:
            return value
    lowered = fields.message.lower()
    for pattern in TOKEN_PATTERNS:
        if m := pattern.search(lowered):
            return int(m.group(1))
    return None


def map_compat_error(status: int | None, headers: Mapping[str, str], body: ErrorBody, *,
                     fallback: LlmError, secrets: tuple[str, ...] = ()) -> LlmError:
    """The LlmError of an engine's error body: a row's class when one matches, else
    ``fallback`` (the kind's own verdict, unchanged). A context-window error carries
    ``needed_tokens``, the prompt's tokens as the server counted them, when it says."""
    fields = error_fields(body)
    row = find_row(status, fields)
    error = fallback if row is None else make_status_error(
        row.error_class, status, headers, provider_message=fields.message,
        provider_type=fields.type or None, provider_code=fields.code or None,
        retryable=row.retryable, secrets=secrets)
    if error.error_class is ErrorClass.CONTEXT_WINDOW:
        counted = prompt_tokens(fields)
        if counted is not None:
            error.needed_tokens = counted  # type: ignore[attr-defined]
    return error
