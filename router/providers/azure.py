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

import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

from router.errors import AuthError, ConfigError, ContentPolicyError, ErrorClass, LlmError
from router.providers._openai_errors import map_openai_error
from router.providers._openai_stream import StreamAssembler
from router.providers.base import (
    ErrorBody,
    HttpCall,
    HttpPool,
    ProviderConfig,
    make_status_error,
)
from router.providers.openai import OpenAIProvider
from router.types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["DEFAULT_API_VERSION", "AzureOpenAIProvider", "map_azure_error"]

#: The latest GA data-plane inference version (dated API versions; see the reference above).
DEFAULT_API_VERSION = "2024-10-21"
_RAI_VIOLATION = "ResponsibleAIPolicyViolation"


class AzureOpenAIProvider(OpenAIProvider):
    """An Azure OpenAI resource. ``base_url`` is the resource endpoint
    (``https://RESOURCE.openai.azure.com``); the model name picks the deployment.

    Options: ``api_version`` (default ``DEFAULT_API_VERSION``), ``deployments`` (model name →
    deployment name; default: the model name is the deployment name), ``capabilities``.

    Auth: the key goes in the ``api-key`` header. For Microsoft Entra ID, leave ``api_key``
    unset and give ``headers: {Authorization: "Bearer ${AZURE_TOKEN}"}``: then no ``api-key``
    header is sent.

    Its ``max_tokens`` choice: ``max_tokens`` (what the GA versions define),
    ``max_completion_tokens`` for o-series and gpt-5 names, which reject the former.
    """

    kind: ClassVar[str] = "azure-openai"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        if not config.base_url:
            raise ConfigError(f"provider {config.name!r} (kind {self.kind}) needs a base_url: "
                              "https://YOUR-RESOURCE.openai.azure.com")
        super().__init__(config, http)
        # Accept the endpoint with or without the "/openai" path the portal sometimes shows.
        self._root = config.base_url.rstrip("/").removesuffix("/openai")
        self._api_version = str(config.options.get("api_version") or DEFAULT_API_VERSION)
        self._deployments: Mapping[str, str] = dict(config.options.get("deployments") or {})
        self._has_bearer = any(h.lower() == "authorization" for h in config.headers)
        self._urls: dict[str, str] = {}

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": self._secret} if self._secret else {}

    def deployment(self, model: str) -> str:
        """The deployment serving ``model``."""
        return self._deployments.get(model, model)

    _max_field = "max_tokens"

    def url(self, model: str) -> str:
        """The chat-completions URL of ``model``'s deployment (built once per model)."""
        url = self._urls.get(model)
        if url is None:
            deployment = urllib.parse.quote(self.deployment(model), safe="")
            query = urllib.parse.urlencode({"api-version": self._api_version})
            url = self._urls[model] = (
                f"{self._root}/openai/deployments/{deployment}/chat/completions?{query}")
        return url

    def request(self, model: str, request: ChatRequest, *, stream: bool) -> HttpCall:
        if stream:
            return HttpCall(self.url(model), self.body(model, request, stream=True),
                            self._stream_headers, model, _FilteredStream(request.n))
        return HttpCall(self.url(model), self.body(model, request, stream=False),
                        self._headers, model, context=request.n)

    def check_key(self) -> None:
        if not (self._secret or self._has_bearer):
            raise AuthError(
                f"no API key for provider {self.config.name!r}: set {self.key_env} "
                "(or an Authorization header with an Entra ID bearer token)",
                retryable=False,
            )

    def parse_reply(self, data: Any, call: HttpCall) -> ChatResponse:
        """A completion the content filter withheld is a ContentPolicyError (a refusal the
        model sent, ``message.refusal``, is an answer like OpenAI's)."""
        response = super().parse_reply(data, call)
        if response.finish_reason == "content_filter" and response.refusal is None:
            raise _filtered_completion()
        return response

    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        return map_azure_error(status, headers, body, secrets=self._secrets)


class _FilteredStream(StreamAssembler):
    """A stream the content filter ends is a ContentPolicyError (not one the model ended with
    a refusal)."""

    __slots__ = ()

    def final_chunks(self) -> list[ChatChunk]:
        chunks = super().final_chunks()
        if chunks[-1].finish_reason == "content_filter" and not self.refused:
            raise _filtered_completion()
        return chunks


def _filtered_completion() -> ContentPolicyError:
    return ContentPolicyError(
        "the completion was withheld by Azure's content filter (finish_reason content_filter)",
        provider_code="content_filter",
    )


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
