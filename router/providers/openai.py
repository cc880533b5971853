"""OpenAI Chat Completions (``/chat/completions``), for OpenAI itself and compatible servers.

Wire details live in ``_openai_wire``; the exchange is ``HttpProvider``'s. A stream is complete
once a choice carries ``finish_reason`` (``data: [DONE]`` then only ends the reading; a missing
``[DONE]`` after it is still a complete stream, and once the usage has come too the reading
stops without waiting for it); ``[DONE]`` without one is a cut stream.
Stream protocol: https://platform.openai.com/docs/api-reference/chat/streaming
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from router.errors import ConfigError, LlmError
from router.providers._compat_errors import map_compat_error
from router.providers._openai_errors import map_openai_error
from router.providers._openai_stream import StreamAssembler
from router.providers._openai_wire import build_body, is_reasoning_model, parse_completion
from router.providers.base import (
    ErrorBody,
    HttpCall,
    HttpPool,
    HttpProvider,
    ProviderConfig,
    new_http_call,
)
from router.types import ChatRequest, ChatResponse

__all__ = ["OpenAICompatibleProvider", "OpenAIProvider"]

#: Models whose body settings are remembered per provider (ad-hoc model names are unbounded).
_MAX_SHAPES = 1024


class OpenAIProvider(HttpProvider):
    """api.openai.com: Bearer key, optional ``OpenAI-Organization`` / ``OpenAI-Project``."""

    kind: ClassVar[str] = "openai"
    sse_sentinel: ClassVar[str | None] = "[DONE]"
    terminator: ClassVar[str] = "a choice with finish_reason"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        base_url = config.base_url or self.default_base_url
        if not base_url:
            raise ConfigError(f"provider {config.name!r} (kind {self.kind}) needs a base_url")
        self._url = self.chat_url(base_url.rstrip("/"))
        self._shapes: dict[str, tuple[str, bool]] = {}  # model -> body settings (see body)
        self._headers, self._stream_headers = self.headers(self.auth_headers())

    def chat_url(self, root: str) -> str:
        """The Chat Completions URL under ``base_url``."""
        return root + "/chat/completions"

    def auth_headers(self) -> dict[str, str]:
        """Bearer key, organization and project."""
        headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        for option, header in (("organization", "OpenAI-Organization"),
                               ("project", "OpenAI-Project")):
            value = self.config.options.get(option)
            if value:
                headers[header] = str(value)
        return headers

    # -- request shape ------------------------------------------------------------------

    #: The max-tokens field of non-reasoning models (max_tokens is deprecated on OpenAI).
    _max_field: str = "max_completion_tokens"
    #: Whether reasoning models get no sampling params (o-series / gpt-5 reject temperature
    #: and top_p other than the default: dropped so a route shared with other models does not
    #: fail as invalid_request).
    _drop_sampling: bool = True
    _include_usage: bool = True
    _keep_cache: bool = False  # prompt-cache breakpoints sent (a gateway's option)

    def max_tokens_field(self, model: str) -> str:
        """Reasoning models always take ``max_completion_tokens``."""
        return "max_completion_tokens" if is_reasoning_model(model) else self._max_field

    def body(self, model: str, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """The Chat Completions body of one call."""
        shape = self._shapes.get(model)
        if shape is None:  # once per model: its max-tokens field, whether sampling is dropped
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            shape = self._shapes[model] = (self.max_tokens_field(model),
                                           self._drop_sampling and is_reasoning_model(model))
        # stream, max_tokens_field, include_usage, drop_sampling (positional: cheaper)
        return build_body(model, request, stream, shape[0], self._include_usage, shape[1],
                          self._keep_cache)

    def request(self, model: str, request: ChatRequest, *, stream: bool) -> HttpCall:
        if stream:
            return new_http_call(self._url, self.body(model, request, True),
                            self._stream_headers, model, StreamAssembler(request.n))
        return new_http_call(self._url, self.body(model, request, False),
                             self._headers, model, None, request.n)

    # -- replies ------------------------------------------------------------------------

    def parse_reply(self, data: Any, call: HttpCall) -> ChatResponse:
        # context: the n asked for (then r.choices lists even one choice)
        return parse_completion(data, call.model, call.context is not None)  # several

    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        return map_openai_error(status, headers, body, secrets=self._secrets)


class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking the Chat Completions wire (Groq, vLLM, OpenRouter, Azure-style
    proxies...). ``base_url`` is required, the key optional.

    Options: ``max_tokens_field`` (default ``max_tokens``; reasoning model names such as o3
    always get ``max_completion_tokens``), ``stream_usage`` (False: do not send
    ``stream_options``), ``cache_control`` (True: send prompt-cache breakpoints on parts,
    messages and tools, for a gateway in front of Anthropic such as OpenRouter or a LiteLLM
    proxy), ``capabilities`` (overrides of the kind's defaults).
    """

    kind: ClassVar[str] = "openai-compatible"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        field = config.options.get("max_tokens_field", "max_tokens")
        if field not in ("max_tokens", "max_completion_tokens"):
            raise ConfigError(f"provider {config.name!r}: max_tokens_field must be max_tokens "
                              f"or max_completion_tokens, not {field!r}")
        self._max_field = field
        self._include_usage = config.options.get("stream_usage") is not False
        self._keep_cache = config.options.get("cache_control") is True
        self._drop_sampling = False  # unknown server: send what the caller asked for

    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        """OpenAI's mapping, refined by the table of how engines word their failures."""
        return map_compat_error(status, headers, body, secrets=self._secrets,
                                fallback=map_openai_error(status, headers, body,
                                                          secrets=self._secrets))
