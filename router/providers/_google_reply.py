"""Gemini API wire format, answer side: a ``GenerateContentResponse`` to ChatResponse, and the
fold of a streamed sequence of them into ChatChunks. Pure; no I/O.

Shapes: https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse and
python-genai ``types.py`` (``FinishReason``, ``BlockedReason``, ``UsageMetadata``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from router.errors import ContentPolicyError, LlmError, ServerError
from router.providers._google_wire import call_id
from router.types import ChatChunk, ChatResponse, FinishReason, ToolCall, ToolCallDelta, Usage

#: Output withheld by a filter (safety family, recitation, unsupported language): an answer
#: left empty by one of these is a refusal (``refusal`` set, finish_reason content_filter), to
#: which the engine applies the route's content_policy action (router.engine.refusals).
FILTER_FINISHES = frozenset({
    "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})
#: The model failed to produce a usable turn (a bad function call and the like): left empty by
#: one of these, an answer is a retryable ServerError, never an empty success.
FAILED_FINISHES = frozenset({
    "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "OTHER",
    "NO_IMAGE", "IMAGE_OTHER",
})


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_usage(meta: Any) -> Usage | None:
    """``usageMetadata`` to Usage. ``promptTokenCount`` includes the cached tokens (as our
    input_tokens does); tool-use prompt tokens are input too; thoughts are output."""
    if not isinstance(meta, dict):
        return None
    thoughts = _int(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=_int(meta.get("promptTokenCount")) + _int(meta.get("toolUsePromptTokenCount")),
        output_tokens=_int(meta.get("candidatesTokenCount")) + thoughts,
        cached_tokens=_int(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def normalize_finish_reason(value: str | None, has_tool_calls: bool) -> FinishReason:
    """STOP → stop (tool_calls when the answer holds calls), MAX_TOKENS → length, the filter
    family → content_filter; anything else → stop / tool_calls."""
    if value == "MAX_TOKENS":
        return "length"
    if value in FILTER_FINISHES:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def _candidate(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first candidate; None when there is none; ``candidates`` of the wrong shape raises
    (ValueError: a ServerError once it reaches the provider template)."""
    candidates = data.get("candidates")
    if candidates is None or candidates == []:
        return None
    if not isinstance(candidates, list) or not isinstance(candidates[0], dict):
        raise ValueError(f"candidates is {type(candidates).__name__}, not a list of objects")
    return candidates[0]


def _block_error(feedback: Mapping[str, Any]) -> ContentPolicyError:
    reason = str(feedback.get("blockReason"))
    detail = feedback.get("blockReasonMessage")
    return ContentPolicyError(f"Gemini blocked the prompt ({reason})"
                              + (f": {detail}" if isinstance(detail, str) and detail else ""),
                              provider_code=reason, retryable=False)


def filter_notice(finish: str | None, candidate: Mapping[str, Any] | None = None) -> str | None:
    """The refusal of an answer a filter withheld: whole (``candidate`` given: nothing came,
    its ``finishMessage`` said why) or cut short after some content came."""
    if finish not in FILTER_FINISHES:
        return None
    if candidate is None:
        return f"Gemini withheld the rest (finishReason {finish})"
    message = candidate.get("finishMessage")
    suffix = f": {message}" if isinstance(message, str) and message else ""
    return f"Gemini withheld the answer (finishReason {finish}){suffix}"


def text_state(signature: str | None) -> dict[str, Any] | None:
    """The turn's state when its text part carried a thought signature."""
    return None if signature is None else {"kind": "google", "text_signature": signature}


def empty_answer_error(finish: str | None, candidate: Mapping[str, Any]) -> LlmError | None:
    """The error for an answer with no text and no calls, by finish reason (None: none; a
    filter's is a refusal, not an error)."""
    if finish in FAILED_FINISHES:
        message = candidate.get("finishMessage")
        suffix = f": {message}" if isinstance(message, str) and message else ""
        return ServerError(f"Gemini produced no usable answer (finishReason {finish}){suffix}",
                           provider_code=finish)
    return None


class _Parts:
    """The parts of one candidate: visible text, thought text, function calls, and the thought
    signatures to send back (https://ai.google.dev/gemini-api/docs/thought-signatures): a
    function call's on the call, the one of a text part (maybe empty, at a stream's end)
    as ``signature``."""

    def __init__(self, content: Any, first_index: int) -> None:
        self.text: list[str] = []
        self.thoughts: list[str] = []
        self.calls: list[ToolCall] = []
        self.signature: str | None = None
        if content is not None and not isinstance(content, dict):
            raise ValueError(f"content is {type(content).__name__}, not an object")
        parts = _map(content).get("parts")
        if parts is not None and not isinstance(parts, list):
            raise ValueError(f"parts is {type(parts).__name__}, not a list")
        for part in parts or ():
            if not isinstance(part, dict):
                continue
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                raise ValueError(f"text is {type(text).__name__}, not a string")
            if text:
                (self.thoughts if part.get("thought") is True else self.text).append(text)
            fc = part.get("functionCall")
            signature = part.get("thoughtSignature")
            if signature is not None and not isinstance(fc, dict):
                self.signature = str(signature)
            if isinstance(fc, dict):
                name = str(fc.get("name") or "")
                args = fc.get("args")
                if args is not None and not isinstance(args, dict):
                    raise ValueError(f"functionCall args are {type(args).__name__}, "
                                     "not an object")
                index = first_index + len(self.calls)
                self.calls.append(ToolCall(id=str(fc.get("id") or call_id(index, name)),
                                           name=name,
                                           arguments=dict(args) if isinstance(args, dict)
                                           else {},
                                           provider_state=None if signature is None else
                                           {"kind": "google",
                                            "thought_signature": str(signature)}))


def parse_response(data: Any, model: str) -> ChatResponse:
    """A whole ``GenerateContentResponse`` to ChatResponse (first candidate). A blocked prompt
    raises ContentPolicyError; an answer a filter withheld is a refusal."""
    if not isinstance(data, dict):
        raise ServerError("response is not a JSON object")
    candidate = _candidate(data)
    feedback = _map(data.get("promptFeedback"))
    if candidate is None:
        if feedback.get("blockReason"):
            raise _block_error(feedback)
        raise ServerError("response has no candidates")
    parts = _Parts(candidate.get("content"), 0)
    finish = candidate.get("finishReason")
    finish = finish if isinstance(finish, str) else None
    text = "".join(parts.text)
    whole = not text and not parts.calls
    if whole:
        error = empty_answer_error(finish, candidate)
        if error is not None:
            raise error
    return ChatResponse(
        refusal=filter_notice(finish, candidate if whole else None),
        provider_state=text_state(parts.signature),
        text=text,
        tool_calls=parts.calls,
        finish_reason=normalize_finish_reason(finish, bool(parts.calls)),
        usage=parse_usage(data.get("usageMetadata")) or Usage(),
        model=str(data.get("modelVersion") or model),
        id=data.get("responseId") if isinstance(data.get("responseId"), str) else None,
        reasoning="".join(parts.thoughts) or None,
    )


class StreamAssembler:
    """Folds streamed ``GenerateContentResponse`` objects into ChatChunks and the final chunk.

    Function calls arrive whole, one part each; they are numbered across the stream so ids
    match what ``parse_response`` gives the same answer. Until a chunk has been emitted, a
    blocked prompt raises (so the router can still fall back); after that, or when a filter
    withheld the answer, the final chunk says ``content_filter`` with the ``refusal``.
    """

    __slots__ = ("_calls", "_signature", "emitted", "finish_reason", "model", "refusal",
                 "response_id", "usage")

    def __init__(self) -> None:
        self._calls: list[ToolCall] = []
        self._signature: str | None = None
        self.refusal = ""  # a prompt block after content came, or a withheld answer
        self.emitted = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.response_id: str | None = None

    @property
    def complete(self) -> bool:
        """A candidate carried ``finishReason``."""
        return self.finish_reason is not None

    @property
    def finished(self) -> bool:
        # The event with the finishReason is the last (it carries the final usageMetadata);
        # nothing after it is worth waiting for.
        return self.finish_reason is not None

    def feed(self, data: Any) -> ChatChunk | None:
        """One parsed event (a one-element list is unwrapped, as streamGenerateContent may
        send); returns a ChatChunk when it carries text, thoughts or calls."""
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise ValueError(f"event is {type(data).__name__}, not an object")
        if isinstance(data.get("modelVersion"), str):
            self.model = data["modelVersion"]
        if isinstance(data.get("responseId"), str):
            self.response_id = data["responseId"]
        usage = parse_usage(data.get("usageMetadata"))
        if usage is not None:  # cumulative: the last one counts
            self.usage = usage
        candidate = _candidate(data)
        if candidate is None:
            feedback = _map(data.get("promptFeedback"))
            if feedback.get("blockReason"):
                if not self.emitted:
                    raise _block_error(feedback)
                self.refusal = _block_error(feedback).message
            return None
        parts = _Parts(candidate.get("content"), len(self._calls))
        if parts.signature is not None:
            self._signature = parts.signature
        finish = candidate.get("finishReason")
        if isinstance(finish, str):
            self.finish_reason = finish
        text, thoughts = "".join(parts.text), "".join(parts.thoughts)
        if not (text or thoughts or parts.calls):
            if not self.emitted:
                error = empty_answer_error(self.finish_reason, candidate)
                if error is not None:
                    raise error
                self.refusal = filter_notice(self.finish_reason, candidate) or self.refusal
            return None
        deltas = [ToolCallDelta(index=len(self._calls) + i, id=c.id, name=c.name,
                                arguments=json.dumps(c.arguments, separators=(",", ":"),
                                                     ensure_ascii=False))
                  for i, c in enumerate(parts.calls)]
        self._calls += parts.calls
        self.emitted = True
        return ChatChunk(delta=text, tool_calls=deltas, reasoning_delta=thoughts)

    def final_chunks(self) -> list[ChatChunk]:
        return [self.final_chunk()]

    def final_chunk(self) -> ChatChunk:
        """The last chunk: finish_reason, usage (None if the server sent none), the calls."""
        calls = list(self._calls)
        finish = normalize_finish_reason(self.finish_reason, bool(calls))
        return ChatChunk(finish_reason="content_filter" if self.refusal else finish,
                         usage=self.usage, final_tool_calls=calls,
                         refusal=self.refusal or filter_notice(self.finish_reason) or "",
                         provider_state=text_state(self._signature))
