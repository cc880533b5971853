"""Anthropic Messages API wire format: our types to the request JSON (the ``message`` object
back: ``_anthropic_reply``). Pure functions; no I/O.

Field names follow the API reference (https://docs.anthropic.com/en/api/messages) and
anthropic-sdk-python's generated types (``types/message.py``, ``usage.py``,
``message_create_params.py``, ``tool_choice_*_param.py``, ``thinking_config_*_param.py``).

Error bodies are mapped in ``anthropic`` (the provider edge).

Structured output: the API has no JSON mode. ``json_schema`` is served by an *answer tool*
whose ``input_schema`` is the schema; the model is made to call it and the call's input comes
back as ``ChatResponse.text`` (never as a tool call). ``json_object`` adds a system instruction.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.errors import InvalidRequestError
from router.providers._anthropic_thinking import (
    size_budget,
    thinking_config,
    unsigned_tool_turn,
)
from router.types import (
    ChatRequest,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
)

#: Key of the one-entry dict that holds tool input that was not a JSON object (the same
#: convention as the OpenAI wire, so a replayed call is sent back unchanged).
RAW_ARGUMENTS_KEY = "_raw"


_ANSWER_TOOL = "json_response"
_JSON_OBJECT_INSTRUCTION = ("Reply with a single valid JSON object and nothing else: no prose "
                            "before or after it, no code fences.")
_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_TOOL_CHOICE_WORDS = {"auto": "auto", "required": "any", "none": "none", "any": "any"}
_PLACEHOLDER_USER_TURN = "(continue)"


@dataclass(frozen=True, slots=True)
class AnswerTool:
    """The tool that carries a ``json_schema`` answer. ``wrapped``: the schema is not an object
    (``input_schema`` must be), so it sits under ``{"value": ...}`` and is unwrapped on return."""

    name: str
    wrapped: bool = False

    def unwrap(self, value: Mapping[str, Any]) -> Any:
        return value.get("value") if self.wrapped else value

    def text(self, value: Mapping[str, Any]) -> str:
        """The answer as JSON text."""
        return json.dumps(self.unwrap(value), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Request: messages


def _image_block(part: ImagePart) -> dict[str, Any]:
    if not part.is_data_url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    # data:[<media type>][;base64],<data>  (RFC 2397); the API wants base64 and a media type.
    header, _, payload = part.url[5:].partition(",")
    media_type, *params = header.split(";")
    if "base64" in params:
        data = payload
    else:
        data = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode("ascii")
    return {"type": "image",
            "source": {"type": "base64", "media_type": media_type or "image/png", "data": data}}


def _document_block(part: FilePart) -> dict[str, Any]:
    source = ({"type": "base64", "media_type": part.media_type, "data": part.data}
              if part.is_data_url else {"type": "url", "url": part.url})
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.filename:
        block["title"] = part.filename
    return block


def _content_blocks(content: str | list[ContentPart] | None) -> list[dict[str, Any]]:
    # Empty text blocks are rejected by the API ("text content blocks must be non-empty").
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            if not part.text:
                continue
            block: dict[str, Any] = {"type": "text", "text": part.text}
        elif isinstance(part, ImagePart):
            block = _image_block(part)
        else:
            block = _document_block(part)
        if part.cache_control is not None:
            block["cache_control"] = part.cache_control
        blocks.append(block)
    return blocks


def _mark_end(blocks: list[dict[str, Any]], message: Message) -> list[dict[str, Any]]:
    """A message's own cache breakpoint on its last block (the API takes it per block), or
    none when that is a thinking block (which the API refuses to mark)."""
    if message.cache_control is not None and blocks and blocks[-1]["type"] not in (
            "thinking", "redacted_thinking"):
        blocks[-1] = {**blocks[-1], "cache_control": message.cache_control}
    return blocks


def _tool_input(arguments: Mapping[str, Any]) -> dict[str, Any]:
    raw = arguments.get(RAW_ARGUMENTS_KEY)
    if len(arguments) == 1 and isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return dict(arguments)  # ``input`` must be an object: {"_raw": text} is one


def _turn(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """(role, blocks) of one non-system message."""
    if message.role == "tool":
        result: dict[str, Any] = {"type": "tool_result",
                                  "tool_use_id": message.tool_call_id or ""}
        blocks = _content_blocks(message.content)
        if blocks:
            result["content"] = blocks
        return "user", _mark_end([result], message)
    blocks = _content_blocks(message.content)
    if message.role == "assistant":
        blocks = [b for b in blocks if b["type"] == "text"]  # assistant turns hold no images
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                    "input": _tool_input(c.arguments)} for c in message.tool_calls or ()]
        state = message.provider_state
        if state is not None and state.get("kind") == "anthropic":
            # Signed thinking blocks go back first and unchanged (another kind's state is
            # never sent: the API rejects signatures it did not make).
            blocks[:0] = [dict(b) for b in state.get("thinking") or ()]
    return ("assistant" if message.role == "assistant" else "user"), _mark_end(blocks, message)


def _tool_results_first(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # In a user turn, tool_result blocks must come before any other content.
    results = [b for b in blocks if b["type"] == "tool_result"]
    return results + [b for b in blocks if b["type"] != "tool_result"] if results else blocks


def encode_system(messages: list[Message]) -> str | list[dict[str, Any]]:
    """The system messages as ``system``: their text joined, or text blocks when one of them
    holds a cache breakpoint (which only a block can carry)."""
    system = [m for m in messages if m.role == "system"]
    if not any(m.cache_control is not None or (isinstance(m.content, list) and any(
            p.cache_control is not None for p in m.content)) for m in system):
        return "\n\n".join(m.text for m in system if m.text)
    blocks: list[dict[str, Any]] = []
    for m in system:
        blocks += _mark_end([b for b in _content_blocks(m.content) if b["type"] == "text"], m)
    return blocks


def encode_messages(messages: list[Message]) -> tuple[str | list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
    """(system, API messages). System messages go to ``system`` (``encode_system``);
    consecutive turns of one role are merged, since the API wants user and assistant to
    alternate; tool messages become ``tool_result`` blocks of a user turn; empty turns are
    dropped. Cache breakpoints stay on the blocks they mark."""
    system = encode_system(messages)
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role, blocks = _turn(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = _tool_results_first(turn["content"])
    if turns and turns[0]["role"] != "user":
        # The first turn must be the user's; a conversation that opens with the assistant
        # (replayed history) gets a minimal user turn in front.
        turns.insert(0, {"role": "user", "content": [{"type": "text",
                                                       "text": _PLACEHOLDER_USER_TURN}]})
    if turns and turns[-1]["role"] == "assistant":
        _strip_final_whitespace(turns[-1]["content"])
    for turn in turns:  # one text block reads better (and is shorter) as a plain string
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            turn["content"] = content[0]["text"]
    return system, turns


def _strip_final_whitespace(blocks: list[dict[str, Any]]) -> None:
    # "final assistant content cannot end with trailing whitespace" (a prefill).
    last = blocks[-1]
    if last["type"] == "text":
        text = last["text"].rstrip()
        if text:
            last["text"] = text
        else:
            blocks.pop()


# --------------------------------------------------------------------------------------------
# Request: tools, structured output, thinking, the body


def encode_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        out["description"] = tool.description
    if tool.cache_control is not None:
        out["cache_control"] = tool.cache_control
    return out


def encode_tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI-style choice to Anthropic's: auto, required → any, none, a tool name or
    ``{"type": "function", "function": {"name": ...}}`` → tool; Anthropic dicts pass through."""
    if isinstance(choice, str):
        word = _TOOL_CHOICE_WORDS.get(choice)
        return {"type": word} if word else {"type": "tool", "name": choice}
    fn = choice.get("function")
    if choice.get("type") == "function" and isinstance(fn, dict):
        return {"type": "tool", "name": str(fn.get("name") or "")}
    return dict(choice)


def _answer_tool(fmt: ResponseFormat) -> tuple[AnswerTool, dict[str, Any]]:
    name = _TOOL_NAME.sub("_", fmt.name or _ANSWER_TOOL)[:64] or _ANSWER_TOOL
    schema: dict[str, Any] = dict(fmt.schema or {"type": "object"})
    wrapped = schema.get("type") != "object"
    if wrapped:
        schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    definition = {"name": name, "input_schema": schema,
                  "description": "Give your final answer by calling this tool once; its input "
                                 "is the answer."}
    return AnswerTool(name, wrapped), definition


def build_body(model: str, request: ChatRequest, *,
               stream: bool) -> tuple[dict[str, Any], AnswerTool | None]:
    """The request body and the answer tool (``json_schema`` only). ``request.extra`` is merged
    last and wins. ``seed`` has no Anthropic equivalent and is not sent. ``extra["server_tools"]``
    (Anthropic's own tools: ``{"type": "web_search_20250305", "name": "web_search"}``...) go
    into ``tools`` after the functions; the API runs them and the answer's text carries what
    they found (their own blocks are not returned)."""
    if request.n is not None:
        raise InvalidRequestError("anthropic returns one choice per call (n > 1 asked)")
    system, messages = encode_messages(request.messages)
    thinking = thinking_config(request)
    unsigned = thinking is not None and unsigned_tool_turn(messages)
    if unsigned:
        thinking = None
    max_tokens, thinking = size_budget(model, request, thinking)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    instructions: list[str] = []
    if thinking is not None:
        body["thinking"] = thinking
    else:  # thinking is incompatible with sampling changes: drop them, as for OpenAI o-series
        _put(body, "temperature", request.temperature)
        _put(body, "top_p", request.top_p)
    _put(body, "stop_sequences", request.stop or None)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    tools = [encode_tool(t) for t in request.tools or ()]
    tools += request.extra.get("server_tools") or ()  # web_search, ...: run by Anthropic
    choice = encode_tool_choice(request.tool_choice) if request.tool_choice is not None else None
    answer: AnswerTool | None = None
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        answer, definition = _answer_tool(fmt)
        tools.append(definition)
        if thinking is not None:  # forced tool use is incompatible with thinking: ask instead
            instructions.append(f"Give your final answer by calling the `{answer.name}` tool.")
        elif not request.tools:
            choice = {"type": "tool", "name": answer.name}
        elif choice is None or choice["type"] == "auto":
            choice = {"type": "any"}  # a user tool or the answer, never free text
    elif fmt is not None and fmt.type == "json_object":
        instructions.append(_JSON_OBJECT_INSTRUCTION)
    if isinstance(system, list):  # blocks (cache breakpoints): ours follow as one more block
        if instructions:
            system.append({"type": "text", "text": "\n\n".join(instructions)})
        body["system"] = system
    elif system or instructions:
        body["system"] = "\n\n".join([system, *instructions] if system else instructions)
    if tools:
        body["tools"] = tools
    if request.parallel_tool_calls is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None and tools:  # a choice without tools is meaningless: not sent
        body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    body.update(request.extra)  # an explicit "thinking" is already in body, unchanged
    body.pop("server_tools", None)  # in tools above
    if unsigned:
        body.pop("thinking", None)
    return body, answer


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value
