"""The openai-compatible kind classifies the errors of the engines users point it at (issue 12).

Every body below is an engine's own, taken from its source, its docs or a recorded reply
(each case names where), sent by a loopback server as the engine sends it: as the HTTP error
of a call, and as an error event inside a 200 stream cut into random pieces. Every row of
``router.providers._compat_errors.ROWS`` is exercised by at least one case.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import pytest
from pydantic import SecretStr

from router import Router
from router.errors import ErrorClass, LlmError
from router.providers._compat_errors import ROWS, error_fields, find_row
from router.providers._status import ErrorBody
from router.providers.anthropic import AnthropicProvider
from router.providers.base import HttpPool, ProviderConfig
from router.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from router.specs import Timeouts
from router.types import ChatChunk, ChatRequest, Message
from tests.engine_helpers import MSG, chat_path, hits, route_file
from tests.servers.anthropic import MESSAGES_PATH, AnthropicServer
from tests.servers.openai import OpenAIServer, chunk, completion, json_reply, stream_reply

TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)

#: The body llama-server sends for a prompt over its context (issue 12; llama.cpp
#: tools/server/server-common.cpp format_error_response + server-task.cpp to_json).
LLAMA_OVERFLOW = {"error": {
    "code": 400, "type": "exceed_context_size_error",
    "message": "request (609 tokens) exceeds the available context size (256 tokens), try "
               "increasing it", "n_prompt_tokens": 609, "n_ctx": 256}}


class Case(NamedTuple):
    id: str
    status: int
    body: Any
    error_class: ErrorClass
    tokens: int | None = None  # the prompt tokens the server counted
    retryable: bool | None = None


CASES = [
    Case("llama-server overflow", 400, LLAMA_OVERFLOW, ErrorClass.CONTEXT_WINDOW, 609),
    # the message alone (an older llama-server build without the counts fields)
    Case("llama-server overflow message", 400, {"error": {
        "code": 400, "type": "invalid_request_error", "message": "request (5000 tokens) exceeds "
        "the available context size (4096 tokens), try increasing it"}},
        ErrorClass.CONTEXT_WINDOW, 5000),
    # server-common.cpp ERROR_TYPE_UNAVAILABLE while the model loads
    Case("llama-server loading", 503, {"error": {
        "code": 503, "message": "Loading model", "type": "unavailable_error"}},
        ErrorClass.OVERLOADED),
    # vLLM <= 0.5 serving_engine.py _validate_prompt_and_tokenize, create_error_response shape
    Case("vllm 0.5 overflow", 400, {
        "object": "error", "message": "This model's maximum context length is 4096 tokens. "
        "However, you requested 4222 tokens (1222 in the messages, 3000 in the completion). "
        "Please reduce the length of the messages or completion.",
        "type": "BadRequestError", "param": None, "code": 400}, ErrorClass.CONTEXT_WINDOW, 1222),
    # vLLM 0.10-0.17 (recorded: whois-api-llc/web-categorization-v2 docs, opsconductor-ng docs)
    Case("vllm input overflow", 400, {"error": {
        "message": "This model's maximum context length is 1536 tokens. However, your request "
        "has 4176 input tokens. Please reduce the length of the input messages. None",
        "type": "BadRequestError", "param": None, "code": 400}}, ErrorClass.CONTEXT_WINDOW, 4176),
    Case("vllm max_tokens overflow", 400, {"error": {
        "message": "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's "
        "maximum context length is 4096 tokens and your request has 2778 input tokens (8000 > "
        "4096 - 2778). None", "type": "BadRequestError", "param": None, "code": 400}},
        ErrorClass.CONTEXT_WINDOW, 2778),
    # vLLM renderers/params.py _token_len_check (VLLMValidationError appends the parameter)
    Case("vllm renderer overflow", 400, {"error": {
        "message": "You passed 5000 input tokens and requested 100 output tokens. However, the "
        "model's context length is only 4096 tokens, resulting in a maximum input length of "
        "3996 tokens. Please reduce the length of the input prompt. (parameter=input_tokens, "
        "value=5000)", "type": "BadRequestError", "param": "input_tokens", "code": 400}},
        ErrorClass.CONTEXT_WINDOW, 5000),
    # vLLM 0.18+ (recorded in rlm's tests through OpenRouter)
    Case("vllm 0.18 overflow", 400, {"error": {
        "message": "This model's maximum context length is 262144 tokens. However, you "
        "requested 4096 output tokens and your prompt contains at least 258049 input tokens.",
        "type": "BadRequestError", "param": None, "code": 400}},
        ErrorClass.CONTEXT_WINDOW, 258049),
    # TGI router/src/validation.rs + server.rs (422, error_type validation / 429 overloaded)
    Case("tgi total tokens", 422, {
        "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
        "Given: 4000 `inputs` tokens and 200 `max_new_tokens`", "error_type": "validation"},
        ErrorClass.CONTEXT_WINDOW, 4000),
    Case("tgi input length", 422, {
        "error": "Input validation error: `inputs` must have less than 1024 tokens. Given: 2000",
        "error_type": "validation"}, ErrorClass.CONTEXT_WINDOW, 2000),
    Case("tgi other validation", 422, {
        "error": "Input validation error: `temperature` must be strictly positive",
        "error_type": "validation"}, ErrorClass.INVALID_REQUEST),
    Case("tgi overloaded", 429, {"error": "Model is overloaded", "error_type": "overloaded"},
         ErrorClass.OVERLOADED),
    # LM Studio (lmstudio-bug-tracker 546, dyad-sh/dyad 925; opencode 11141; bug-tracker 2339)
    Case("lm-studio keep first", 400, {
        "error": "Trying to keep the first 6547 tokens when context the overflows. However, the "
        "model is loaded with context length of only 4096 tokens, which is not enough. Try to "
        "load the model with a larger context length, or provide a shorter input"},
        ErrorClass.CONTEXT_WINDOW, 6547),
    Case("lm-studio n_keep", 400, {
        "error": "Cannot truncate prompt with n_keep (15028) >= n_ctx (7424)"},
        ErrorClass.CONTEXT_WINDOW, 15028),
    Case("lm-studio mlx", 400, {"error": "Context size has been exceeded."},
         ErrorClass.CONTEXT_WINDOW),
    # Ollama (recorded body quoted in an openclaw test)
    Case("ollama prompt too long", 400, {
        "StatusCode": 400, "Status": "400 Bad Request",
        "error": "prompt too long; exceeded max context length by 4 tokens"},
        ErrorClass.CONTEXT_WINDOW),
    # Mistral (message recorded in several clients' overflow tests; 429 from cline issue 9085;
    # capacity from continuedev/continue issue 6185, a 503 per BerriAI/litellm pull 25078)
    Case("mistral overflow", 400, {
        "object": "error", "message": "Prompt contains 300000 tokens, too large for model with "
        "131072 maximum context length", "type": "invalid_request_error", "param": None,
        "code": None}, ErrorClass.CONTEXT_WINDOW, 300000),
    Case("mistral rate limited", 429, {
        "object": "error", "message": "Rate limit exceeded", "type": "rate_limited",
        "param": None, "code": "1300"}, ErrorClass.RATE_LIMIT),
    Case("mistral capacity", 503, {
        "object": "error", "message": "Service tier capacity exceeded for this model.",
        "type": "invalid_request_error", "param": None, "code": None}, ErrorClass.OVERLOADED),
    # Groq (recorded: assafelovic/gpt-researcher issue 985; console.groq.com/docs/errors)
    Case("groq tpm too large", 413, {"error": {
        "message": "Request too large for model `llama-3.1-70b-versatile` in organization "
        "`org_01` on tokens per minute (TPM): Limit 6000, Requested 14368, please reduce your "
        "message size and try again.", "type": "tokens", "code": "rate_limit_exceeded"}},
        ErrorClass.RATE_LIMIT, retryable=False),
    Case("groq flex capacity", 498, {"error": {
        "message": "Flex tier capacity exceeded", "type": "capacity_exceeded"}},
        ErrorClass.OVERLOADED),
    Case("groq context", 400, {"error": {
        "message": "Please reduce the length of the messages or completion.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
        ErrorClass.CONTEXT_WINDOW),
    # Together (docs.together.ai/docs/error-codes; 400 wording recorded in client tests)
    Case("together spend limit", 402, {"error": {
        "message": "The account associated with the API key has reached its maximum allowed "
        "monthly spending limit.", "type": "invalid_request_error"}},
        ErrorClass.QUOTA_EXHAUSTED, retryable=False),
    Case("together 403 context", 403, {"error": {
        "message": "Input token count + max_tokens parameter must be less than the context "
        "length of the model being queried.", "type": "invalid_request_error"}},
        ErrorClass.CONTEXT_WINDOW),
    Case("together input longer", 400, {"error": {
        "message": "The input (516368 tokens) is longer than the model's context length "
        "(262144 tokens).", "type": "invalid_request_error"}}, ErrorClass.CONTEXT_WINDOW, 516368),
    # Fireworks (docs.fireworks.ai inference error codes)
    Case("fireworks payment", 402, {"error": {
        "message": "Account is not on a paid plan or has exceeded usage limits.",
        "type": "invalid_request_error"}}, ErrorClass.QUOTA_EXHAUSTED, retryable=False),
    # DeepSeek (api-docs.deepseek.com error codes; bodies recorded in client test suites)
    Case("deepseek balance", 402, {"error": {
        "message": "Insufficient Balance", "type": "unknown_error",
        "code": "invalid_request_error"}}, ErrorClass.QUOTA_EXHAUSTED, retryable=False),
    Case("deepseek content risk", 400, {"error": {
        "message": "Content Exists Risk", "type": "invalid_request_error", "param": None,
        "code": "invalid_request_error"}}, ErrorClass.CONTENT_POLICY),
    # OpenRouter (openrouter.ai/docs/api/reference/errors-and-debugging; 400 recorded in
    # refly-ai/refly issue 1177)
    Case("openrouter credits", 402, {"error": {
        "code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/"
        "credits"}}, ErrorClass.QUOTA_EXHAUSTED, retryable=False),
    Case("openrouter moderation", 403, {"error": {
        "code": 403, "message": "openai/gpt-4o requires moderation on OpenAI. Your input was "
        "flagged for \"violence\".", "metadata": {
            "reasons": ["violence"], "flagged_input": "...", "provider_name": "OpenAI",
            "model_slug": "openai/gpt-4o"}}}, ErrorClass.CONTENT_POLICY),
    Case("openrouter overflow", 400, {"error": {
        "code": 400, "message": "This endpoint's maximum context length is 32768 tokens. "
        "However, you requested about 42832 tokens (42832 of text input). Please reduce the "
        "length of either one, or use the \"middle-out\" transform to compress your prompt "
        "automatically."}}, ErrorClass.CONTEXT_WINDOW, 42832),
    # Unknown wording stays as today: the status decides.
    Case("unknown 400", 400, {"error": {"message": "something else went wrong", "code": 400}},
         ErrorClass.INVALID_REQUEST),
    Case("unknown 429", 429, {"error": {"message": "slow down"}}, ErrorClass.RATE_LIMIT),
]
IDS = [c.id for c in CASES]


def compatible(server: OpenAIServer, pool: HttpPool) -> OpenAICompatibleProvider:
    config = ProviderConfig(name="local", kind="openai-compatible", base_url=server.base_url,
                            api_key=None, headers={}, options={})
    return OpenAICompatibleProvider(config, pool)


def ask() -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="hi")], max_tokens=16)


def check(err: LlmError, case: Case, *, status: int | None) -> None:
    assert err.error_class is case.error_class, err
    assert err.status == status
    assert getattr(err, "needed_tokens", None) == case.tokens
    if case.retryable is not None:
        assert err.retryable is case.retryable


def test_every_row_has_a_case() -> None:
    hit = {find_row(c.status, error_fields(ErrorBody(json.dumps(c.body), c.body)))
           for c in CASES}
    missing = [r for r in ROWS if r not in hit]
    assert not missing, missing


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_http_error_is_classified(case: Case, openai_server: OpenAIServer,
                                        http_pool: HttpPool) -> None:
    openai_server.enqueue(json_reply(case.body, status=case.status))
    with pytest.raises(LlmError) as info:
        await compatible(openai_server, http_pool).chat("m", ask(), TIMEOUTS)
    check(info.value, case, status=case.status)


async def drain(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


def _fields(case: Case) -> Any:
    return error_fields(ErrorBody(json.dumps(case.body), case.body))


#: Cases an engine can send mid-stream: an ``error`` event (the shape streams use) whose class
#: does not hang on the HTTP status.
STREAMED = [c for c in CASES if "error" in c.body
            and (row := find_row(None, _fields(c))) is not None
            and row is find_row(c.status, _fields(c))]


@pytest.mark.parametrize("case", STREAMED, ids=[c.id for c in STREAMED])
@pytest.mark.parametrize("seed", [1, 2])
async def test_stream_error_event_is_classified(case: Case, seed: int,
                                                http_pool: HttpPool) -> None:
    async with OpenAIServer(seed=seed) as server:
        server.enqueue(stream_reply([case.body], done=False, piece_sizes=(1, 7)))
        with pytest.raises(LlmError) as info:
            await drain(compatible(server, http_pool).stream("m", ask(), TIMEOUTS))
    check(info.value, case, status=None)


async def test_tgi_stream_error_event(http_pool: HttpPool) -> None:
    """TGI's mid-stream error (infer/mod.rs into_openai_event) after some text."""
    event = {"error": {"message": "Input validation error: `inputs` tokens + `max_new_tokens` "
                                  "must be <= 4096. Given: 4000 `inputs` tokens and 200 "
                                  "`max_new_tokens`", "http_status_code": 422}}
    async with OpenAIServer(seed=5) as server:
        server.enqueue(stream_reply([event], done=False, piece_sizes=(1, 5)))
        with pytest.raises(LlmError) as info:
            await drain(compatible(server, http_pool).stream("m", ask(), TIMEOUTS))
    assert info.value.error_class is ErrorClass.CONTEXT_WINDOW
    assert getattr(info.value, "needed_tokens", None) == 4000


@pytest.mark.parametrize("case", [c for c in CASES if c.id.startswith("llama")],
                         ids=lambda c: c.id)
async def test_stream_request_refused_before_streaming(case: Case, openai_server: OpenAIServer,
                                                       http_pool: HttpPool) -> None:
    openai_server.enqueue(json_reply(case.body, status=case.status))
    with pytest.raises(LlmError) as info:
        await drain(compatible(openai_server, http_pool).stream("m", ask(), TIMEOUTS))
    check(info.value, case, status=case.status)


async def test_the_openai_kind_keeps_its_own_mapping(openai_server: OpenAIServer,
                                                     http_pool: HttpPool) -> None:
    """The table is the compatible kind's: api.openai.com's 402 is what OpenAI's map says."""
    openai_server.enqueue(json_reply({"error": {"message": "Insufficient Balance"}}, status=402))
    config = ProviderConfig(name="openai", kind="openai", base_url=openai_server.base_url,
                            api_key=SecretStr("sk-test-key"), headers={}, options={})
    with pytest.raises(LlmError) as info:
        await OpenAIProvider(config, http_pool).chat("gpt-4o-mini", ask(), TIMEOUTS)
    assert info.value.error_class is ErrorClass.INVALID_REQUEST


async def test_llama_server_messages_endpoint_is_classified_on_the_anthropic_kind(
        http_pool: HttpPool) -> None:
    """llama-server answers its Anthropic-style /v1/messages with the same body."""
    async with AnthropicServer(validate=False) as server:
        server.enqueue(json_reply(LLAMA_OVERFLOW, status=400), path=MESSAGES_PATH)
        config = ProviderConfig(name="llama", kind="anthropic",
                                base_url=f"http://127.0.0.1:{server.port}",
                                api_key=SecretStr("sk-test-key"),
                                headers={}, options={})
        with pytest.raises(LlmError) as info:
            await AnthropicProvider(config, http_pool).chat("m", ask(), TIMEOUTS)
    assert info.value.error_class is ErrorClass.CONTEXT_WINDOW
    assert getattr(info.value, "needed_tokens", None) == 609


# -- through the Router -------------------------------------------------------------------------


def windows(port: int, **sizes: int) -> dict[str, Any]:
    return route_file(port, {"chat": [f"{n}:m" for n in sizes]}, providers={
        n: {"models": {"m": {"context_window": w}}} for n, w in sizes.items()})


async def test_chain_skips_a_window_smaller_than_the_counted_prompt() -> None:
    """llama-server counted 609 prompt tokens where the router estimated a handful: the 512
    window is skipped (context_window) and the 4096 one answers."""
    async with OpenAIServer() as server:
        server.enqueue(json_reply(LLAMA_OVERFLOW, status=400), path=chat_path("small"))
        server.enqueue(json_reply(completion("ok")), path=chat_path("big"))
        async with Router.from_dict(windows(server.port, small=256, middle=512,
                                            big=4096)) as router:
            r = await router.chat("chat", messages=MSG, max_tokens=16)
        assert r.text == "ok" and r.target == "big:m"
        assert [(a.target, a.outcome, a.reason or (a.error_class and a.error_class.value))
                for a in r.attempts] == [("small:m", "error", "context_window"),
                                         ("middle:m", "skipped", "context_window"),
                                         ("big:m", "ok", None)]
        assert "609" in (r.attempts[1].detail or "")
        assert hits(server, "middle") == 0


async def test_without_a_count_the_next_larger_window_is_tried() -> None:
    """A context error that states no count: only windows up to the failed one are ruled out."""
    body = {"error": {"code": 400, "type": "exceed_context_size_error",
                      "message": "the request exceeds the available context size, try "
                                 "increasing it"}}
    async with OpenAIServer() as server:
        server.enqueue(json_reply(body, status=400), path=chat_path("small"))
        server.enqueue(json_reply(completion("ok")), path=chat_path("middle"))
        async with Router.from_dict(windows(server.port, small=256, middle=512,
                                            big=4096)) as router:
            r = await router.chat("chat", messages=MSG, max_tokens=16)
        assert r.target == "middle:m"


async def test_error_rules_still_win() -> None:
    """A route file rule that calls the overflow invalid_request fails the call at once."""
    async with OpenAIServer() as server:
        server.enqueue(json_reply(LLAMA_OVERFLOW, status=400), path=chat_path("small"))
        data = windows(server.port, small=256, big=4096)
        data["errors"] = [{"provider": "small", "type": "exceed_context_size_error",
                           "class": "invalid_request"}]
        async with Router.from_dict(data) as router:
            with pytest.raises(LlmError) as info:
                await router.chat("chat", messages=MSG, max_tokens=16)
        assert info.value.error_class is ErrorClass.INVALID_REQUEST
        assert hits(server, "big") == 0


async def test_stream_falls_back_on_a_counted_overflow() -> None:
    async with OpenAIServer(seed=3) as server:
        server.enqueue(json_reply(LLAMA_OVERFLOW, status=400), path=chat_path("small"))
        server.enqueue(stream_reply([chunk({"content": "o"}), chunk({"content": "k"}),
                                     chunk({}, finish_reason="stop")]), path=chat_path("big"))
        async with Router.from_dict(windows(server.port, small=256, middle=512,
                                            big=4096)) as router:
            text = "".join([c.delta async for c in router.stream("chat", messages=MSG,
                                                                  max_tokens=16)])
        assert text == "ok" and hits(server, "middle") == 0
