"""OpenAI Chat Completions streams with several choices (``n`` > 1): chunks carry one choice
each, interleaved by ``index`` (as in openai-python's recorded n=3 stream, and vLLM's); each
choice is assembled on its own. Used by ``_openai_stream.StreamAssembler`` only when the call
asked for n > 1, so one-choice streams pay nothing for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from router.providers._openai_wire import (
    choice_finish,
    parse_arguments,
    reasoning_text,
)
from router.providers.base import reply_text
from router.types import ChatChunk, Choice, ToolCall, ToolCallDelta

__all__ = ["ChoiceStates", "add_call_delta", "assembled_calls"]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _call_index(d: Mapping[str, Any], calls: dict[int, list[Any]]) -> int:
    """The call a tool-call delta belongs to. Servers that leave ``index`` out are followed by
    id: a known id is its call, a new id a new call, no id the call in progress."""
    index = d.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    call_id = d.get("id")
    if call_id:
        for i, call in calls.items():
            if call[0] == call_id:
                return i
        return len(calls)
    return max(calls) if calls else 0


def add_call_delta(d: Mapping[str, Any], calls: dict[int, list[Any]]) -> ToolCallDelta:
    """Fold one tool-call delta into ``calls`` (index -> [id, name, argument fragments]). A
    call's id and name may come in any of its deltas (the first may lack the id)."""
    index = _call_index(d, calls)
    raw_fn = d.get("function")
    fn: Mapping[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
    call = calls.setdefault(index, [None, None, []])
    if d.get("id"):
        call[0] = d["id"]
    if fn.get("name"):
        call[1] = fn["name"]
    args = fn.get("arguments") or ""
    if isinstance(args, dict):  # a whole object in one delta (some compatible servers)
        args = json.dumps(args, separators=(",", ":"), ensure_ascii=False)
    elif not isinstance(args, str):
        raise ValueError(f"tool-call arguments are {type(args).__name__}, not a string")
    if args:
        call[2].append(args)
    return ToolCallDelta(index=index, id=d.get("id"), name=fn.get("name"), arguments=args)


def assembled_calls(calls: Mapping[int, list[Any]]) -> list[ToolCall]:
    """The streamed calls in index order, arguments joined and parsed."""
    return [ToolCall(id=str(cid or ""), name=str(name or ""),
                     arguments=parse_arguments("".join(fragments)))
            for _, (cid, name, fragments) in sorted(calls.items())]


class _State:
    __slots__ = ("calls", "finish", "refusal", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.finish: str | None = None


class ChoiceStates:
    """The choices of one n > 1 stream."""

    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[int, _State] = {}

    @property
    def complete(self) -> bool:
        """Every choice that came carried ``finish_reason``. Fewer than ``n`` choices is a
        whole answer too: a compatible server that ignores ``n`` sends one."""
        states = self._states
        return bool(states) and all(s.finish is not None for s in states.values())

    def feed(self, choices: Any) -> ChatChunk | None:
        """The choices of one chunk; a ChatChunk (with ``index``) for the first that carries
        something. OpenAI sends one choice per chunk; a second one in the same chunk reaches
        the caller through the final chunk's ``final_choices``."""
        if choices is None:
            return None
        if not isinstance(choices, list):
            raise ValueError(f"choices is {type(choices).__name__}, not a list")
        out: ChatChunk | None = None
        for choice in choices:
            if not isinstance(choice, dict):
                raise ValueError(f"choice is {type(choice).__name__}, not an object")
            index = _int(choice.get("index"))
            state = self._states.get(index)
            if state is None:
                state = self._states[index] = _State()
            chunk = self._fold(state, index, choice)
            if out is None:
                out = chunk
        return out

    @staticmethod
    def _fold(state: _State, index: int, choice: Mapping[str, Any]) -> ChatChunk | None:
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            state.finish = reason
        delta = choice.get("delta")
        if delta is None:
            return None
        if not isinstance(delta, dict):
            raise ValueError(f"delta is {type(delta).__name__}, not an object")
        raw = delta.get("tool_calls")
        if raw is not None and not isinstance(raw, list):
            raise ValueError(f"tool_calls is {type(raw).__name__}, not a list")
        deltas = [add_call_delta(d, state.calls) for d in raw or () if isinstance(d, dict)]
        text = reply_text(delta.get("content"))
        refusal = reply_text(delta.get("refusal"))
        reasoning = reasoning_text(delta) or ""
        if text:
            state.text.append(text)
        if refusal:
            state.refusal.append(refusal)
        if not (text or deltas or reasoning or refusal):
            return None
        return ChatChunk(delta=text, tool_calls=deltas, reasoning_delta=reasoning,
                         refusal=refusal, index=index)

    def choices(self) -> list[Choice]:
        """Every choice, assembled, in index order."""
        out = []
        for index, state in sorted(self._states.items()):
            calls = assembled_calls(state.calls)
            text, refusal = "".join(state.text), "".join(state.refusal) or None
            out.append(Choice(index=index, text=text, tool_calls=calls,
                              finish_reason=choice_finish(state.finish, text, calls, refusal),
                              refusal=refusal))
        return out
