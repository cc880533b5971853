"""Google Gemini API (``generativelanguage.googleapis.com``): ``generateContent`` and
``streamGenerateContent?alt=sse``.

Wire details live in ``_google_wire`` (request), ``_google_schema`` (tool / response schemas),
``_google_reply`` (answers, stream) and ``_google_errors``; this module does the HTTP exchange.
API reference: https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

from router.errors import ConfigError, LlmError, NetworkError, ServerError
from router.providers._google_errors import map_google_error
from router.providers._google_reply import StreamAssembler, parse_response
from router.providers._google_wire import build_body, model_path
from router.providers.base import (
    Capabilities,
    ErrorBody,
    HttpPool,
    HttpResponse,
    Provider,
    ProviderConfig,
    Timeouts,
    redact_secrets,
)
from router.providers.catalog import facts_for
from router.providers.sse import ServerSentEvent
from router.types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["GoogleProvider"]

_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


class GoogleProvider(Provider):
    """The Gemini API with an API key from Google AI Studio.

    The key travels in the ``x-goog-api-key`` header, never in the URL (URLs reach logs). It is
    read from ``GEMINI_API_KEY``; Google's SDKs also accept ``GOOGLE_API_KEY``, which the engine
    may resolve the same way. ``base_url`` is the host (``https://generativelanguage.googleapis
    .com``); the API version (option ``api_version``, default ``v1beta``) is appended unless the
    base URL already ends in one. Options: ``api_version``, ``capabilities`` (overrides).
    """

    kind: ClassVar[str] = "google"
    key_env: ClassVar[str | None] = "GEMINI_API_KEY"
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    capabilities_default: ClassVar[Capabilities] = Capabilities(
        tools=True, vision=True, json_object=True, json_schema=True,
        streaming=True, streaming_usage=True,
    )

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base = (config.base_url or self.default_base_url or "").rstrip("/")
        if not urlsplit(base).hostname:
            raise ConfigError(f"provider {config.name!r} (kind google): base_url {base!r} "
                              "is not an http(s) URL")
        version = str(config.options.get("api_version", "v1beta")).strip("/")
        self._root = base if _VERSIONED.search(base) else f"{base}/{version}"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         **({"x-goog-api-key": self._secret} if self._secret else {}),
                         **config.headers}
        self._stream_headers = {**self._headers, "Accept": "text/event-stream"}
        overrides = config.options.get("capabilities") or {}
        try:
            replace(self.capabilities_default, **overrides)
        except TypeError as e:
            raise ConfigError(f"provider {config.name!r}: bad capabilities option: {e}") from e
        self._overrides: Mapping[str, Any] = dict(overrides)

    def capabilities(self, model: str) -> Capabilities:
        """Catalog facts of ``model`` (JSON schema output always), ``options.capabilities`` on
        top; an unknown model gets the class default."""
        facts = facts_for(self.kind, model)
        caps = self.capabilities_default
        if facts is not None:
            caps = replace(caps, tools=facts.tools, vision=facts.vision,
                           context_window=facts.context_window,
                           max_output_tokens=facts.max_output_tokens)
        return replace(caps, **self._overrides)

    def url(self, model: str, *, stream: bool) -> str:
        """The endpoint of ``model``; no key in it."""
        if stream:
            return f"{self._root}/{model_path(model)}:streamGenerateContent?alt=sse"
        return f"{self._root}/{model_path(model)}:generateContent"

    # -- calls --------------------------------------------------------------------------


    def _error(self, status: int | None, headers: Mapping[str, str],
               body: ErrorBody) -> LlmError:
        return map_google_error(status, headers, body, secrets=(self._secret,))

    async def _status_error(self, resp: HttpResponse) -> LlmError:
        return self._error(resp.status, resp.headers, await resp.read_error_body())

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One ``generateContent`` call."""
        self.check_key()
        body = build_body(model, request)
        async with self.http.post(self.url(model, stream=False), body, headers=self._headers,
                                  timeouts=timeouts) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp)
            data = await resp.json()
            if isinstance(data, Mapping) and data.get("error"):
                raise self._error(None, resp.headers, ErrorBody(text=str(data), json=data))
            return parse_response(data, model)

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """A ``streamGenerateContent`` call. There is no ``[DONE]``: the body ends after the
        event with the finishReason; a body that ends before one is a NetworkError."""
        self.check_key()
        body = build_body(model, request)
        assembler = StreamAssembler()
        async with self.http.post(self.url(model, stream=True), body,
                                  headers=self._stream_headers, timeouts=timeouts) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp)
            async with contextlib.aclosing(resp.iter_sse()) as events:
                async for event, last in events:
                    chunk = self._on_event(event, assembler, resp.headers, last=last)
                    if chunk is not None:
                        yield chunk
        if assembler.finish_reason is None:
            raise NetworkError("stream ended before a finishReason (truncated)")
        yield assembler.final_chunk()  # after the connection is back in the pool

    def _on_event(self, event: ServerSentEvent, assembler: StreamAssembler,
                  headers: Mapping[str, str], *, last: bool = False) -> ChatChunk | None:
        try:
            data = event.json()
        except ValueError as e:
            if last:  # the body ended inside an event: the connection was cut
                raise NetworkError("stream ended inside an event") from e
            excerpt = redact_secrets(event.data[:4096], (self._secret,))[:200]  # redact, cut
            raise ServerError(f"stream event is not JSON: {excerpt!r}") from e
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, Mapping):
            return None
        if data.get("error"):
            raise self._error(None, headers, ErrorBody(text=event.data, json=data))
        return assembler.feed(data)
