"""Gemini API wire format, request side: our types to a ``generateContent`` body. Pure; no I/O.

Field names follow the REST reference (https://ai.google.dev/api/generate-content) and
python-genai's ``_GenerateContentConfig_to_mldev`` / ``_Part_to_mldev`` converters. JSON Schemas
become the OpenAPI subset of the API's ``Schema`` object in ``_google_schema``.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from router.errors import InvalidRequestError
from router.providers._google_schema import to_gemini_schema
from router.types import (
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
)

#: The documented stand-in for a thought signature we do not have (history built by another
#: model or by hand): https://ai.google.dev/gemini-api/docs/thought-signatures . Gemini 3 answers
#: 400 when the first functionCall of a model turn comes back without any signature.
SKIP_SIGNATURE = "skip_thought_signature_validator"

#: OpenAI-style effort words to thinking budgets: low/medium/high as Google's OpenAI-compatible
#: endpoint maps them (https://ai.google.dev/gemini-api/docs/openai#thinking), none disables
#: thinking, minimal is the smallest budget every 2.5 model accepts (Flash-Lite's floor).
_EFFORT_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}
#: ``request.extra`` keys this module reads; every other key is merged into the body as given.
_EXTRA_READ = frozenset({"thinking_budget", "thinking_level", "include_thoughts", "top_k",
                         "safety_settings", "generationConfig"})
_MAJOR = re.compile(r"gemini-(\d+)")


def call_id(index: int, name: str) -> str:
    """The id of the ``index``-th function call of one answer when Gemini sends none: derived
    from position, so the same answer always gets the same ids."""
    return f"call_{index}_{name}"


def model_path(model: str) -> str:
    """``models/gemini-2.5-flash`` from ``gemini-2.5-flash`` or ``models/...``; other resource
    names (``tunedModels/x``) are kept."""
    name = model.removeprefix("models/")
    resource = name if "/" in name else f"models/{name}"
    return urllib.parse.quote(resource, safe="/")


def is_gemini3_or_later(model: str) -> bool:
    """Gemini 3 and later: thinking levels, and thought signatures checked on replayed calls."""
    match = _MAJOR.search(model)
    return match is not None and int(match.group(1)) >= 3


# --------------------------------------------------------------------------------------------
# Contents


def _data_url_part(url: str) -> dict[str, Any]:
    # RFC 2397: data:[<mediatype>][;base64],<data>
    header, sep, payload = url[5:].partition(",")
    mime, _, flags = header.partition(";")
    if not sep or not mime:
        raise InvalidRequestError("image data: URL needs a media type (data:image/png;base64,...)")
    if "base64" in flags.split(";"):
        data = "".join(payload.split())
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidRequestError("image data: URL is not valid base64") from e
    else:
        data = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
    return {"inlineData": {"mimeType": mime, "data": data}}


def _image_part(part: ImagePart | FilePart) -> dict[str, Any]:
    if part.is_data_url:
        return _data_url_part(part.url)
    if isinstance(part, FilePart):
        return {"fileData": {"fileUri": part.url, "mimeType": part.media_type}}
    # The API fetches public and signed http(s) URLs itself since Jan 2026
    # (https://ai.google.dev/gemini-api/docs/file-input-methods); mimeType is optional there.
    file_data: dict[str, Any] = {"fileUri": part.url}
    mime, _ = mimetypes.guess_type(urllib.parse.urlsplit(part.url).path)
    if mime:
        file_data["mimeType"] = mime
    return {"fileData": file_data}


def _user_parts(message: Message) -> list[dict[str, Any]]:
    if message.content is None or isinstance(message.content, str):
        return [{"text": message.content}] if message.content else []
    parts: list[dict[str, Any]] = []
    for p in message.content:
        if isinstance(p, TextPart):
            if p.text:
                parts.append({"text": p.text})
        else:
            parts.append(_image_part(p))
    return parts


def _model_parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": message.text}] if message.text else []
    state = message.provider_state
    if parts and state is not None and state.get("kind") == "google" \
            and "text_signature" in state:
        parts[0]["thoughtSignature"] = state["text_signature"]
    for c in message.tool_calls or ():
        part: dict[str, Any] = {"functionCall": {"name": c.name, "args": dict(c.arguments)}}
        call_state = c.provider_state
        # Signatures go back where they came, unchanged; another kind's state never goes.
        if call_state is not None and call_state.get("kind") == "google" \
                and "thought_signature" in call_state:
            part["thoughtSignature"] = call_state["thought_signature"]
        parts.append(part)
    return parts


def _tool_result(text: str) -> dict[str, Any]:
    # functionResponse.response is a Struct: a JSON object is passed as is, anything else wrapped.
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"result": text}


class _ToolNames:
    """Resolves a tool message to the function name Gemini needs (it has no call ids): by its
    tool_call_id in the preceding assistant message, else by position, else by ``name``."""

    def __init__(self) -> None:
        self._by_id: dict[str, str] = {}
        self._order: list[str] = []
        self._answered = 0

    def start(self, message: Message) -> None:
        calls = message.tool_calls or ()
        self._by_id = {c.id: c.name for c in calls}
        self._order = [c.name for c in calls]
        self._answered = 0

    def resolve(self, message: Message, index: int) -> str:
        name = self._by_id.get(message.tool_call_id or "")
        if name is None and self._answered < len(self._order):
            name = self._order[self._answered]
        name = name or message.name
        if not name:
            raise InvalidRequestError(
                f"messages[{index}] (role tool, tool_call_id {message.tool_call_id!r}) answers "
                "no tool call of a preceding assistant message")
        self._answered += 1
        return name


def encode_contents(messages: Sequence[Message], *, sign_calls: bool = False,
                    media_results: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, contents). Roles become user/model, tool results become functionResponse
    parts of a user turn, and consecutive turns of one role are merged (the API alternates).
    ``media_results`` (Gemini 3 and later: multimodal function responses): a tool result's
    images and documents go in its ``functionResponse.parts``; otherwise only its text goes."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names = _ToolNames()
    for i, m in enumerate(messages):
        if m.role == "system":
            if m.text:
                system.append(m.text)
            continue
        if m.role == "assistant":
            names.start(m)
            role, parts = "model", _model_parts(m)
        elif m.role == "tool":
            response: dict[str, Any] = {"name": names.resolve(m, i),
                                        "response": _tool_result(m.text)}
            if media_results and isinstance(m.content, list):
                media = [_image_part(p) for p in m.content if not isinstance(p, TextPart)]
                if media:
                    response["parts"] = media
            role, parts = "user", [{"functionResponse": response}]
        else:
            role, parts = "user", _user_parts(m)
        if not parts:
            continue  # the API rejects a content without parts
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if sign_calls:
        _sign_first_calls(contents)
    return system, contents


def _sign_first_calls(contents: list[dict[str, Any]]) -> None:
    for content in contents:
        if content["role"] != "model":
            continue
        first = next((p for p in content["parts"] if "functionCall" in p), None)
        if first is not None:
            first.setdefault("thoughtSignature", SKIP_SIGNATURE)


# --------------------------------------------------------------------------------------------
# Tools and generation config


def encode_tool(tool: Tool) -> dict[str, Any]:
    """A FunctionDeclaration; ``parameters`` omitted when the function takes none (the API
    rejects an OBJECT schema with empty properties)."""
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    params = to_gemini_schema(tool.parameters)
    if params.get("properties"):
        decl["parameters"] = params
    return decl


def encode_tool_config(choice: str | Mapping[str, Any], tools: Sequence[Tool]) -> dict[str, Any]:
    """OpenAI's tool_choice as ``toolConfig.functionCallingConfig`` (AUTO / ANY / NONE)."""
    name: str | None = None
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequestError("tool_choice object needs function.name")
    elif choice.lower() in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice.lower()]}}
    else:
        name = choice
    if name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice names {name!r}, which is not in tools")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _response_format(fmt: ResponseFormat, config: dict[str, Any]) -> None:
    if fmt.type == "text":
        return
    config["responseMimeType"] = "application/json"
    if fmt.type == "json_schema" and fmt.schema:
        config["responseSchema"] = to_gemini_schema(fmt.schema)


def _effort_config(effort: str, model: str) -> dict[str, Any]:
    effort = effort.lower()
    if effort not in _EFFORT_BUDGETS:
        raise InvalidRequestError(f"reasoning_effort must be one of "
                                  f"{', '.join(_EFFORT_BUDGETS)} (got {effort!r})")
    if is_gemini3_or_later(model):
        # Gemini 3 takes a thinking level (https://ai.google.dev/gemini-api/docs/thinking); LOW
        # and HIGH are the levels every Gemini 3 model accepts, and Pro cannot stop thinking.
        level = "HIGH" if effort in ("medium", "high") else "LOW"
        return {"thinkingLevel": level, "includeThoughts": True}
    budget = _EFFORT_BUDGETS[effort]
    return {"thinkingBudget": budget, "includeThoughts": budget != 0}


def thinking_config(request: ChatRequest, model: str) -> dict[str, Any] | None:
    """``thinkingConfig`` from ``extra["thinking_budget"]`` / ``extra["thinking_level"]``, else
    from ``reasoning_effort``; None when the caller asked for neither (the model's default)."""
    extra = request.extra
    budget = extra.get("thinking_budget")
    level = extra.get("thinking_level")
    if budget is not None and level is not None:
        raise InvalidRequestError("thinking_budget and thinking_level cannot be used together")
    if budget is None and level is None:
        if request.reasoning_effort is None:
            return None
        config = _effort_config(request.reasoning_effort, model)
    elif budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise InvalidRequestError("thinking_budget must be an integer (-1: dynamic, 0: off)")
        config = {"thinkingBudget": budget, "includeThoughts": budget != 0}
    else:
        config = {"thinkingLevel": str(level).upper(), "includeThoughts": True}
    if "include_thoughts" in extra:
        config["includeThoughts"] = bool(extra["include_thoughts"])
    return config


def generation_config(request: ChatRequest, model: str) -> dict[str, Any]:
    """``generationConfig``; ``candidateCount`` is never set (we read one candidate)."""
    config: dict[str, Any] = {}
    for key, value in (("maxOutputTokens", request.max_tokens),
                       ("temperature", request.temperature), ("topP", request.top_p),
                       ("topK", request.extra.get("top_k")),
                       ("stopSequences", request.stop or None), ("seed", request.seed)):
        if value is not None:
            config[key] = value
    if request.response_format is not None:
        _response_format(request.response_format, config)
    thinking = thinking_config(request, model)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    extra_config = request.extra.get("generationConfig")
    if isinstance(extra_config, dict):
        config.update(extra_config)
    return config


def build_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """The ``generateContent`` / ``streamGenerateContent`` body. ``request.extra``: the keys in
    ``_EXTRA_READ`` are read above (``safety_settings`` becomes ``safetySettings``); any other
    key is an API field merged into the body as given (``cachedContent``, ...)."""
    if request.n is not None:  # candidateCount is not offered: see the README's table
        raise InvalidRequestError("google targets return one choice per call (n > 1 asked)")
    gemini3 = is_gemini3_or_later(model)
    system, contents = encode_contents(request.messages, sign_calls=gemini3,
                                       media_results=gemini3)
    if not contents:
        raise InvalidRequestError("Gemini needs at least one user or assistant message")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": t} for t in system]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [encode_tool(t) for t in request.tools]}]
        if request.tool_choice is not None:
            body["toolConfig"] = encode_tool_config(request.tool_choice, request.tools)
    config = generation_config(request, model)
    if config:
        body["generationConfig"] = config
    if request.extra.get("safety_settings") is not None:
        body["safetySettings"] = request.extra["safety_settings"]
    body.update({k: v for k, v in request.extra.items() if k not in _EXTRA_READ})
    return body
