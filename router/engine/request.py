"""Turn what callers pass (OpenAI-shaped dicts or our objects) into a ChatRequest.

Every check happens here, before any target is tried: bad input raises InvalidRequestError
naming the offending parameter path (``messages[2].content[0].text``), never another
exception type, and nothing malformed (lone surrogates, NaN, values JSON cannot carry) is
ever sent. Leaf checks live in ``router.engine._checks``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from router.engine._checks import (
    beta_names,
    cache_control,
    describe,
    fail,
    flag,
    has_surrogates,
    integer,
    json_object_text,
    json_value,
    nonempty,
    number,
    optional_text,
    provider_state,
    server_tools,
    text,
)
from router.engine._request_tools import to_response_format, to_tool
from router.errors import InvalidRequestError
from router.types import (
    ChatRequest,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    Role,
    TextPart,
    ToolCall,
    checked_message,
)

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_PLAIN_ROLES = frozenset({"system", "user", "assistant"})
_KNOWN_PARAMS = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "seed", "user",
    "reasoning_effort", "n",
})
#: The params most calls give (then build_request takes its short way).
_COMMON_PARAMS = frozenset({"max_tokens", "temperature"})
#: An int this size passes ``integer(v, path, 1)`` (within 64 bits): checked inline.
_MAX_FAST_INT = 2**62
_IMAGE_SCHEMES = ("http://", "https://", "data:")
_PDF_PREFIX = "data:application/pdf;base64,"
#: Extra params the router reads itself (Anthropic's), checked for that; the rest as JSON.
_EXTRA_CHECKS: dict[str, Callable[[Any, str], Any]] = {"betas": beta_names,
                                                       "server_tools": server_tools}
#: Longest model string accepted (vendors' ids are well under 100 characters).
_MAX_MODEL_CHARS = 256


def validate_model(model: object) -> str:
    """``model`` if it is a usable model string (alias, provider:model, bare name or chain);
    InvalidRequestError otherwise."""
    if type(model) is str and model and len(model) <= _MAX_MODEL_CHARS and model.isprintable():
        return model  # isprintable() is False for control characters and lone surrogates
    if not isinstance(model, str):
        fail("model", f"must be a string, not {describe(model)}")
    if not model.strip():
        fail("model", "is empty")
    if len(model) > _MAX_MODEL_CHARS:
        fail("model", f"is longer than {_MAX_MODEL_CHARS} characters")
    if not model.isprintable():
        fail("model", "contains control characters or lone surrogates")
    return model


_MAX_TAGS = 64
_MAX_LABEL_CHARS = 256  # a request id, a tag key or value


def validate_call_options(timeout: object, request_id: object, tags: object) -> None:
    """The call's own options (not sent upstream): ``timeout`` a positive finite number of
    seconds, ``request_id`` and each tag key and value a short printable string."""
    if timeout is not None and number(timeout, "timeout") <= 0:
        fail("timeout", f"must be more than 0 seconds (got {timeout!r})")
    if request_id is not None:
        _label(request_id, "request_id")
    if tags is not None:
        if not isinstance(tags, Mapping):
            fail("tags", f"must be a mapping of strings to strings, not {describe(tags)}")
        if len(tags) > _MAX_TAGS:
            fail("tags", f"has {len(tags)} entries (at most {_MAX_TAGS})")
        for key, value in tags.items():
            _label(key, "tags (a key)")
            _label(value, f"tags[{key!r}]")


def _label(value: object, path: str) -> None:
    if not isinstance(value, str) or not value:
        fail(path, f"must be a non-empty string, not {describe(value)}")
    if len(value) > _MAX_LABEL_CHARS:
        fail(path, f"is longer than {_MAX_LABEL_CHARS} characters")
    if not value.isprintable():
        fail(path, "contains control characters or lone surrogates")


# --------------------------------------------------------------------------------------------
# Messages


def to_message(m: Message | Mapping[str, Any], i: int = 0) -> Message:
    """One message from a Message or an OpenAI chat dict."""
    if type(m) is dict and len(m) == 2:  # the common {"role": ..., "content": "text"}
        role, content = m.get("role"), m.get("content")
        if (type(content) is str and type(role) is str and role in _PLAIN_ROLES
                and (content.isascii() or not has_surrogates(content))):
            return checked_message(role, content)
    if isinstance(m, Message):
        return _checked_message(m, i)
    if not isinstance(m, Mapping):
        fail(f"messages[{i}]", f"must be a dict or Message, not {describe(m)}")
    for key in m:
        if not isinstance(key, str):
            fail(f"messages[{i}]", f"has a key that is not a string ({describe(key)})")
    role = _role(m.get("role"), i)
    calls = m.get("tool_calls")
    state = m.get("provider_state")
    return _message(role, _content(m.get("content"), i),
                    _tool_calls(calls, i) if calls is not None else None,
                    m.get("tool_call_id"), m.get("name"), i,
                    None if state is None else provider_state(
                        state, f"messages[{i}].provider_state"), m.get("cache_control"))


def _role(role: object, i: int) -> str:
    if not isinstance(role, str) or role not in _ROLES:
        fail(f"messages[{i}].role", "must be one of system, user, assistant, tool "
                                    f"(got {describe(role)})")
    return "system" if role == "developer" else role


def _message(role: str, content: str | list[ContentPart] | None,
             tool_calls: list[ToolCall] | None, tool_call_id: object, name: object,
             i: int, state: dict[str, Any] | None = None, cache: object = None) -> Message:
    call_id = optional_text(tool_call_id, f"messages[{i}].tool_call_id")
    if role == "tool" and not call_id:
        fail(f"messages[{i}]", "has role tool but no tool_call_id")
    return Message(role=cast(Role, role), content=content, tool_calls=tool_calls,
                   tool_call_id=call_id, name=optional_text(name, f"messages[{i}].name"),
                   provider_state=state,
                   cache_control=cache_control(cache, f"messages[{i}].cache_control"))


def _checked_message(m: Message, i: int) -> Message:
    """A Message built by the caller, checked like a dict (its fields are not type-checked
    on construction); a new one when its content or calls needed converting."""
    role = _role(m.role, i)
    content = _content(m.content, i)
    calls = _tool_calls(m.tool_calls, i) if m.tool_calls is not None else None
    checked = _message(role, content, calls, m.tool_call_id, m.name, i,
                       provider_state(m.provider_state, f"messages[{i}].provider_state"),
                       m.cache_control)
    if (m.content is None or isinstance(m.content, str)) and m.tool_calls is None:
        return m  # nothing converted: keep the caller's object
    return checked


def _content(c: object, i: int) -> str | list[ContentPart] | None:
    if c is None:
        return None
    if isinstance(c, str):
        return text(c, f"messages[{i}].content")
    if not isinstance(c, list | tuple):
        fail(f"messages[{i}].content", f"must be a string or a list of parts, not {describe(c)}")
    return [_part(p, i, j) for j, p in enumerate(c)]


def _part(p: object, i: int, j: int) -> ContentPart:
    where = f"messages[{i}].content[{j}]"
    if isinstance(p, TextPart):
        text(p.text, f"{where}.text")
        cache_control(p.cache_control, f"{where}.cache_control")
        return p
    if isinstance(p, ImagePart):
        _image_url(p.url, f"{where}.url")
        optional_text(p.detail, f"{where}.detail")
        cache_control(p.cache_control, f"{where}.cache_control")
        return p
    if isinstance(p, FilePart):
        _file_url(p.url, f"{where}.url")
        optional_text(p.filename, f"{where}.filename")
        cache_control(p.cache_control, f"{where}.cache_control")
        return p
    kind = p.get("type") if isinstance(p, Mapping) else None
    part = cast(Mapping[str, Any], p)
    cache = part.get("cache_control") if kind is not None else None
    if cache is not None:
        cache = cache_control(cache, f"{where}.cache_control")
    if kind == "text":
        return TextPart(text(part.get("text"), f"{where}.text"), cache_control=cache)
    if kind == "image_url":
        img = part.get("image_url")
        if isinstance(img, Mapping):
            return ImagePart(_image_url(img.get("url"), f"{where}.image_url.url"),
                             optional_text(img.get("detail"), f"{where}.image_url.detail"),
                             cache_control=cache)
        return ImagePart(_image_url(img, f"{where}.image_url"), cache_control=cache)
    if kind == "file":
        return _file_part(part.get("file"), f"{where}.file", cache)
    got = describe(kind) if isinstance(p, Mapping) else describe(p)
    fail(where, f"has unsupported type {got} (text, image_url and file are supported)")


def _file_part(file: object, path: str, cache: dict[str, Any] | None) -> FilePart:
    """OpenAI's ``{"type": "file", "file": {"file_data": "data:...", "filename": ...}}``."""
    if not isinstance(file, Mapping):
        fail(path, f"must be an object, not {describe(file)}")
    if "file_id" in file and "file_data" not in file:
        fail(f"{path}.file_id", "names a file in OpenAI's storage, which no other provider "
                                "reads: send the file itself as file_data (a data: URL)")
    return FilePart(_file_url(file.get("file_data"), f"{path}.file_data"),
                    optional_text(file.get("filename"), f"{path}.filename"), cache_control=cache)


def _file_url(url: object, path: str) -> str:
    url = text(url, path)
    if url.startswith(("https://", "http://")) and len(url) > len("https://"):
        return url  # fetched by the provider (Anthropic, Gemini); the others are skipped
    if not url.startswith(_PDF_PREFIX) or len(url) == len(_PDF_PREFIX):
        fail(path, "must be a PDF as a base64 data: URL (data:application/pdf;base64,...) "
                   "or an http(s) URL")
    return url


def _image_url(url: object, path: str) -> str:
    url = text(url, path)
    if not url.startswith(_IMAGE_SCHEMES):
        fail(path, "must be an http(s) or data: URL")
    if url.startswith("data:") and "," not in url:
        fail(path, "is a data: URL without data (data:image/png;base64,...)")
    return url


def _tool_calls(calls: object, i: int) -> list[ToolCall] | None:
    if not isinstance(calls, list | tuple):
        fail(f"messages[{i}].tool_calls", f"must be a list, not {describe(calls)}")
    return [_tool_call(c, i, j) for j, c in enumerate(calls)] or None


def _tool_call(c: object, i: int, j: int) -> ToolCall:
    where = f"messages[{i}].tool_calls[{j}]"
    if isinstance(c, ToolCall):
        text(c.id, f"{where}.id")
        nonempty(c.name, f"{where}.name")
        if not isinstance(c.arguments, dict):
            fail(f"{where}.arguments", f"must be a dict, not {describe(c.arguments)}")
        json_value(c.arguments, f"{where}.arguments")
        provider_state(c.provider_state, f"{where}.provider_state")
        return c
    if not isinstance(c, Mapping):
        fail(where, f"must be a dict or ToolCall, not {describe(c)}")
    fn, fn_path = (c["function"], f"{where}.function") if "function" in c else (c, where)
    if not isinstance(fn, Mapping):
        fail(fn_path, f"must be a dict, not {describe(fn)}")
    name = nonempty(fn.get("name"), f"{fn_path}.name")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        args = json_object_text(text(args, f"{fn_path}.arguments"), f"{fn_path}.arguments")
    elif isinstance(args, dict):
        json_value(args, f"{fn_path}.arguments")
    else:
        fail(f"{fn_path}.arguments", f"must be a JSON object, not {describe(args)}")
    call_id = optional_text(c.get("id"), f"{where}.id")
    state = c.get("provider_state")
    return ToolCall(id=call_id or f"call_{i}_{j}", name=name, arguments=args,
                    provider_state=None if state is None else provider_state(
                        state, f"{where}.provider_state"))


# --------------------------------------------------------------------------------------------
# The request


def _messages(messages: object) -> list[Message]:
    if type(messages) is not list and (  # the ABC check costs ~2 us: only off the common path
            isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Iterable)):
        fail("messages", f"must be a list of messages, not {describe(messages)}")
    # A plain loop: a list comprehension's own function costs ~1.5k CPU instructions a call.
    msgs: list[Message] = []
    append = msgs.append
    for i, m in enumerate(messages):
        append(to_message(m, i))
    if not msgs:
        fail("messages", "is empty")
    return msgs


def _max_tokens(params: Mapping[str, Any]) -> int | None:
    given, alias = params.get("max_tokens"), params.get("max_completion_tokens")
    if alias is not None:
        integer(alias, "max_completion_tokens", 1)
    return alias if given is None else integer(given, "max_tokens", 1)


def _stop(stop: object) -> list[str]:
    if isinstance(stop, str):
        return [text(stop, "stop")]
    if not isinstance(stop, list | tuple):
        fail("stop", f"must be a string or a list of strings, not {describe(stop)}")
    return [text(s, f"stop[{k}]") for k, s in enumerate(stop)]


def _tool_choice(choice: object) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return text(choice, "tool_choice")
    if not isinstance(choice, dict):
        fail("tool_choice", f"must be a string or an object, not {describe(choice)}")
    json_value(choice, "tool_choice")
    kind = choice.get("type")  # every vendor's object form is tagged by "type"
    if not isinstance(kind, str):
        fail("tool_choice.type", f"must be a string, not {describe(kind)}")
    if kind == "function":
        fn = choice.get("function")
        nonempty(fn.get("name") if isinstance(fn, dict) else None, "tool_choice.function.name")
    return cast(dict[str, Any], choice)


def _extra(params: Mapping[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key, value in params.items():
        if key in _KNOWN_PARAMS:
            continue
        check = _EXTRA_CHECKS.get(key, json_value)
        extra[text(key, "parameter names")] = check(value, key)
    return extra


def build_request(messages: Iterable[Message | Mapping[str, Any]],
                  params: Mapping[str, Any]) -> ChatRequest:
    """The ChatRequest of one call; unknown params go to ``extra`` (sent as-is)."""
    msgs = _messages(messages)
    if not params:
        return ChatRequest(msgs)
    if _COMMON_PARAMS.issuperset(params):  # the usual call: the same checks, in the same order
        given, temperature = params.get("max_tokens"), params.get("temperature")
        return ChatRequest(  # positional (keywords cost more): messages, max_tokens, temperature
            msgs, None if given is None else (
                given if type(given) is int and 0 < given <= _MAX_FAST_INT  # integer()'s test
                else integer(given, "max_tokens", 1)),
            None if temperature is None else number(temperature, "temperature"))
    get = params.get
    # Each check runs only for a param that was given (most calls give two or three).
    max_tokens, temperature, top_p = _max_tokens(params), get("temperature"), get("top_p")
    stop, tools, choice, parallel = get("stop"), get("tools"), get("tool_choice"), get(
        "parallel_tool_calls")
    rf, seed, user, effort, n = (get("response_format"), get("seed"), get("user"),
                                 get("reasoning_effort"), get("n"))
    if tools is not None and not isinstance(tools, list | tuple):
        fail("tools", f"must be a list, not {describe(tools)}")
    return ChatRequest(
        messages=msgs,
        max_tokens=max_tokens,
        temperature=None if temperature is None else number(temperature, "temperature"),
        top_p=None if top_p is None else number(top_p, "top_p"),
        stop=None if stop is None else _stop(stop),
        tools=[to_tool(t, i) for i, t in enumerate(tools)] if tools else None,
        tool_choice=None if choice is None else _tool_choice(choice),
        parallel_tool_calls=None if parallel is None else flag(parallel, "parallel_tool_calls"),
        response_format=None if rf is None else to_response_format(rf),
        seed=None if seed is None else integer(seed, "seed"),
        user=None if user is None else text(user, "user"),
        reasoning_effort=None if effort is None else text(effort, "reasoning_effort"),
        extra=_extra(params),
        # n = 1 is the default answer: only more asks anything of a target
        n=None if n is None or integer(n, "n", 1) == 1 else n,
    )


#: A ``cache_control`` value checked as every call checks it (for the proxy's own paths).
check_cache_control = cache_control

__all__ = ["InvalidRequestError", "build_request", "check_cache_control", "to_message",
           "to_response_format", "to_tool", "validate_call_options", "validate_model"]
