"""Google Gemini API (``generativelanguage.googleapis.com``): ``generateContent`` and
``streamGenerateContent?alt=sse``.

Wire details live in ``_google_wire`` (request), ``_google_schema`` (tool / response schemas),
``_google_reply`` (answers, stream) and ``_google_errors``; this module does the HTTP exchange.
API reference: https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from router.errors import ConfigError, LlmError
from router.providers._google_errors import map_google_error
from router.providers._google_reply import StreamAssembler, parse_response
from router.providers._google_wire import build_body, model_path
from router.providers.base import (
    ErrorBody,
    HttpCall,
    HttpPool,
    HttpProvider,
    ProviderConfig,
)
from router.types import ChatRequest, ChatResponse

__all__ = ["GoogleProvider"]

_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


class GoogleProvider(HttpProvider):
    """The Gemini API with an API key from Google AI Studio.

    The key travels in the ``x-goog-api-key`` header, never in the URL (URLs reach logs). It is
    read from ``GEMINI_API_KEY``; Google's SDKs also accept ``GOOGLE_API_KEY``, which
    zero-config reads the same way. ``base_url`` is the host (``https://generativelanguage
    .googleapis.com``); the API version (option ``api_version``, default ``v1beta``) is appended
    unless the base URL already ends in one. Options: ``api_version``, ``capabilities``.

    A stream has no ``[DONE]``: the body ends after the event with the finishReason.
    """

    kind: ClassVar[str] = "google"
    terminator: ClassVar[str] = "a candidate with finishReason"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base = (config.base_url or self.default_base_url or "").rstrip("/")
        if not urlsplit(base).hostname:
            raise ConfigError(f"provider {config.name!r} (kind google): base_url {base!r} "
                              "is not an http(s) URL")
        version = str(config.options.get("api_version", "v1beta")).strip("/")
        self._root = base if _VERSIONED.search(base) else f"{base}/{version}"
        auth = {"x-goog-api-key": self._secret} if self._secret else {}
        self._headers, self._stream_headers = self.headers(auth)
        self._urls: dict[tuple[str, bool], str] = {}

    def url(self, model: str, *, stream: bool) -> str:
        """The endpoint of ``model`` (built once per model); no key in it."""
        url = self._urls.get((model, stream))
        if url is None:
            method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
            url = self._urls[(model, stream)] = f"{self._root}/{model_path(model)}{method}"
        return url

    def request(self, model: str, request: ChatRequest, *, stream: bool) -> HttpCall:
        if stream:
            return HttpCall(self.url(model, stream=True), build_body(model, request),
                            self._stream_headers, model, StreamAssembler())
        return HttpCall(self.url(model, stream=False), build_body(model, request),
                        self._headers, model)

    def parse_reply(self, data: Any, call: HttpCall) -> ChatResponse:
        return parse_response(data, call.model)

    def is_error(self, data: Any, event: str | None) -> bool:
        if isinstance(data, list) and len(data) == 1:  # a stream's error may come wrapped
            data = data[0]
        return super().is_error(data, event)

    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        return map_google_error(status, headers, body, secrets=self._secrets)
