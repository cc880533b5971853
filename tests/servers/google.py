"""A loopback server speaking the Gemini API (``generateContent`` and
``streamGenerateContent?alt=sse``): real status codes, google.rpc.Status error bodies and SSE
bytes, scripted per request, and a validator of what was sent.

    async with GoogleServer() as server:          # 127.0.0.1, port 0
        server.enqueue(json_reply(response("hi")), error_reply("rate_limited"))
        ...  # point a provider at server.base_url ("http://127.0.0.1:<port>", the host only)
        server.requests[0].json["contents"]
        server.violations                          # what the real API would have rejected
        server.open_connections                    # sockets open right now

Every request is checked by ``validate_request`` (roles, parts, function call / response
pairing, systemInstruction, schemas, generationConfig, no key in the URL, key header present).
With ``strict`` (the default) a request that fails answers 400 INVALID_ARGUMENT as the API
would; either way the problems are kept in ``violations``. When the queue is empty
``server.default`` answers ("Hello!", streamed if asked). The rest (queues, recorded requests,
connection counting, misbehaviours) is the scripted server of ``tests/servers/base.py``;
stream events are framed with ``\\r\\n\\r\\n`` as Google does, with no ``[DONE]``.

``GoogleServer(signed=True)`` holds thought signatures to what it served: every
``thoughtSignature`` a request sends must be one this server issued (or the documented
``skip_thought_signature_validator``), else 400 as for a corrupted signature; ``server.returned``
lists the signatures that came back, in order.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.servers.base import (
    RecordedRequest,
    Reply,
    Script,
    ScriptedServer,
    json_reply,
    redirect_reply,
    stream_reply,
)

__all__ = [
    "ERRORS",
    "MODEL_VERSION",
    "GoogleRequest",
    "GoogleServer",
    "RecordedRequest",
    "Reply",
    "Script",
    "ScriptedServer",
    "blocked",
    "call_part",
    "check_schema",
    "chunk",
    "error_body",
    "error_reply",
    "json_reply",
    "redirect_reply",
    "response",
    "sse_frame",
    "stream_reply",
    "text_events",
    "text_part",
    "usage",
    "validate_request",
]

MODEL_VERSION = "gemini-2.5-flash"
#: https://ai.google.dev/gemini-api/docs/thought-signatures: for history without signatures.
SKIP_SIGNATURE = "skip_thought_signature_validator"
_PATH = re.compile(
    r"^/v1beta/(models|tunedModels)/([^/:]+):(generateContent|streamGenerateContent)$")


class GoogleRequest(RecordedRequest):
    """A recorded request, with the model and the mode its path names."""

    @property
    def model(self) -> str:
        match = _PATH.match(self.path)
        return match.group(2) if match else ""

    @property
    def streaming(self) -> bool:
        return self.path.endswith(":streamGenerateContent")


class GoogleServer(ScriptedServer):
    """The scripted server; an async context manager (see the module docstring)."""

    request_class = GoogleRequest

    def __init__(self, *, seed: int = 0, strict: bool = True, signed: bool = False) -> None:
        super().__init__(seed=seed)
        self.violations: list[str] = []
        self.strict = strict
        self.signed = signed
        self.issued: set[str] = {SKIP_SIGNATURE}
        self.returned: list[str] = []
        self.default: Script = _hello

    def reply_for(self, recorded: RecordedRequest) -> Reply:
        problems = validate_request(recorded)
        if self.signed and not problems:
            problems = self._check_signatures(recorded.json)
        self.violations += problems
        if problems and self.strict:
            return json_reply({"error": {"code": 400, "message": "; ".join(problems),
                                         "status": "INVALID_ARGUMENT"}}, status=400)
        reply = self.next_reply(recorded)
        if self.signed:
            bodies = [reply.json] if reply.json is not None else list(reply.events or ())
            self.issued |= {p["thoughtSignature"] for b in bodies if isinstance(b, dict)
                            for c in b.get("candidates") or ()
                            for p in (c.get("content") or {}).get("parts") or ()
                            if "thoughtSignature" in p}
        return reply

    def _check_signatures(self, body: Mapping[str, Any]) -> list[str]:
        problems = []
        for i, content in enumerate(body.get("contents") or ()):
            for j, part in enumerate(content.get("parts") or ()):
                if "thoughtSignature" in part:
                    self.returned.append(part["thoughtSignature"])
                    if part["thoughtSignature"] not in self.issued:
                        problems.append(f"contents[{i}].parts[{j}]: Corrupted thought "
                                        "signature.")
        return problems

    def frame(self, event: Any) -> bytes:
        return sse_frame(event)


def _hello(req: RecordedRequest) -> Reply:
    """The default answer, "Hello!", in the request's own mode (JSON or SSE)."""
    if req.streaming:
        return stream_reply(text_events(["Hel", "lo!"]))
    return json_reply(response("Hello!"))


# --------------------------------------------------------------------------------------------
# Validation: what the real API rejects with 400 (https://ai.google.dev/api/generate-content)

_BODY_KEYS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
              "generationConfig", "cachedContent"}
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
              "executableCode", "codeExecutionResult")
_PART_META = {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
_GEN_KEYS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
             "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP",
             "topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs",
             "logprobs", "speechConfig", "thinkingConfig", "mediaResolution"}
_SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems",
                "minItems", "properties", "required", "minProperties", "maxProperties",
                "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
                "default", "items", "minimum", "maximum"}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_FN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")


def validate_request(req: RecordedRequest) -> list[str]:
    """Why the Gemini API would reject ``req`` (empty: it would accept it)."""
    problems: list[str] = []
    if req.method != "POST" or not _PATH.match(req.path):
        problems.append(f"unknown endpoint {req.method} {req.path}")
    if "key" in req.query:
        problems.append("API key in the URL query")
    if not req.headers.get("x-goog-api-key"):
        problems.append("x-goog-api-key header missing")
    if req.streaming and req.query.get("alt") != "sse":
        problems.append("streamGenerateContent without alt=sse")
    try:
        body = req.json
    except ValueError:
        return [*problems, "body is not JSON"]
    if not isinstance(body, dict):
        return [*problems, "body is not an object"]
    problems += [f"unknown field {k!r}" for k in body if k not in _BODY_KEYS]
    problems += _check_contents(body.get("contents"), req.model.startswith("gemini-3"))
    problems += _check_system(body.get("systemInstruction"))
    declared = _check_tools(body.get("tools"), problems)
    _check_tool_config(body.get("toolConfig"), declared, problems)
    _check_generation_config(body.get("generationConfig"), problems)
    return problems


def _check_part(part: Any, role: str, where: str) -> list[str]:
    if not isinstance(part, dict):
        return [f"{where} is not an object"]
    data = [k for k in _PART_DATA if k in part]
    problems = [f"{where}: unknown field {k!r}" for k in part
                if k not in _PART_DATA and k not in _PART_META]
    if len(data) != 1:
        return [*problems, f"{where} must hold exactly one data field (has {data})"]
    kind, value = data[0], part[data[0]]
    if kind == "text" and not isinstance(value, str):
        problems.append(f"{where}.text is not a string")
    elif kind == "inlineData":
        if not isinstance(value, dict) or not value.get("mimeType"):
            problems.append(f"{where}.inlineData needs mimeType and data")
        else:
            try:
                base64.b64decode(value.get("data", ""), validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"{where}.inlineData.data is not base64")
    elif kind == "fileData" and (not isinstance(value, dict) or not value.get("fileUri")):
        problems.append(f"{where}.fileData needs fileUri")
    elif kind == "functionCall":
        if role != "model":
            problems.append(f"{where}: functionCall outside a model turn")
        if not isinstance(value, dict) or not isinstance(value.get("args", {}), dict):
            problems.append(f"{where}.functionCall.args is not an object")
    elif kind == "functionResponse":
        if role != "user":
            problems.append(f"{where}: functionResponse outside a user turn")
        if not isinstance(value, dict) or not isinstance(value.get("response"), dict):
            problems.append(f"{where}.functionResponse.response is not an object")
        media = value.get("parts", []) if isinstance(value, dict) else []
        for k, item in enumerate(media if isinstance(media, list) else [None]):
            # FunctionResponsePart: exactly one of inlineData (a blob) or fileData
            if not (isinstance(item, dict) and len(item) == 1
                    and set(item) <= {"inlineData", "fileData"}):
                problems.append(f"{where}.functionResponse.parts[{k}] must hold inlineData or "
                                "fileData")
            else:
                problems += _check_part(item, role, f"{where}.functionResponse.parts[{k}]")
    return problems


def _names(content: Mapping[str, Any], kind: str) -> list[str]:
    return [str(p[kind].get("name")) for p in content.get("parts") or ()
            if isinstance(p, dict) and isinstance(p.get(kind), dict)]


def _check_contents(contents: Any, signed: bool) -> list[str]:
    if not isinstance(contents, list) or not contents:
        return ["contents must be a non-empty list"]
    problems: list[str] = []
    previous: Mapping[str, Any] = {}
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
            problems.append(f"{where}.role must be user or model")
            continue
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            problems.append(f"{where}.parts must not be empty")
            continue
        for j, part in enumerate(parts):
            problems += _check_part(part, content["role"], f"{where}.parts[{j}]")
        calls, answers = _names(content, "functionCall"), _names(content, "functionResponse")
        if calls and previous.get("role") != "user":
            problems.append(f"{where}: a function call turn must come right after a user "
                            "turn or a function response turn")
        if calls and signed and "thoughtSignature" not in next(
                p for p in parts if isinstance(p, dict) and "functionCall" in p):
            problems.append(f"{where}: function call is missing a thought_signature")
        if answers and sorted(answers) != sorted(_names(previous, "functionCall")):
            problems.append(f"{where}: the function response parts must answer the function "
                            f"call parts of the previous turn one for one ({answers})")
        previous = content
    return problems


def _check_system(system: Any) -> list[str]:
    if system is None:
        return []
    if not isinstance(system, dict) or set(system) - {"parts", "role"}:
        return ["systemInstruction must be {parts: [...]}"]
    parts = system.get("parts")
    if not isinstance(parts, list) or not parts or not all(
            isinstance(p, dict) and set(p) == {"text"} and isinstance(p["text"], str)
            for p in parts):
        return ["systemInstruction.parts must be non-empty text parts"]
    return []


def check_schema(schema: Any, where: str) -> list[str]:
    """Why the API would reject ``schema`` as a ``Schema`` object."""
    if not isinstance(schema, dict):
        return [f"{where} is not an object"]
    problems = [f"{where}: unknown name {k!r}" for k in schema if k not in _SCHEMA_KEYS]
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _TYPES):
        problems.append(f"{where}.type {kind!r} is not a Type")
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict) or not props:
            problems.append(f"{where}.properties: should be non-empty for OBJECT type")
        else:
            for name, sub in props.items():
                problems += check_schema(sub, f"{where}.properties.{name}")
    for name in schema.get("required") or ():
        if not isinstance(props, dict) or name not in props:
            problems.append(f"{where}.required names {name!r}, which is not a property")
    if "enum" in schema and not all(isinstance(v, str) for v in schema["enum"]):
        problems.append(f"{where}.enum must hold strings")
    if "items" in schema:
        problems += check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or ()):
        problems += check_schema(sub, f"{where}.anyOf[{i}]")
    return problems


def _check_tools(tools: Any, problems: list[str]) -> set[str]:
    declared: set[str] = set()
    if tools is None:
        return declared
    for i, tool in enumerate(tools if isinstance(tools, list) else [None]):
        decls = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        if not isinstance(decls, list):
            problems.append(f"tools[{i}] needs functionDeclarations")
            continue
        for j, decl in enumerate(decls):
            where = f"tools[{i}].functionDeclarations[{j}]"
            name = decl.get("name") if isinstance(decl, dict) else None
            if not isinstance(name, str) or not _FN_NAME.match(name):
                problems.append(f"{where}.name is invalid")
                continue
            declared.add(name)
            problems += [f"{where}: unknown field {k!r}" for k in decl
                         if k not in ("name", "description", "parameters")]
            if "parameters" in decl:
                problems += check_schema(decl["parameters"], f"{where}.parameters")
    return declared


def _check_tool_config(config: Any, declared: set[str], problems: list[str]) -> None:
    if config is None:
        return
    fcc = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(fcc, dict) or fcc.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        problems.append("toolConfig.functionCallingConfig.mode must be AUTO, ANY or NONE")
        return
    allowed = fcc.get("allowedFunctionNames")
    if allowed is not None and (fcc["mode"] != "ANY" or not set(allowed) <= declared):
        problems.append("allowedFunctionNames needs mode ANY and declared functions")


def _check_generation_config(config: Any, problems: list[str]) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        problems.append("generationConfig is not an object")
        return
    problems += [f"generationConfig: unknown name {k!r}" for k in config if k not in _GEN_KEYS]
    if "responseSchema" in config:
        problems += check_schema(config["responseSchema"], "generationConfig.responseSchema")
        if config.get("responseMimeType") != "application/json":
            problems.append("responseSchema needs responseMimeType application/json")
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        keys = set(thinking) if isinstance(thinking, dict) else {"?"}
        if keys - {"thinkingBudget", "includeThoughts", "thinkingLevel"}:
            problems.append("thinkingConfig: unknown field")
        if {"thinkingBudget", "thinkingLevel"} <= keys:
            problems.append("thinkingConfig: thinkingBudget and thinkingLevel together")


# --------------------------------------------------------------------------------------------
# Payload builders (GenerateContentResponse, as the API sends it)


def sse_frame(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\r\n\r\n".encode()


def text_part(text: str, *, thought: bool = False) -> dict[str, Any]:
    return {"text": text, "thought": True} if thought else {"text": text}


def call_part(name: str, args: dict[str, Any] | None = None, *, id_: str | None = None,
              signature: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": args or {}}
    if id_ is not None:
        call["id"] = id_
    part: dict[str, Any] = {"functionCall": call}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def usage(prompt: int = 12, candidates: int = 5, *, thoughts: int = 0, cached: int = 0,
          tool_use: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                            "totalTokenCount": prompt + candidates + thoughts + tool_use,
                            "promptTokensDetails": [{"modality": "TEXT",
                                                     "tokenCount": prompt}]}
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if cached:
        meta["cachedContentTokenCount"] = cached
    if tool_use:
        meta["toolUsePromptTokenCount"] = tool_use
    return meta


def response(text: str | None = "Hello!", *, parts: list[dict[str, Any]] | None = None,
             finish_reason: str | None = "STOP", usage_: dict[str, Any] | None = None,
             model_version: str = MODEL_VERSION, response_id: str = "resp-1"
             ) -> dict[str, Any]:
    """A GenerateContentResponse with one candidate (``parts`` wins over ``text``)."""
    if parts is None:
        parts = [text_part(text)] if text is not None else []
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    return {"candidates": [candidate],
            "usageMetadata": usage_ if usage_ is not None else usage(),
            "modelVersion": model_version, "responseId": response_id}


def blocked(reason: str = "SAFETY", *, prompt_tokens: int = 9) -> dict[str, Any]:
    """A response to a blocked prompt: no candidates, promptFeedback.blockReason."""
    return {"promptFeedback": {"blockReason": reason,
                               "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                                  "probability": "HIGH"}]},
            "usageMetadata": {"promptTokenCount": prompt_tokens,
                              "totalTokenCount": prompt_tokens},
            "modelVersion": MODEL_VERSION, "responseId": "resp-blocked"}


def chunk(parts: list[dict[str, Any]], *, finish_reason: str | None = None,
          usage_: dict[str, Any] | None = None) -> dict[str, Any]:
    """One streamed GenerateContentResponse; without ``usage_`` it carries the prompt count
    only, as the API's intermediate chunks do."""
    return response(parts=parts, finish_reason=finish_reason,
                    usage_=usage_ if usage_ is not None else {"promptTokenCount": 12,
                                                              "totalTokenCount": 12})


def text_events(pieces: Sequence[str], *, finish_reason: str = "STOP",
                usage_: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A streamed text answer; the last chunk has the finishReason and the full usage."""
    events = [chunk([text_part(p)]) for p in pieces[:-1]]
    events.append(chunk([text_part(pieces[-1])] if pieces else [],
                        finish_reason=finish_reason,
                        usage_=usage_ if usage_ is not None else usage()))
    return events


_RPC = "type.googleapis.com/google.rpc."


def _quota(quota_id: str, value: str, delay: str) -> list[dict[str, Any]]:
    return [{"@type": _RPC + "QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/"
                               "generate_content_free_tier_requests",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                "quotaValue": value}]},
            {"@type": _RPC + "Help", "links": [{
                "description": "Learn more about Gemini API quotas",
                "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": _RPC + "RetryInfo", "retryDelay": delay}]


_QUOTA_MESSAGE = ("You exceeded your current quota, please check your plan and billing details. "
                  "For more information on this error, head to: "
                  "https://ai.google.dev/gemini-api/docs/rate-limits.")

#: Real Gemini API error bodies: name -> (HTTP status, status, message, details).
ERRORS: dict[str, tuple[int, str, str, list[dict[str, Any]]]] = {
    "invalid_argument": (400, "INVALID_ARGUMENT",
                         "Invalid JSON payload received. Unknown name \"frobnicate\": "
                         "Cannot find field.", []),
    "api_key_invalid": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                        [{"@type": _RPC + "ErrorInfo", "reason": "API_KEY_INVALID",
                          "domain": "googleapis.com",
                          "metadata": {"service": "generativelanguage.googleapis.com"}},
                         {"@type": _RPC + "LocalizedMessage", "locale": "en-US",
                          "message": "API key not valid. Please pass a valid API key."}]),
    "context_too_long": (400, "INVALID_ARGUMENT", "The input token count (1200293) exceeds the "
                         "maximum number of tokens allowed (1048576).", []),
    "failed_precondition": (400, "FAILED_PRECONDITION", "User location is not supported for "
                            "the API use without a billing account linked.", []),
    "unauthenticated": (401, "UNAUTHENTICATED", "Request had invalid authentication "
                        "credentials. Expected OAuth 2 access token, login cookie or other "
                        "valid authentication credential.", []),
    "permission_denied": (403, "PERMISSION_DENIED", "Your API key was reported as leaked. "
                          "Please use another API key.", []),
    "not_found": (404, "NOT_FOUND", "models/gemini-9-pro is not found for API version v1beta, "
                  "or is not supported for generateContent. Call ListModels to see the list "
                  "of available models and their supported methods.", []),
    "rate_limited": (429, "RESOURCE_EXHAUSTED", _QUOTA_MESSAGE, _quota(
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "10", "17s")),
    "daily_quota": (429, "RESOURCE_EXHAUSTED", _QUOTA_MESSAGE, _quota(
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "250", "22s")),
    "internal": (500, "INTERNAL", "An internal error has occurred. Please retry or report in "
                 "https://developers.generativeai.google/guide/troubleshooting", []),
    "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", []),
    "deadline_exceeded": (504, "DEADLINE_EXCEEDED",
                          "Deadline expired before operation could complete.", []),
}


def error_body(name: str) -> dict[str, Any]:
    """A fresh copy of the body of Gemini error ``name`` (a key of ERRORS)."""
    status, grpc, message, details = ERRORS[name]
    err: dict[str, Any] = {"code": status, "message": message, "status": grpc}
    if details:
        err["details"] = copy.deepcopy(details)
    return {"error": err}


def error_reply(name: str, *, headers: Mapping[str, str] | None = None) -> Reply:
    """The real status and body of Gemini error ``name`` (a key of ERRORS)."""
    return json_reply(error_body(name), status=ERRORS[name][0], headers=headers)
