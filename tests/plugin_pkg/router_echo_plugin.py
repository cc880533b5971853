"""``echo``: a provider kind from outside router. It answers with the last user message,
offline, after the ``prefix`` setting (``uppercase: true`` shouts it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from router.providers.base import Capabilities, HttpPool, Provider, ProviderConfig, Timeouts
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage


class EchoProvider(Provider):
    """Echoes the last user message."""

    kind = "echo"
    key_env = None
    capabilities_default = Capabilities(tools=False, vision=False, json_object=False)
    config_schema: ClassVar[dict[str, Any] | None] = {
        "properties": {
            "prefix": {"type": "string", "description": "put before every answer"},
            "uppercase": {"type": "boolean"},
        },
    }

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        self.prefix: str = config.options.get("prefix", "")
        self.uppercase: bool = config.options.get("uppercase", False)

    def _answer(self, request: ChatRequest) -> str:
        said = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        return self.prefix + (said.upper() if self.uppercase else said)

    @staticmethod
    def _usage(request: ChatRequest, text: str) -> Usage:
        prompt = sum(len(m.text.split()) for m in request.messages)
        return Usage(input_tokens=prompt, output_tokens=len(text.split()))

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        text = self._answer(request)
        return ChatResponse(text=text, tool_calls=[], finish_reason="stop",
                            usage=self._usage(request, text), model=model)

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        text = self._answer(request)
        for i, word in enumerate(text.split(" ")):
            yield ChatChunk(delta=word if i == 0 else " " + word)
        yield ChatChunk(finish_reason="stop", usage=self._usage(request, text),
                        final_tool_calls=[])
