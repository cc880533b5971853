"""What the real APIs refuse in a request body, for the loopback servers' opt-in ``validator``
hook (``OpenAIServer(validator=openai_chat_validator)``, ``OllamaServer(validator=...)``).

Each validator returns the problems the real API would answer with a 400 ([] when it would
accept the body): the structure as a JSON Schema written from the API reference, then the
referential rules the server checks across messages. Only what the API enforces is here; a
server that accepts something silently is modelled as accepting it.

OpenAI Chat Completions (also Azure OpenAI and openai-compatible servers), from
https://platform.openai.com/docs/api-reference/chat/create and openai-python's
``types/chat/chat_completion_*_param.py``:

- roles system / developer / user / assistant / tool (function, deprecated); unknown fields in a
  message are refused ("Additional properties are not allowed");
- content: a string or a non-empty list of parts; image_url parts only in user messages;
- assistant ``tool_calls``: ``{id (at most 40 chars), type: "function", function: {name,
  arguments}}`` where arguments is a JSON *string*; content may then be null, otherwise it is
  required ("Invalid value for 'content': expected a string, got null");
- a ``tool`` message answers a ``tool_call_id`` of the assistant message right before its run of
  tool messages, and every such call gets its tool message before the next other message;
- ``tool_choice`` and ``parallel_tool_calls`` only with ``tools``; ``stream_options`` only with
  ``stream``; unknown top-level fields are "Unrecognized request argument supplied".

Ollama ``/api/chat``, from docs/api.md ("Generate a chat completion") and ``api/types.go``
(``ChatRequest``, ``Message``, ``ToolCall``, ``Tool``): the server binds the body with Go's
``encoding/json``, which ignores unknown fields but refuses a value of the wrong type (content
must be a string, tool-call ``arguments`` an object, ``images`` base64 strings...), and does
not pair tool results with calls (it has no call ids; ``tool_name`` names the tool).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from tests.servers.openai import RecordedRequest

# --------------------------------------------------------------------------------------------
# OpenAI Chat Completions

_NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
_TEXT_PART = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
              "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_IMAGE_PART = {
    "type": "object", "required": ["type", "image_url"], "additionalProperties": False,
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {"type": "object", "required": ["url"], "additionalProperties": False,
                      "properties": {"url": {"type": "string"},
                                     "detail": {"enum": ["auto", "low", "high"]}}}}}
_AUDIO_PART = {
    "type": "object", "required": ["type", "input_audio"], "additionalProperties": False,
    "properties": {"type": {"const": "input_audio"},
                   "input_audio": {"type": "object", "required": ["data", "format"],
                                   "properties": {"data": {"type": "string"},
                                                  "format": {"enum": ["wav", "mp3"]}}}}}
_FILE_PART = {
    "type": "object", "required": ["type", "file"], "additionalProperties": False,
    "properties": {
        "type": {"const": "file"},
        "file": {"type": "object", "additionalProperties": False, "minProperties": 1,
                 "properties": {"file_data": {"type": "string", "pattern": "^data:[^,]+,.+"},
                                "file_id": {"type": "string"},
                                "filename": {"type": "string"}}}}}
_REFUSAL_PART = {"type": "object", "required": ["type", "refusal"], "additionalProperties": False,
                 "properties": {"type": {"const": "refusal"}, "refusal": {"type": "string"}}}


def _content(*parts: Mapping[str, Any], nullable: bool = False) -> dict[str, Any]:
    kinds: list[Any] = [{"type": "string"},
                        {"type": "array", "minItems": 1, "items": {"anyOf": list(parts)}}]
    if nullable:
        kinds.append({"type": "null"})
    return {"anyOf": kinds}


_TOOL_CALL = {
    "type": "object", "required": ["id", "type", "function"], "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "maxLength": 40},
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name", "arguments"],
                     "additionalProperties": False,
                     "properties": {"name": {"type": "string"},
                                    "arguments": {"type": "string"}}}}}


def _message(role: str, content: Mapping[str, Any], required: Iterable[str] = ("content",),
             **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": ["role", *required], "additionalProperties": False,
            "properties": {"role": {"const": role}, "content": content,
                           "name": {"type": "string"}, **extra}}


_MESSAGES: dict[str, dict[str, Any]] = {
    "system": _message("system", _content(_TEXT_PART)),
    "developer": _message("developer", _content(_TEXT_PART)),
    "user": _message("user", _content(_TEXT_PART, _IMAGE_PART, _AUDIO_PART, _FILE_PART)),
    "assistant": _message(
        "assistant", _content(_TEXT_PART, _REFUSAL_PART, nullable=True), required=(),
        refusal={"type": ["string", "null"]},
        audio={"type": ["object", "null"]},
        tool_calls={"type": "array", "minItems": 1, "items": _TOOL_CALL},
        function_call={"type": ["object", "null"]}),
    "tool": {"type": "object", "required": ["role", "content", "tool_call_id"],
             "additionalProperties": False,
             "properties": {"role": {"const": "tool"}, "content": _content(_TEXT_PART),
                            "tool_call_id": {"type": "string"}}},
    "function": _message("function", {"type": ["string", "null"]}, required=("name",)),
}

_FUNCTION_TOOL = {
    "type": "object", "required": ["type", "function"], "additionalProperties": False,
    "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "additionalProperties": False,
                     "properties": {"name": _NAME, "description": {"type": "string"},
                                    "parameters": {"type": "object"},
                                    "strict": {"type": ["boolean", "null"]}}}}}

_RESPONSE_FORMAT = {"anyOf": [
    {"type": "object", "additionalProperties": False, "required": ["type"],
     "properties": {"type": {"enum": ["text", "json_object"]}}},
    {"type": "object", "additionalProperties": False, "required": ["type", "json_schema"],
     "properties": {
         "type": {"const": "json_schema"},
         "json_schema": {"type": "object", "required": ["name"], "additionalProperties": False,
                         "properties": {"name": _NAME, "description": {"type": "string"},
                                        "schema": {"type": "object"},
                                        "strict": {"type": ["boolean", "null"]}}}}},
]}

_NUMBER = {"type": ["number", "null"]}
OPENAI_CHAT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"enum": sorted(_MESSAGES)}},
            "allOf": [{"if": {"properties": {"role": {"const": role}}}, "then": schema}
                      for role, schema in _MESSAGES.items()]}},
        "tools": {"type": "array", "minItems": 1, "items": _FUNCTION_TOOL},
        "tool_choice": {"anyOf": [
            {"enum": ["none", "auto", "required"]},
            {"type": "object", "required": ["type", "function"],
             "properties": {"type": {"const": "function"},
                            "function": {"type": "object", "required": ["name"],
                                         "properties": {"name": {"type": "string"}}}}},
            {"type": "object", "required": ["type", "allowed_tools"],
             "properties": {"type": {"const": "allowed_tools"}}}]},
        "parallel_tool_calls": {"type": "boolean"},
        "response_format": _RESPONSE_FORMAT,
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 128},
        "stop": {"anyOf": [{"type": ["string", "null"]},
                           {"type": "array", "maxItems": 4, "items": {"type": "string"}}]},
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {"type": ["object", "null"], "additionalProperties": False,
                           "properties": {"include_usage": {"type": "boolean"},
                                          "include_obfuscation": {"type": "boolean"}}},
        "seed": {"type": ["integer", "null"]},
        "user": {"type": "string"},
        "safety_identifier": {"type": "string"},
        "prompt_cache_key": {"type": "string"},
        "reasoning_effort": {"enum": ["minimal", "low", "medium", "high", None]},
        "verbosity": {"enum": ["low", "medium", "high", None]},
        "presence_penalty": {**_NUMBER, "minimum": -2, "maximum": 2},
        "frequency_penalty": {**_NUMBER, "minimum": -2, "maximum": 2},
        "logit_bias": {"type": ["object", "null"]},
        "logprobs": {"type": ["boolean", "null"]},
        "top_logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
        "metadata": {"type": ["object", "null"]},
        "store": {"type": ["boolean", "null"]},
        "service_tier": {"enum": ["auto", "default", "flex", "scale", "priority", None]},
        "modalities": {"type": ["array", "null"]},
        "audio": {"type": ["object", "null"]},
        "prediction": {"type": ["object", "null"]},
        "web_search_options": {"type": "object"},
        "functions": {"type": "array"},
        "function_call": {},
        # Azure OpenAI extensions (2024-10-21 inference spec)
        "data_sources": {"type": "array"},
        "user_security_context": {"type": "object"},
    },
}
_OPENAI = Draft202012Validator(OPENAI_CHAT_SCHEMA)
_DATA_URL = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,(.*)$", re.S)


def _path(parts: Iterable[Any]) -> str:
    """``messages[1].tool_calls[0].function`` from a jsonschema path, as OpenAI names params."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    # anyOf/allOf failures carry the useful messages in their context; report the deepest.
    if not error.context:
        return [error]
    deepest = max(len(e.absolute_path) for e in error.context)
    if deepest <= len(error.absolute_path):
        return [error]
    return [leaf for e in error.context if len(e.absolute_path) == deepest
            for leaf in _leaf_errors(e)]


def _schema_problems(validator: Draft202012Validator, body: Any) -> list[str]:
    problems: list[str] = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path))):
        if error.validator == "additionalProperties" and not error.absolute_path:
            extra = sorted(set(body) - set(OPENAI_CHAT_SCHEMA["properties"]))
            problems += [f"Unrecognized request argument supplied: {k}" for k in extra]
            continue
        for leaf in _leaf_errors(error):
            problems.append(f"Invalid '{_path(leaf.absolute_path)}': {leaf.message}")
    return list(dict.fromkeys(problems))


def _tool_pairing(messages: list[Any]) -> list[str]:
    """The cross-message rules of tool calls."""
    problems: list[str] = []
    calls: set[str] | None = None  # the call ids of the assistant turn the current run answers
    unanswered: list[str] = []

    def close() -> None:
        if unanswered:
            problems.append("An assistant message with 'tool_calls' must be followed by tool "
                            "messages responding to each 'tool_call_id'. The following "
                            f"tool_call_ids did not have response messages: "
                            f"{', '.join(unanswered)}")

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            continue
        if m.get("role") == "tool":
            call_id = m.get("tool_call_id")
            if calls is None:
                problems.append(f"Invalid parameter: messages with role 'tool' must be a response "
                                f"to a preceeding message with 'tool_calls' (messages[{i}]).")
            elif call_id not in calls:
                problems.append(f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in "
                                "'tool_calls' of previous message.")
            elif call_id in unanswered:
                unanswered.remove(call_id)
            continue
        close()
        calls, unanswered = None, []
        tool_calls = m.get("tool_calls") if m.get("role") == "assistant" else None
        if isinstance(tool_calls, list):
            ids = [c.get("id") for c in tool_calls if isinstance(c, Mapping)]
            calls, unanswered = {str(x) for x in ids}, [str(x) for x in ids]
    close()
    return problems


def _message_rules(messages: list[Any]) -> list[str]:
    problems: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            continue
        role = m.get("role")
        if role == "assistant" and m.get("content") is None and not (
                m.get("tool_calls") or m.get("function_call") or m.get("audio")):
            problems.append(f"Invalid value for 'messages[{i}].content': expected a string, "
                            "got null.")
        parts = m.get("content") if isinstance(m.get("content"), list) else []
        for j, part in enumerate(parts):
            if isinstance(part, Mapping) and part.get("type") == "file" and role != "user":
                problems.append(f"Invalid 'messages[{i}].content[{j}]': file content parts are "
                                f"only allowed in user messages, not {role!r} ones.")
            if not (isinstance(part, Mapping) and part.get("type") == "image_url"):
                continue
            if role != "user":
                problems.append(f"Image URLs are only allowed for messages with role 'user', but "
                                f"this message with role '{role}' contains an image URL.")
                continue
            url = part.get("image_url", {}).get("url", "")
            problems += _image_url_problems(str(url), f"messages[{i}].content[{j}]")
    return problems


def _image_url_problems(url: str, where: str) -> list[str]:
    if url.startswith(("http://", "https://")):
        return []
    match = _DATA_URL.match(url)
    if match is None:
        return [f"Invalid '{where}.image_url.url': expected an http(s) URL or a base64 data URL "
                "of a png, jpeg, gif or webp image."]
    try:
        base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return [f"Invalid '{where}.image_url.url': the data URL is not valid base64."]
    return []


def validate_openai_chat(body: Any) -> list[str]:
    """Why the Chat Completions API would answer 400 to ``body`` ([] if it would accept it)."""
    if not isinstance(body, Mapping):
        return ["Invalid body: expected a JSON object."]
    problems = _schema_problems(_OPENAI, body)
    messages = body.get("messages")
    if isinstance(messages, list):
        problems += _message_rules(messages) + _tool_pairing(messages)
    if body.get("tool_choice") is not None and not body.get("tools"):
        problems.append("Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                        "'tools' are specified.")
    if body.get("parallel_tool_calls") is not None and not body.get("tools"):
        problems.append("Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only "
                        "allowed when 'tools' are specified.")
    if body.get("stream_options") is not None and not body.get("stream"):
        problems.append("The 'stream_options' parameter is only allowed when 'stream' is "
                        "enabled.")
    return problems


def openai_chat_validator(request: RecordedRequest) -> list[str]:
    """The OpenAI (and Azure) server hook: checks POSTs to ``.../chat/completions``."""
    if request.method != "POST" or not request.path.endswith("/chat/completions"):
        return []
    try:
        body = request.json
    except ValueError:
        return ["We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)"]
    return validate_openai_chat(body)


# --------------------------------------------------------------------------------------------
# Ollama /api/chat

_GO_STRING = {"type": ["string", "null"]}  # Go leaves a string empty on null
_GO_DURATION = r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$"  # time.ParseDuration
_PROPERTY = {"type": "object", "properties": {
    "type": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "description": _GO_STRING, "enum": {"type": ["array", "null"]}}}
OLLAMA_CHAT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": ["array", "null"], "items": {
            "type": "object", "required": ["role"],
            "properties": {
                "role": {"enum": ["system", "user", "assistant", "tool"]},
                "content": _GO_STRING,
                "thinking": _GO_STRING,
                "images": {"type": ["array", "null"], "items": {"type": "string"}},
                "tool_calls": {"type": ["array", "null"], "items": {
                    "type": "object", "required": ["function"],
                    "properties": {
                        "id": _GO_STRING,
                        "function": {"type": "object", "required": ["name"], "properties": {
                            "index": {"type": "integer"},
                            "name": {"type": "string", "minLength": 1},
                            "arguments": {"type": ["object", "null"]}}}}}},
                "tool_name": _GO_STRING,
                "tool_call_id": _GO_STRING}}},
        "tools": {"type": ["array", "null"], "items": {
            "type": "object", "required": ["type", "function"],
            "properties": {
                "type": {"const": "function"},
                "function": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "description": _GO_STRING,
                    "parameters": {"type": "object", "properties": {
                        "type": {"type": "string"},
                        "required": {"type": ["array", "null"], "items": {"type": "string"}},
                        "properties": {"type": ["object", "null"],
                                       "additionalProperties": _PROPERTY}}}}}}}},
        "stream": {"type": ["boolean", "null"]},
        "format": {"anyOf": [{"enum": ["", "json"]}, {"type": "object"}]},
        "options": {"type": ["object", "null"], "properties": {
            "num_predict": {"type": "integer"}, "num_ctx": {"type": "integer"},
            "seed": {"type": "integer"}, "top_k": {"type": "integer"},
            "temperature": {"type": "number"}, "top_p": {"type": "number"},
            "stop": {"type": "array", "items": {"type": "string"}}}},
        "keep_alive": {"anyOf": [{"type": "number"}, {"type": "string", "pattern": _GO_DURATION}]},
        "think": {"anyOf": [{"type": "boolean"}, {"enum": ["low", "medium", "high"]}]},
        "truncate": {"type": "boolean"},
        "shift": {"type": "boolean"},
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer"},
    },
}
_OLLAMA = Draft202012Validator(OLLAMA_CHAT_SCHEMA)


def validate_ollama_chat(body: Any) -> list[str]:
    """Why ``ollama serve`` would answer 400 to this ``/api/chat`` body ([] if it accepts it)."""
    if not isinstance(body, Mapping):
        return ["json: cannot unmarshal into Go value of type api.ChatRequest"]
    if not body.get("model"):
        return ["model is required"]
    problems = [f"json: cannot unmarshal '{_path(leaf.absolute_path)}': {leaf.message}"
                for error in _OLLAMA.iter_errors(body) for leaf in _leaf_errors(error)]
    for i, m in enumerate(body.get("messages") or ()):
        for j, image in enumerate((m.get("images") or ()) if isinstance(m, Mapping) else ()):
            try:  # Go decodes []byte from standard, padded base64
                base64.b64decode(str(image), validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"illegal base64 data in messages[{i}].images[{j}]")
    return list(dict.fromkeys(problems))


def ollama_chat_validator(request: RecordedRequest) -> list[str]:
    """The Ollama server hook: checks POSTs to ``/api/chat``."""
    if request.method != "POST" or request.path != "/api/chat":
        return []
    try:
        body = request.json
    except ValueError:
        return ["invalid character in request body: not JSON"]
    return validate_ollama_chat(body)

