"""Azure OpenAI: the Chat Completions wire of ``openai.py`` at deployment URLs.

``POST {base}/openai/deployments/{deployment}/chat/completions?api-version={api_version}``
with an ``api-key`` header. API reference (data plane, inference):
https://learn.microsoft.com/azure/ai-services/openai/reference ; the request and response
bodies are OpenAI's, plus Azure's content-filter annotations. A prompt the filter blocks is a
400 ``{"error": {"code": "content_filter", ..., "innererror": {"code":
"ResponsibleAIPolicyViolation", "content_filter_result": {...}}}}``; a blocked completion is a
200 whose ``finish_reason`` is ``content_filter`` (streams end with it on the last chunk).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar, cast

from router.errors import AuthError, ConfigError, ContentPolicyError, ErrorClass, LlmError
from router.providers._openai_wire import is_reasoning_model, map_openai_error
from router.providers.base import (
    Capabilities,
    ErrorBody,
    HttpPool,
    Provider,
    ProviderConfig,
    Timeouts,
    make_status_error,
)
from router.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from router.types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["DEFAULT_API_VERSION", "AzureOpenAIProvider", "map_azure_error"]

#: The latest GA data-plane inference version (dated API versions; see the reference above).
DEFAULT_API_VERSION = "2024-10-21"
_RAI_VIOLATION = "ResponsibleAIPolicyViolation"


class AzureOpenAIProvider(Provider):
    """An Azure OpenAI resource. ``base_url`` is the resource endpoint
    (``https://RESOURCE.openai.azure.com``); the model name picks the deployment.

    Options: ``api_version`` (default ``DEFAULT_API_VERSION``), ``deployments`` (model name →
    deployment name; default: the model name is the deployment name), ``capabilities``.

    Auth: the key goes in the ``api-key`` header. For Microsoft Entra ID, leave ``api_key``
    unset and give ``headers: {Authorization: "Bearer ${AZURE_TOKEN}"}``: then no ``api-key``
    header is sent.
    """

    kind: ClassVar[str] = "azure-openai"
    key_env: ClassVar[str | None] = "AZURE_OPENAI_API_KEY"
    default_base_url: ClassVar[str | None] = None
    capabilities_default: ClassVar[Capabilities] = OpenAIProvider.capabilities_default

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        if not config.base_url:
            raise ConfigError(f"provider {config.name!r} (kind {self.kind}) needs a base_url: "
                              "https://YOUR-RESOURCE.openai.azure.com")
        # Accept the endpoint with or without the "/openai" path the portal sometimes shows.
        self._root = config.base_url.rstrip("/").removesuffix("/openai")
        self._api_version = str(config.options.get("api_version") or DEFAULT_API_VERSION)
        self._deployments: Mapping[str, str] = dict(config.options.get("deployments") or {})
        self._has_key = config.api_key is not None and bool(config.api_key.get_secret_value())
        self._has_bearer = any(h.lower() == "authorization" for h in config.headers)
        self._clients: dict[str, _Deployment] = {}
        overrides = config.options.get("capabilities") or {}
        try:
            self._caps = replace(self.capabilities_default, **overrides)
        except TypeError as e:
            raise ConfigError(f"provider {config.name!r}: bad capabilities option: {e}") from e

    def capabilities(self, model: str) -> Capabilities:
        """The OpenAI defaults with ``options.capabilities`` overrides applied."""
        return self._caps

    def deployment(self, model: str) -> str:
        """The deployment serving ``model``."""
        return self._deployments.get(model, model)

    def url(self, model: str) -> str:
        """The chat-completions URL of ``model``'s deployment."""
        deployment = urllib.parse.quote(self.deployment(model), safe="")
        query = urllib.parse.urlencode({"api-version": self._api_version})
        return f"{self._root}/openai/deployments/{deployment}/chat/completions?{query}"

    def _client(self, model: str) -> _Deployment:
        client = self._clients.get(model)
        if client is None:  # no await between get and set: no race
            client = self._clients[model] = _Deployment(self.config, self.http, self.url(model))
        return client

    def _check_auth(self) -> None:
        if not (self._has_key or self._has_bearer):
            raise AuthError(
                f"no API key for provider {self.config.name!r}: set {self.key_env} "
                "(or an Authorization header with an Entra ID bearer token)",
                retryable=False,
            )

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One call; a completion the content filter withheld is a ContentPolicyError."""
        self._check_auth()
        response = await self._client(model).chat(model, request, timeouts)
        if response.finish_reason == "content_filter":
            raise _filtered_completion()
        return response

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """A streamed call; a stream the content filter ends is a ContentPolicyError."""
        self._check_auth()
        inner = cast(AsyncGenerator[ChatChunk, None],
                     self._client(model).stream(model, request, timeouts))
        async with contextlib.aclosing(inner):
            async for chunk in inner:
                if chunk.finish_reason == "content_filter":
                    raise _filtered_completion()
                yield chunk


def _filtered_completion() -> ContentPolicyError:
    return ContentPolicyError(
        "the completion was withheld by Azure's content filter (finish_reason content_filter)",
        provider_code="content_filter",
    )


class _Deployment(OpenAICompatibleProvider):
    """One deployment: the OpenAI Chat Completions exchange at its Azure URL, with the
    ``api-key`` header and Azure's error bodies. Its ``max_tokens`` choice is the compatible
    one: ``max_tokens`` (what the GA versions define), ``max_completion_tokens`` for o-series
    and gpt-5 names, which reject the former (preview API versions)."""

    kind: ClassVar[str] = "azure-openai"

    def __init__(self, config: ProviderConfig, http: HttpPool, url: str) -> None:
        super().__init__(config, http)
        self._url = url

    def _build_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret:
            headers["api-key"] = self._secret
        headers.update(self.config.headers)
        return headers

    def _drops_sampling(self, model: str) -> bool:
        return is_reasoning_model(model)  # as on OpenAI: o-series reject temperature/top_p

    def _error(self, status: int | None, headers: Mapping[str, str],
               body: ErrorBody) -> LlmError:
        return map_azure_error(status, headers, body, secrets=(self._secret,))


# --------------------------------------------------------------------------------------------
# Errors


def _inner_error(err: Mapping[str, Any]) -> Mapping[str, Any]:
    # The service sends "innererror"; the OpenAPI spec spells it "inner_error".
    for key in ("innererror", "inner_error"):
        value = err.get(key)
        if isinstance(value, dict):
            return value
    return {}


def _filtered_categories(inner: Mapping[str, Any]) -> list[str]:
    results = inner.get("content_filter_result") or inner.get("content_filter_results")
    if not isinstance(results, dict):
        return []
    return sorted(name for name, verdict in results.items()
                  if isinstance(verdict, dict) and verdict.get("filtered") is True)


def map_azure_error(status: int | None, headers: Mapping[str, str], body: ErrorBody, *,
                    secrets: tuple[str, ...] = ()) -> LlmError:
    """OpenAI's mapping (Retry-After / retry-after-ms, context length, 404 DeploymentNotFound
    as not_found...) plus Azure's content filter: ``code: content_filter`` or an inner
    ``ResponsibleAIPolicyViolation`` is content_policy, naming the filtered categories."""
    error = map_openai_error(status, headers, body, secrets=secrets)
    err = body.error_object()
    inner = _inner_error(err)
    if error.error_class is not ErrorClass.CONTENT_POLICY and inner.get("code") != _RAI_VIOLATION:
        return error
    message = error.provider_message or "the prompt was filtered by Azure's content filter"
    categories = _filtered_categories(inner)
    if categories:
        message = f"{message} [filtered: {', '.join(categories)}]"
    return make_status_error(
        ErrorClass.CONTENT_POLICY, status, headers, provider_message=message,
        provider_type=error.provider_type, provider_code=error.provider_code or _RAI_VIOLATION,
        secrets=secrets,
    )
