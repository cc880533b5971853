"""OpenAI Chat Completions (``/chat/completions``), for OpenAI itself and compatible servers.

Wire details live in ``_openai_wire``; this module does the HTTP exchange and the SSE stream.
Stream protocol: https://platform.openai.com/docs/api-reference/chat/streaming
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from router.errors import ConfigError, LlmError, NetworkError, ServerError
from router.providers._openai_wire import (
    StreamAssembler,
    build_body,
    is_reasoning_model,
    map_openai_error,
    parse_completion,
)
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
from router.providers.sse import ServerSentEvent
from router.types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["OpenAICompatibleProvider", "OpenAIProvider"]

_DONE = "[DONE]"
_DRAIN_TIMEOUT = 1.0  # after [DONE], wait this long for the body's end to reuse the connection


class _Done(Exception):
    """Internal: the stream's ``[DONE]`` sentinel arrived."""


class OpenAIProvider(Provider):
    """api.openai.com: Bearer key, optional ``OpenAI-Organization`` / ``OpenAI-Project``."""

    kind: ClassVar[str] = "openai"
    key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    capabilities_default: ClassVar[Capabilities] = Capabilities(
        tools=True, vision=True, json_object=True, json_schema=True,
        streaming=True, streaming_usage=True,
    )
    #: Whether a call without a key fails before any I/O.
    requires_key: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base_url = config.base_url or self.default_base_url
        if not base_url:
            raise ConfigError(f"provider {config.name!r} (kind {self.kind}) needs a base_url")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = self._build_headers()
        self._stream_headers = {**self._headers, "Accept": "text/event-stream"}
        overrides = config.options.get("capabilities") or {}
        try:
            self._caps = replace(self.capabilities_default, **overrides)
        except TypeError as e:
            raise ConfigError(f"provider {config.name!r}: bad capabilities option: {e}") from e

    def _build_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        for option, header in (("organization", "OpenAI-Organization"),
                               ("project", "OpenAI-Project")):
            value = self.config.options.get(option)
            if value:
                headers[header] = str(value)
        headers.update(self.config.headers)
        return headers

    def capabilities(self, model: str) -> Capabilities:
        """The class default with ``options.capabilities`` overrides applied."""
        return self._caps

    # -- request shape ------------------------------------------------------------------

    def _max_tokens_field(self, model: str) -> str:
        return "max_completion_tokens"  # max_tokens is deprecated and rejected by o-series

    def _include_usage(self) -> bool:
        return True

    def _drops_sampling(self, model: str) -> bool:
        # o-series / gpt-5 reject temperature and top_p other than the default: drop them so a
        # route shared with other models does not fail as invalid_request.
        return is_reasoning_model(model)

    def _body(self, model: str, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        return build_body(
            model, request, stream=stream,
            max_tokens_field=self._max_tokens_field(model),
            include_usage=self._include_usage(),
            drop_sampling=self._drops_sampling(model),
        )

    # -- calls --------------------------------------------------------------------------


    def _error(self, status: int | None, headers: Mapping[str, str],
               body: ErrorBody) -> LlmError:
        return map_openai_error(status, headers, body, secrets=(self._secret,))

    async def _status_error(self, resp: HttpResponse) -> LlmError:
        return self._error(resp.status, resp.headers, await resp.read_error_body())

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One Chat Completions call."""
        self.check_key()
        body = self._body(model, request, stream=False)
        async with self.http.post(self._url, body, headers=self._headers,
                                  timeouts=timeouts) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp)
            data = await resp.json()
            if isinstance(data, dict) and data.get("error"):  # some servers say 200 anyway
                raise self._error(None, resp.headers, ErrorBody(text=str(data), json=data))
            response = parse_completion(data, model)
            response.request_id = resp.request_id
        return response

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """A streamed call; the final chunk (always last, ``finish_reason`` set) carries usage
        (None if the server sent none) and the assembled tool calls."""
        self.check_key()
        body = self._body(model, request, stream=True)
        assembler = StreamAssembler()
        async with self.http.post(self._url, body, headers=self._stream_headers,
                                  timeouts=timeouts) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp)
            try:
                async with contextlib.aclosing(resp.iter_sse()) as events:
                    async for event, last in events:
                        chunk = self._on_event(event, assembler, resp.headers, last=last)
                        if chunk is not None:
                            yield chunk
            except _Done:
                await resp.drain(min(timeouts.idle, _DRAIN_TIMEOUT))
            else:
                if assembler.finish_reason is None:
                    raise NetworkError("stream ended before [DONE]")
        yield assembler.final_chunk()  # after the connection is back in the pool

    def _on_event(self, event: ServerSentEvent, assembler: StreamAssembler,
                  headers: Mapping[str, str], *, last: bool = False) -> ChatChunk | None:
        if event.data.startswith(_DONE):
            raise _Done
        try:
            data = event.json()
        except ValueError as e:
            if last:  # the body ended inside an event: the connection was cut
                raise NetworkError("stream ended inside an event") from e
            excerpt = redact_secrets(event.data[:200], (self._secret,))
            raise ServerError(f"stream event is not JSON: {excerpt!r}") from e
        if not isinstance(data, dict):
            return None
        if data.get("error") or event.event == "error":
            raise self._error(None, headers, ErrorBody(text=event.data, json=data))
        return assembler.feed(data)


class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking the Chat Completions wire (Groq, vLLM, OpenRouter, Azure-style
    proxies...). ``base_url`` is required, the key optional.

    Options: ``max_tokens_field`` (default ``max_tokens``; reasoning model names such as o3
    always get ``max_completion_tokens``), ``stream_usage`` (False: do not send
    ``stream_options``), ``capabilities`` (overrides of the defaults below).
    """

    kind: ClassVar[str] = "openai-compatible"
    key_env: ClassVar[str | None] = None
    default_base_url: ClassVar[str | None] = None
    capabilities_default: ClassVar[Capabilities] = Capabilities(
        tools=True, vision=False, json_object=True, json_schema=False,
        streaming=True, streaming_usage=True,
    )
    requires_key: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        field = config.options.get("max_tokens_field", "max_tokens")
        if field not in ("max_tokens", "max_completion_tokens"):
            raise ConfigError(f"provider {config.name!r}: max_tokens_field must be max_tokens "
                              f"or max_completion_tokens, not {field!r}")
        self._max_field: str = field

    def capabilities(self, model: str) -> Capabilities:
        caps = self._caps
        if self.config.options.get("stream_usage") is False:
            caps = replace(caps, streaming_usage=False)
        return caps

    def _max_tokens_field(self, model: str) -> str:
        return "max_completion_tokens" if is_reasoning_model(model) else self._max_field

    def _include_usage(self) -> bool:
        return self.config.options.get("stream_usage") is not False

    def _drops_sampling(self, model: str) -> bool:
        return False  # unknown server: send what the caller asked for
