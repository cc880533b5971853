"""AzureOpenAIProvider against the loopback resource in tests/servers/azure.py (Azure's paths,
query strings, headers, content-filter annotations and error bodies)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from router.errors import (
    AuthError,
    ConfigError,
    ContentPolicyError,
    ContextWindowError,
    LlmError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from router.providers.azure import DEFAULT_API_VERSION, AzureOpenAIProvider
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.types import ChatChunk, ChatRequest, Message, ToolCall
from tests.servers.azure import (
    AzureServer,
    Reply,
    azure_completion,
    azure_error_body,
    azure_error_reply,
    azure_text_events,
    chunk,
    deployment_path,
    json_reply,
    stream_reply,
    usage,
)
from tests.servers.openai import tool_call

KEY = "0123456789abcdef0123456789abcdef"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)


@pytest.fixture
async def server() -> AsyncIterator[AzureServer]:
    async with AzureServer() as s:
        yield s


def azure(server: AzureServer, pool: HttpPool, *, key: str | None = KEY,
          headers: dict[str, str] | None = None, **options: Any) -> AzureOpenAIProvider:
    config = ProviderConfig(name="azure", kind="azure-openai", base_url=server.base_url,
                            api_key=SecretStr(key) if key else None, headers=headers or {},
                            options=options)
    return AzureOpenAIProvider(config, pool)


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


async def chat_error(server: AzureServer, pool: HttpPool, reply: Reply) -> LlmError:
    server.enqueue(reply)
    with pytest.raises(LlmError) as info:
        await azure(server, pool).chat("gpt-4o", ask(), TIMEOUTS)
    return info.value


# -- what is sent -----------------------------------------------------------------------------


async def test_posts_to_deployment_path_with_default_api_version(server: AzureServer,
                                                                 http_pool: HttpPool) -> None:
    await azure(server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert server.requests[0].path == "/openai/deployments/gpt-4o/chat/completions"
    assert server.queries[0].getall("api-version") == [DEFAULT_API_VERSION]


async def test_deployments_option_maps_model_to_deployment(server: AzureServer,
                                                           http_pool: HttpPool) -> None:
    server.enqueue(json_reply(azure_completion()), deployment="chat-prod-eu")
    p = azure(server, http_pool, deployments={"gpt-4o-mini": "chat-prod-eu"})
    r = await p.chat("gpt-4o-mini", ask(), TIMEOUTS)
    assert r.text == "Hello!" and server.requests[0].path == deployment_path("chat-prod-eu")


async def test_api_version_option_is_sent(server: AzureServer, http_pool: HttpPool) -> None:
    await azure(server, http_pool, api_version="2025-01-01-preview").chat("gpt-4o", ask(),
                                                                          TIMEOUTS)
    assert server.queries[0]["api-version"] == "2025-01-01-preview"


def test_deployment_name_is_url_quoted() -> None:
    config = ProviderConfig(name="azure", kind="azure-openai", base_url="https://r.openai.azure.com",
                            options={"deployments": {"gpt-4o": "a/b c"}})
    assert AzureOpenAIProvider(config, HttpPool()).url("gpt-4o") == (
        "https://r.openai.azure.com/openai/deployments/a%2Fb%20c/chat/completions"
        f"?api-version={DEFAULT_API_VERSION}")


async def test_endpoint_with_openai_suffix_is_accepted(server: AzureServer,
                                                       http_pool: HttpPool) -> None:
    config = ProviderConfig(name="azure", kind="azure-openai",
                            base_url=server.base_url + "/openai/", api_key=SecretStr(KEY))
    await AzureOpenAIProvider(config, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert server.requests[0].path == deployment_path("gpt-4o")


async def test_key_goes_in_api_key_header_and_no_authorization(server: AzureServer,
                                                               http_pool: HttpPool) -> None:
    await azure(server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    headers = server.requests[0].headers
    assert headers["api-key"] == KEY and "Authorization" not in headers


async def test_bearer_header_replaces_api_key(server: AzureServer, http_pool: HttpPool) -> None:
    p = azure(server, http_pool, key=None, headers={"Authorization": "Bearer entra-token"})
    await p.chat("gpt-4o", ask(), TIMEOUTS)
    headers = server.requests[0].headers
    assert headers["Authorization"] == "Bearer entra-token" and "api-key" not in headers


async def test_no_key_and_no_bearer_is_auth_error_before_any_io(server: AzureServer,
                                                                http_pool: HttpPool) -> None:
    with pytest.raises(AuthError, match="AZURE_OPENAI_API_KEY") as info:
        await azure(server, http_pool, key=None).chat("gpt-4o", ask(), TIMEOUTS)
    assert not info.value.retryable and server.request_count == 0


async def test_sends_max_tokens_and_include_usage(server: AzureServer,
                                                  http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(azure_text_events(["x"])))
    await collect(azure(server, http_pool).stream("gpt-4o", ask(max_tokens=50, temperature=0.3),
                                                  TIMEOUTS))
    body = server.requests[0].json
    assert (body["max_tokens"], body["temperature"]) == (50, 0.3)
    assert "max_completion_tokens" not in body
    assert body["stream_options"] == {"include_usage": True}


async def test_reasoning_model_gets_max_completion_tokens_and_no_sampling(
        server: AzureServer, http_pool: HttpPool) -> None:
    server.enqueue(json_reply(azure_completion()), deployment="o3-mini")
    await azure(server, http_pool).chat("o3-mini", ask(max_tokens=50, temperature=0.3),
                                        TIMEOUTS)
    body = server.requests[0].json
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body and "temperature" not in body


# -- what comes back --------------------------------------------------------------------------


async def test_chat_returns_text_usage_and_model(server: AzureServer,
                                                 http_pool: HttpPool) -> None:
    server.enqueue(json_reply(azure_completion("Hi there", usage_=usage(20, 3))))
    r = await azure(server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason, r.model) == ("Hi there", "stop", "gpt-4o-2024-08-06")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (20, 3)


async def test_chat_parses_tool_calls(server: AzureServer, http_pool: HttpPool) -> None:
    calls = [tool_call("call_1", "get_weather", '{"city":"Oslo"}')]
    server.enqueue(json_reply(azure_completion(None, tool_calls=calls,
                                               finish_reason="tool_calls")))
    r = await azure(server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls == [ToolCall("call_1", "get_weather", {"city": "Oslo"})]


async def test_length_finish_reason_is_kept(server: AzureServer, http_pool: HttpPool) -> None:
    server.enqueue(json_reply(azure_completion("cut", finish_reason="length")))
    r = await azure(server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert r.finish_reason == "length"


async def test_stream_skips_prompt_filter_chunk_and_ends_with_usage(
        server: AzureServer, http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(azure_text_events(["Hel", "lo"], usage_=usage(9, 2))))
    chunks = await collect(azure(server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    assert [c.delta for c in chunks] == ["Hel", "lo", ""]
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None and (final.usage.input_tokens,
                                        final.usage.output_tokens) == (9, 2)


# -- content filter -----------------------------------------------------------------------------


async def test_prompt_filter_400_is_content_policy_naming_categories(
        server: AzureServer, http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, azure_error_reply("content_filter"))
    assert isinstance(e, ContentPolicyError) and e.status == 400
    assert e.provider_code == "content_filter" and not e.retryable
    assert "[filtered: hate, violence]" in e.message


async def test_inner_responsible_ai_violation_is_content_policy(server: AzureServer,
                                                                http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, azure_error_reply("rai_violation_only"))
    assert isinstance(e, ContentPolicyError) and "jailbreak" in e.message


async def test_filtered_completion_is_content_policy(server: AzureServer,
                                                     http_pool: HttpPool) -> None:
    body = azure_completion(None, finish_reason="content_filter", filtered="violence")
    e = await chat_error(server, http_pool, json_reply(body))
    assert isinstance(e, ContentPolicyError) and e.provider_code == "content_filter"


async def test_filtered_stream_is_content_policy_after_its_text(server: AzureServer,
                                                                http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(azure_text_events(["Once", " upon"],
                                                  finish_reason="content_filter")))
    got: list[str] = []
    with pytest.raises(ContentPolicyError):
        async for c in azure(server, http_pool).stream("gpt-4o", ask(), TIMEOUTS):
            got.append(c.delta)
    assert got == ["Once", " upon"]


# -- errors -----------------------------------------------------------------------------------


async def test_rate_limit_reads_retry_after_ms(server: AzureServer, http_pool: HttpPool) -> None:
    reply = azure_error_reply("rate_limit", headers={"retry-after": "6",
                                                     "retry-after-ms": "5400"})
    e = await chat_error(server, http_pool, reply)
    assert isinstance(e, RateLimitError) and e.retry_after == 5.4 and e.retryable


async def test_rate_limit_reads_retry_after_seconds(server: AzureServer,
                                                    http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool,
                         azure_error_reply("rate_limit", headers={"retry-after": "6"}))
    assert isinstance(e, RateLimitError) and e.retry_after == 6.0


async def test_deployment_not_found_is_not_found(server: AzureServer,
                                                 http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, azure_error_reply("deployment_not_found"))
    assert isinstance(e, NotFoundError) and e.provider_code == "DeploymentNotFound"


async def test_unauthorized_is_auth_and_hides_the_key(server: AzureServer,
                                                      http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, azure_error_reply("unauthorized"))
    assert isinstance(e, AuthError) and e.status == 401 and KEY not in str(e)


async def test_context_length_is_context_window(server: AzureServer,
                                                http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, azure_error_reply("context_length_exceeded"))
    assert isinstance(e, ContextWindowError)


async def test_server_error_is_retryable_server(server: AzureServer,
                                                http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, azure_error_reply("server_error"))
    assert isinstance(e, ServerError) and e.retryable and e.status == 500


async def test_stream_error_event_is_mapped(server: AzureServer, http_pool: HttpPool) -> None:
    events = [chunk({"content": "par"}), azure_error_body("content_filter")]
    server.enqueue(stream_reply(events, done=False))
    with pytest.raises(ContentPolicyError) as info:
        await collect(azure(server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    assert info.value.status is None


def test_missing_base_url_is_config_error() -> None:
    config = ProviderConfig(name="azure", kind="azure-openai", api_key=SecretStr(KEY))
    with pytest.raises(ConfigError, match=r"openai\.azure\.com"):
        AzureOpenAIProvider(config, HttpPool())


def test_provider_declares_kind_and_key_variable() -> None:
    assert (AzureOpenAIProvider.kind, AzureOpenAIProvider.key_env) == (
        "azure-openai", "AZURE_OPENAI_API_KEY")
