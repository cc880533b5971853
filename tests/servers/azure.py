"""A loopback Azure OpenAI resource: the scripted OpenAI server of ``tests/servers/openai.py``
at deployment paths, recording query strings, with Azure's own bodies (content-filter
annotations and errors, ``apim-request-id``).

    async with AzureServer() as server:
        server.enqueue(json_reply(azure_completion("hi")), deployment="gpt-4o-prod")
        ...  # point a provider at server.base_url ("http://127.0.0.1:<port>", the endpoint)
        server.queries[0]["api-version"]

Shapes follow the 2024-10-21 inference spec (``createChatCompletionResponse`` with
``prompt_filter_results`` / ``content_filter_results``, ``errorResponse`` with ``innererror``).
An opt-in ``validator`` refuses bad bodies with OpenAI's 400 ``invalid_request_error``, which
is what Azure's inference endpoint answers too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDict

from tests.servers.openai import (
    OpenAIServer,
    RecordedRequest,
    Reply,
    Script,
    Validator,
    chunk,
    completion,
    json_reply,
    stream_reply,
    text_events,
    usage,
)

__all__ = ["AZURE_ERRORS", "MODEL", "AzureServer", "Reply", "azure_completion", "azure_error_body",
           "azure_error_reply", "azure_text_events", "chunk", "deployment_path", "json_reply",
           "prompt_filter_chunk", "stream_reply", "usage"]

MODEL = "gpt-4o-2024-08-06"
_SAFE = {"filtered": False, "severity": "safe"}


def deployment_path(deployment: str) -> str:
    return f"/openai/deployments/{deployment}/chat/completions"


class AzureServer(OpenAIServer):
    """The scripted server at Azure's paths (see the module docstring)."""

    def __init__(self, *, seed: int = 0, validator: Validator | None = None) -> None:
        super().__init__(seed=seed, validator=validator)
        self.default = json_reply(azure_completion("Hello!"))
        self.queries: list[MultiDict[str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Script, path: str | None = None,
                deployment: str = "gpt-4o") -> None:
        """Answer the next requests to ``deployment`` (or ``path``) with these replies."""
        super().enqueue(*replies, path=path or deployment_path(deployment))

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        self.queries.append(MultiDict(request.query))
        return super().record(request, body)


# --------------------------------------------------------------------------------------------
# Payload builders


def _prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": {
        "hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE,
        "jailbreak": {"filtered": False, "detected": False}}}]


def _choice_filter_results(filtered: str | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE,
                               "violence": _SAFE,
                               "protected_material_code": {"filtered": False,
                                                           "detected": False},
                               "protected_material_text": {"filtered": False,
                                                           "detected": False}}
    if filtered is not None:
        results[filtered] = {"filtered": True, "severity": "high"}
    return results


def azure_completion(text: str | None = "Hello!", *, finish_reason: str = "stop",
                     filtered: str | None = None, **kw: Any) -> dict[str, Any]:
    """OpenAI's completion with Azure's filter annotations."""
    body = completion(text, finish_reason=finish_reason, model=MODEL, **kw)
    body["prompt_filter_results"] = _prompt_filter_results()
    body["choices"][0]["content_filter_results"] = _choice_filter_results(filtered)
    return body


def prompt_filter_chunk() -> dict[str, Any]:
    """Azure's first stream chunk: no choices, no model, only the prompt's filter verdict."""
    return {"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": _prompt_filter_results()}


def azure_text_events(parts: list[str], *, finish_reason: str = "stop",
                      usage_: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A streamed answer as Azure sends it with ``include_usage``."""
    events = copy.deepcopy(text_events(parts, finish_reason=finish_reason, usage_=usage_))
    for event in events:
        for choice in event["choices"]:
            choice["content_filter_results"] = (_choice_filter_results() if choice["delta"]
                                                else {})
    return [prompt_filter_chunk(), *events]


#: Real Azure OpenAI error bodies: name -> (status, error object).
AZURE_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "content_filter": (400, {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                   "content management policy. Please modify your prompt and retry. To learn "
                   "more about our content filtering policies please read our documentation: "
                   "https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": {"filtered": True, "severity": "high"},
            "jailbreak": {"filtered": False, "detected": False},
            "self_harm": {"filtered": False, "severity": "safe"},
            "sexual": {"filtered": False, "severity": "safe"},
            "violence": {"filtered": True, "severity": "medium"}}}}),
    "rai_violation_only": (400, {
        "message": "The prompt was blocked.", "code": "BadRequest",
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "jailbreak": {"filtered": True, "detected": True}}}}),
    "deployment_not_found": (404, {
        "code": "DeploymentNotFound",
        "message": "The API deployment for this resource does not exist. If you created the "
                   "deployment within the last 5 minutes, please wait a moment and try "
                   "again."}),
    "unauthorized": (401, {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make "
                   "sure to provide a valid key for an active subscription and use a correct "
                   "regional API endpoint for your resource."}),
    "rate_limit": (429, {
        "code": "429",
        "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                   "version 2024-10-21 have exceeded token rate limit of your current OpenAI "
                   "S0 pricing tier. Please retry after 6 seconds. Please go here: "
                   "https://aka.ms/oai/quotaincrease if you would like to further increase "
                   "the default rate limit."}),
    "context_length_exceeded": (400, {
        "message": "This model's maximum context length is 128000 tokens. However, your "
                   "messages resulted in 131210 tokens. Please reduce the length of the "
                   "messages.",
        "type": "invalid_request_error", "param": "messages",
        "code": "context_length_exceeded"}),
    "server_error": (500, {
        "code": "InternalServerError",
        "message": "The service is temporarily unable to process your request. Please try "
                   "again later."}),
}


def azure_error_body(name: str) -> dict[str, Any]:
    return {"error": copy.deepcopy(AZURE_ERRORS[name][1])}


def azure_error_reply(name: str, *, headers: Mapping[str, str] | None = None) -> Reply:
    """The real status and body of Azure error ``name`` (a key of AZURE_ERRORS)."""
    return json_reply(azure_error_body(name), status=AZURE_ERRORS[name][0],
                      headers={"apim-request-id": "5f4c3d2b-aaaa-bbbb-cccc-0123456789ab",
                               **(headers or {})})

