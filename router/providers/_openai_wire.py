"""OpenAI Chat Completions wire format: our types to request JSON, and response JSON back (the
error bodies: ``_openai_errors``). Pure functions; no I/O.

Field names follow the API reference and openai-python's generated types
(``types/chat/completion_create_params.py``, ``chat_completion.py``, ``chat_completion_chunk.py``,
``completion_usage.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from router.errors import (
    ServerError,
)
from router.providers.base import reply_text
from router.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    ContentPart,
    FilePart,
    FinishReason,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)

#: Key of the one-entry dict that holds tool-call arguments that are not a JSON object.
RAW_ARGUMENTS_KEY = "_raw"

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",  # deprecated functions API
}
_TOOL_CHOICE_WORDS = frozenset({"auto", "none", "required"})
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
#: The API refuses longer tool-call ids ("Invalid 'messages[1].tool_calls[0].id': string too
#: long. Expected a string with maximum length 40").
MAX_CALL_ID = 40


def is_reasoning_model(model: str) -> bool:
    """o-series and gpt-5 models: they take ``max_completion_tokens`` and no sampling params."""
    return model.startswith(_REASONING_PREFIXES)


# --------------------------------------------------------------------------------------------
# Request


def encode_arguments(arguments: Mapping[str, Any]) -> str:
    """Tool-call arguments as the JSON string the API expects (raw text passed back as is)."""
    if len(arguments) == 1 and isinstance(arguments.get(RAW_ARGUMENTS_KEY), str):
        return str(arguments[RAW_ARGUMENTS_KEY])
    return json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)


def _encode_part(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, FilePart):
        return {"type": "file", "file": {"filename": part.filename or "document.pdf",
                                         "file_data": part.url}}
    image: dict[str, Any] = {"url": part.url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def tool_media(message: Message) -> list[dict[str, Any]]:
    """A tool message's images and documents, as the content of the user turn that follows
    the tool results: a tool message holds text only here, but the model should see them."""
    content = message.content if isinstance(message.content, list) else ()
    media = [_encode_part(p) for p in content if not isinstance(p, TextPart)]
    label = f"What tool call {wire_call_id(message.tool_call_id or '')} returned:"
    return [{"type": "text", "text": label}, *media] if media else []


def wire_call_id(call_id: str) -> str:
    """A tool-call id the API accepts. Ids made elsewhere can be longer than it allows (those
    made up for Gemini's calls embed the function name): they become a digest of themselves,
    the same for the call and for the tool message that answers it."""
    if len(call_id) <= MAX_CALL_ID:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


def encode_message(message: Message) -> dict[str, Any]:
    """One message in the Chat Completions shape."""
    out: dict[str, Any] = {"role": message.role}
    if message.role == "assistant":
        # Assistant content is text only; with tool calls it may be null.
        text = message.text
        out["content"] = text if text or not message.tool_calls else None
        if message.tool_calls:
            out["tool_calls"] = [
                {"id": wire_call_id(c.id), "type": "function",
                 "function": {"name": c.name, "arguments": encode_arguments(c.arguments)}}
                for c in message.tool_calls
            ]
    elif message.role == "tool":
        out["content"] = message.text
        out["tool_call_id"] = wire_call_id(message.tool_call_id or "")
    elif isinstance(message.content, list):
        out["content"] = [_encode_part(p) for p in message.content]
    else:
        out["content"] = message.content or ""
    if message.name is not None and message.role != "tool":
        out["name"] = message.name
    return out


def cached_message(message: Message) -> dict[str, Any]:
    """``encode_message`` with the prompt-cache breakpoints kept, as gateways in front of
    Anthropic take them in this shape (OpenRouter, LiteLLM): on each marked part, and a
    message's own on its content (text content becomes one marked text part)."""
    out = encode_message(message)
    content = out.get("content")
    if isinstance(content, list) and isinstance(message.content, list):
        for part, source in zip(content, message.content, strict=True):
            if source.cache_control is not None:
                part["cache_control"] = source.cache_control
    if message.cache_control is not None:
        if isinstance(content, str) and content:
            out["content"] = [{"type": "text", "text": content,
                               "cache_control": message.cache_control}]
        elif isinstance(content, list) and content:
            content[-1]["cache_control"] = message.cache_control
    return out


def encode_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def encode_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """``auto``/``none``/``required`` and dicts pass through; any other string names a tool."""
    if isinstance(choice, str) and choice not in _TOOL_CHOICE_WORDS:
        return {"type": "function", "function": {"name": choice}}
    return choice


def encode_response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def build_body(
    model: str,
    request: ChatRequest,
    stream: bool,
    max_tokens_field: str,
    include_usage: bool,
    drop_sampling: bool,
    keep_cache: bool = False,
) -> dict[str, Any]:
    """The request body; ``request.extra`` is merged last and wins. (Positional parameters:
    the hot path passes them so, a keyword call costing ~700 CPU instructions a keyword.)
    ``keep_cache``: send prompt-cache breakpoints (``cached_message``), for gateways."""
    # A plain loop (a list comprehension's own function costs ~1.5k CPU instructions a call).
    messages: list[dict[str, Any]] = []
    append = messages.append
    seen: list[dict[str, Any]] = []  # images and documents of the tool results just before
    for m in request.messages:
        role = m.role
        if seen and role != "tool":
            append({"role": "user", "content": seen})
            seen = []
        # A plain system/user turn is {"role", "content"} as given (encode_message's result).
        if keep_cache:
            append(cached_message(m))
        else:
            append({"role": role, "content": m.content or ""}
                   if (role == "user" or role == "system") and m.name is None
                   and type(m.content) is not list else encode_message(m))
        if role == "tool" and type(m.content) is list:
            seen += tool_media(m)
    if seen:
        append({"role": "user", "content": seen})
    body: dict[str, Any] = {"model": model, "messages": messages}
    r = request
    if r.max_tokens is not None:
        body[max_tokens_field] = r.max_tokens
    # Each optional field only when given (most calls give none of them).
    if not drop_sampling:
        if r.temperature is not None:
            body["temperature"] = r.temperature
        if r.top_p is not None:
            body["top_p"] = r.top_p
    if r.stop:
        body["stop"] = r.stop
    if r.seed is not None:
        body["seed"] = r.seed
    if r.user is not None:
        body["user"] = r.user
    if r.reasoning_effort is not None:
        body["reasoning_effort"] = r.reasoning_effort
    if r.n is not None:
        body["n"] = r.n
    if r.tools:
        body["tools"] = [encode_tool(t) for t in r.tools]
        if keep_cache:
            for tool, encoded in zip(r.tools, body["tools"], strict=True):
                if tool.cache_control is not None:
                    encoded["cache_control"] = tool.cache_control
        if r.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = r.parallel_tool_calls
    if r.tool_choice is not None:
        body["tool_choice"] = encode_tool_choice(r.tool_choice)
    if r.response_format is not None:
        body["response_format"] = encode_response_format(r.response_format)
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    if r.extra:
        body.update(r.extra)
        if not stream and "stream_options" in r.extra:  # the API refuses it without stream
            del body["stream_options"]
    return body


# --------------------------------------------------------------------------------------------
# Response


def parse_arguments(text: Any) -> dict[str, Any]:
    """Arguments JSON to a dict. Empty → {}; not a JSON object → ``{"_raw": text}`` (the model
    produced bad JSON: the caller decides; we do not crash, and ``encode_arguments`` sends the
    text back unchanged if the call is replayed).

    The API sends a JSON string; an object (as some compatible servers send) is taken as the
    decoded arguments. Any other type is the wrong shape (ValueError)."""
    if isinstance(text, dict):
        return text
    if text is None:
        return {}
    if not isinstance(text, str):
        raise ValueError(f"tool-call arguments are {type(text).__name__}, not a JSON string")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {RAW_ARGUMENTS_KEY: text}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: text}


def normalize_finish_reason(value: Any, has_tool_calls: bool) -> FinishReason:
    """Known values map through (function_call → tool_calls); unknown or missing → stop, or
    tool_calls when the answer holds tool calls."""
    reason = _FINISH_REASONS.get(value) if isinstance(value, str) else None
    if reason is None:
        return "tool_calls" if has_tool_calls else "stop"
    return reason


def parse_usage(data: Any) -> Usage | None:
    """``usage`` to Usage; missing ``*_tokens_details`` count as 0 (so does any count that is
    not a JSON integer). ``prompt_tokens`` includes the cached tokens, as ours does."""
    if type(data) is not dict:
        return None
    get = data.get
    prompt, completion = get("prompt_tokens_details"), get("completion_tokens_details")
    inp, out = get("prompt_tokens"), get("completion_tokens")
    # DeepSeek's own field when it sends no details (api-docs.deepseek.com/guides/kv_cache:
    # prompt_tokens = prompt_cache_hit_tokens + prompt_cache_miss_tokens).
    cached = (prompt.get("cached_tokens") if type(prompt) is dict
              else get("prompt_cache_hit_tokens", 0))
    reasoning = completion.get("reasoning_tokens") if type(completion) is dict else 0
    # input, output, cached and reasoning tokens (positional: a keyword call costs ~2k more
    # CPU instructions); ``type(x) is int`` leaves out bools, as JSON does
    return Usage(inp if type(inp) is int else 0, out if type(out) is int else 0,
                 cached if type(cached) is int else 0,
                 reasoning if type(reasoning) is int else 0)


def reasoning_text(message: Mapping[str, Any]) -> str | None:
    """The model's thinking in a message or delta, if it sent any."""
    # Not OpenAI: DeepSeek, vLLM and others put thinking in reasoning_content (or reasoning).
    if "reasoning_content" not in message and "reasoning" not in message:
        return None
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def first_choice(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first choice, None when there is none; a ``choices`` of the wrong shape raises."""
    choices = data.get("choices")
    if choices is None or choices == []:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ValueError(f"choices is {type(choices).__name__} of "
                         f"{type(choices[0]).__name__ if isinstance(choices, list) else '?'}")
    return choices[0]


def _calls(message: Mapping[str, Any]) -> list[ToolCall]:
    raw = message.get("tool_calls")
    if raw is not None and not isinstance(raw, list):
        raise ValueError(f"tool_calls is {type(raw).__name__}, not a list")
    calls = [
        ToolCall(id=str(c.get("id") or ""), name=str(fn.get("name") or ""),
                 arguments=parse_arguments(fn.get("arguments")))
        for c in raw or ()
        if isinstance(c, dict) and isinstance(fn := c.get("function"), Mapping)
    ]
    if not calls and isinstance(fc := message.get("function_call"), Mapping):
        calls.append(ToolCall(id="", name=str(fc.get("name") or ""),
                              arguments=parse_arguments(fc.get("arguments"))))
    return calls


def parse_completion(data: Any, model: str, several: bool = False) -> ChatResponse:
    """A ``chat.completion`` object to ChatResponse (first choice; every choice in
    ``choices`` when there are several or ``several`` were asked for). Content may be a
    string, null or a list of text parts; anything else is the wrong shape (ValueError)."""
    if not isinstance(data, dict):
        raise ValueError(f"completion is {type(data).__name__}, not an object")
    choices = data.get("choices")
    choice: Mapping[str, Any]
    if type(choices) is list and choices and type(choices[0]) is dict:
        choice = choices[0]  # the common shape, checked as first_choice checks it
    else:
        found = first_choice(data)
        if found is None:
            raise ServerError("completion has no choices")
        choice = found
    message = choice.get("message")
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise ValueError(f"message is {type(message).__name__}, not an object")
    has_calls = message.get("tool_calls") is not None or message.get("function_call") is not None
    calls = _calls(message) if has_calls else []
    content = message.get("content")
    if type(content) is not str or not content:
        content = reply_text(content)
    refusal = message.get("refusal")  # structured outputs' refusal: never text (choice_finish)
    if refusal is not None:
        refusal = reply_text(refusal) or None
    reason = choice.get("finish_reason")
    finish = _FINISH_REASONS.get(reason) if type(reason) is str else None
    rid = data.get("id")
    # Every field positional, in ChatResponse's order: keywords cost ~4k CPU instructions more.
    response = ChatResponse(
        content,  # text
        calls,  # tool_calls
        choice_finish(reason, content, calls, refusal) if refusal
        else finish or normalize_finish_reason(reason, bool(calls)),  # finish_reason
        parse_usage(data.get("usage")) or Usage(),  # usage
        str(data.get("model") or model),  # model
        "", None, [],  # target, cost_usd, attempts (the engine sets them)
        rid if type(rid) is str else None,  # id
        None,  # request_id (HttpProvider sets it)
        reasoning_text(message) if "reasoning_content" in message or "reasoning" in message
        else None,  # reasoning (the call only when there may be some)
        refusal,  # refusal
        [],  # choices (set below when several)
        None,  # provider_state
    )
    if type(choices) is list and (several or len(choices) > 1):
        response.choices = sorted((_choice(c) for c in choices), key=lambda c: c.index)
    return response


def _choice(choice: Any) -> Choice:
    """One choice of an n > 1 completion."""
    if not isinstance(choice, dict):
        raise ValueError(f"choice is {type(choice).__name__}, not an object")
    message = choice.get("message") or {}
    if not isinstance(message, dict):
        raise ValueError(f"message is {type(message).__name__}, not an object")
    calls = _calls(message)
    index = choice.get("index")
    text = reply_text(message.get("content"))
    refusal = reply_text(message.get("refusal")) or None
    return Choice(index=index if type(index) is int else 0, text=text, tool_calls=calls,
                  finish_reason=choice_finish(choice.get("finish_reason"), text, calls, refusal),
                  refusal=refusal)


def choice_finish(reason: Any, text: str, calls: list[ToolCall],
                  refusal: str | None) -> FinishReason:
    """content_filter for a refusal instead of content (an answer, which the engine meets with
    the route's content_policy action: router.engine.refusals); else the choice's reason."""
    return "content_filter" if refusal and not text and not calls else \
        normalize_finish_reason(reason, bool(calls))
