"""Mid-stream recovery (``stream: {recover: replay | continue | off}``): what a committed
stream does when it fails after its first chunk reached the caller.

The failed attempt ends (billed at its estimated usage) and the call's walk goes on from it,
as before the first chunk: the action table picks the same target again (after its backoff)
or the next one, within the call's deadline and budgets. Each new attempt is opened by
``Resume``:

- replay: the same request. Its output is read without yielding until it has reproduced what
  the caller has, character for character, in the order it was delivered (text, refusal
  pieces, each tool call's name and arguments); from there the rest goes to the caller. The first
  differing character closes it (``ResumeDiverged``, class stream_interrupted, whose default
  action moves on to the next target; ``on: {stream_interrupted: fail}`` stops there).
- continue: a target whose model declares ``prefill`` (with no tool call under way and no
  thinking asked) gets the delivered text as an assistant message placed last, and its output
  is appended. Every other target replays: it is never sent a prefill it would reject.

A stream that never fails pays for none of this beyond keeping what it delivered
(``Delivered``: one append per chunk with text).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import replace

from router.engine.billed import Billed, Spent
from router.engine.call import Call
from router.engine.decision import Decision, Done, Outcome, Try
from router.engine.drive import drive
from router.engine.opened import Opened, close_stream, elapsed_ms, has_content
from router.errors import InvalidRequestError, LlmError, NetworkError, StreamInterruptedError
from router.obs import log
from router.plan.routes import Recover, Target
from router.policy.pricing import cost_usd, price_of
from router.policy.tokens import estimate_prompt_tokens
from router.providers.base import Provider
from router.specs import Timeouts
from router.types import ChatChunk, ChatRequest, Message, ToolCallDelta, Usage

MODES: tuple[Recover, ...] = ("replay", "continue", "off")
TEXT = -1  # the key of the text in a segment; a tool call's is its index
REFUSAL = -2  # the key of refusal pieces (``chunk.refusal``), replayed like text
_CHARS_PER_TOKEN = 4  # the estimate of a failed attempt's output tokens


def recover_mode(value: object, default: Recover) -> Recover:
    """The call's ``recover=`` checked (InvalidRequestError), or the route's ``default``."""
    if value is None:
        return default
    for mode in MODES:
        if value == mode:
            return mode
    raise InvalidRequestError(f"recover must be one of replay, continue, off (got {value!r})")


class Delivered:
    """What the caller has been given. The relay appends each text delta to ``parts`` and
    passes each chunk's tool-call deltas to ``note_tools`` and refusal to ``note_refusal``;
    nothing else is kept."""

    __slots__ = ("ids", "names", "parts", "tools")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tools: list[tuple[int, int, str]] = []  # (len(parts) then, index, arguments)
        self.names: dict[int, str] = {}
        self.ids: dict[int, str] = {}

    def note_tools(self, deltas: Sequence[ToolCallDelta]) -> None:
        at = len(self.parts)
        for t in deltas:
            if t.name:
                self.names.setdefault(t.index, t.name)
            if t.id:
                self.ids.setdefault(t.index, t.id)
            self.tools.append((at, t.index, t.arguments))

    def note_refusal(self, piece: str) -> None:
        """A refusal piece went out: a replay reproduces it too, never repeats it."""
        self.tools.append((len(self.parts), REFUSAL, piece))

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def segments(self) -> list[tuple[int, str]]:
        """The delivered output as runs of one stream each (TEXT, REFUSAL or a tool call's
        index), in the order delivered."""
        segs: list[tuple[int, str]] = []

        def add(key: int, piece: str) -> None:
            if segs and segs[-1][0] == key:
                segs[-1] = (key, segs[-1][1] + piece)
            else:
                segs.append((key, piece))

        pos = 0
        for at, index, arguments in self.tools:
            if at > pos:
                add(TEXT, "".join(self.parts[pos:at]))
                pos = at
            add(index, arguments)
        if pos < len(self.parts):
            add(TEXT, "".join(self.parts[pos:]))
        return segs


class ResumeDiverged(StreamInterruptedError):
    """A replay whose output differed from what the caller already has: it was closed at the
    first differing character."""


def fix_chunk(chunk: ChatChunk, delivered: Delivered) -> None:
    """A chunk of a recovered attempt as the caller may see it: no reasoning (the caller has
    the first attempt's), the delivered tool-call ids in the assembled calls."""
    chunk.reasoning_delta = ""
    calls = chunk.final_tool_calls
    if calls and delivered.ids:
        chunk.final_tool_calls = [replace(c, id=delivered.ids.get(i, c.id))
                                  for i, c in enumerate(calls)]


class _Replay:
    """Reads a replay against the delivered segments (see the module docstring)."""

    __slots__ = ("delivered", "done", "i", "j", "read", "segs")

    def __init__(self, delivered: Delivered, segs: list[tuple[int, str]]) -> None:
        self.delivered, self.segs = delivered, segs
        self.i = self.j = self.read = 0
        self.done = not segs

    def take(self, chunk: ChatChunk) -> ChatChunk | None:
        """``chunk`` cut to what goes beyond the delivered output; None while the replay is
        still reproducing it. Raises ResumeDiverged at the first differing character."""
        if chunk.delta:
            self.read += len(chunk.delta)
            chunk.delta = self._feed(TEXT, chunk.delta)
        if chunk.tool_calls:
            chunk.tool_calls = self._tools(chunk.tool_calls)
        if chunk.refusal:
            self.read += len(chunk.refusal)
            chunk.refusal = self._feed(REFUSAL, chunk.refusal)
        if not self.done:
            if chunk.finish_reason is not None or chunk.final_tool_calls is not None:
                raise ResumeDiverged(f"the replay ended after {self.read} characters, short "
                                     "of what the caller already has")
            return None
        fix_chunk(chunk, self.delivered)
        return chunk if has_content(chunk) else None

    def _feed(self, key: int, s: str) -> str:
        """What of ``s`` (a piece of stream ``key``) goes beyond the delivered output."""
        while not self.done:
            seg_key, text = self.segs[self.i]
            last = self.i == len(self.segs) - 1
            if key == seg_key:
                n = min(len(text) - self.j, len(s))
                if s[:n] != text[self.j:self.j + n]:
                    raise self._diverged()
                self.j += n
                if self.j == len(text) and last:
                    self.done = True
                    return s[n:]
                if n < len(s):  # this stream goes on where the delivered output moved on
                    raise self._diverged()
                return ""
            if self.j < len(text):
                raise self._diverged()
            if last:
                self.done = True
            elif self.segs[self.i + 1][0] == key:
                self.i, self.j = self.i + 1, 0
            else:
                raise self._diverged()
        return s

    def _tools(self, deltas: Sequence[ToolCallDelta]) -> list[ToolCallDelta]:
        out: list[ToolCallDelta] = []
        names = self.delivered.names
        for t in deltas:
            known = t.index in names
            if known and t.name and t.name != names[t.index]:
                raise self._diverged()
            self.read += len(t.arguments)
            was_done = self.done
            extra = self._feed(t.index, t.arguments)
            if known:
                if extra:  # its id and name were delivered already
                    out.append(ToolCallDelta(t.index, None, None, extra))
            elif self.done:
                out.append(t if was_done else replace(t, arguments=extra))
        return out

    def _diverged(self) -> ResumeDiverged:
        return ResumeDiverged(f"the replay differed from the delivered output after "
                              f"{self.read} characters")


class _Continue:
    """Reads the continuation of a prefill: appended as it comes, except whitespace at its
    start where the prefill lost trailing whitespace the caller already has (Anthropic
    refuses a prefill that ends with whitespace)."""

    __slots__ = ("delivered", "lead", "read")

    def __init__(self, delivered: Delivered, lead: bool) -> None:
        self.delivered, self.lead, self.read = delivered, lead, 0

    def take(self, chunk: ChatChunk) -> ChatChunk | None:
        fix_chunk(chunk, self.delivered)
        if chunk.delta:
            self.read += len(chunk.delta)
            if self.lead:
                chunk.delta = chunk.delta.lstrip()
                self.lead = not chunk.delta
        return chunk if has_content(chunk) else None


class Resume:
    """The opener of a committed stream's recovery attempts (an ``attempt.Opener``)."""

    def __init__(self, call: Call, delivered: Delivered, mode: Recover,
                 request: ChatRequest) -> None:
        self.delivered = delivered
        self.segments = delivered.segments()
        text = delivered.text
        self.prefill = text.rstrip()
        self.lead = len(text) > len(self.prefill)
        targets = call.route.targets
        self.targets = {t.key: t for t in targets}
        ok = (mode == "continue" and bool(self.prefill) and not delivered.tools
              and request.reasoning_effort is None and "thinking" not in request.extra)
        self.prefill_keys = frozenset(t.key for t in targets if ok and t.capabilities.prefill)
        self.prompt_tokens = estimate_prompt_tokens(request)
        self.prefilled = 0  # characters of delivered text the attempt in flight was given

    async def __call__(self, provider: Provider, model: str, request: ChatRequest,
                       timeouts: Timeouts) -> Opened:
        key = f"{provider.name}:{model}"
        match: _Replay | _Continue
        if key in self.prefill_keys:
            request = replace(request, messages=[*request.messages,
                                                 Message("assistant", self.prefill)])
            match, self.prefilled = _Continue(self.delivered, self.lead), len(self.prefill)
        else:
            match, self.prefilled = _Replay(self.delivered, self.segments), 0
        began = time.perf_counter()
        agen = provider.stream(model, request, timeouts)
        try:
            while True:
                try:
                    chunk = await agen.__anext__()
                except StopAsyncIteration:
                    raise NetworkError("the resumed stream ended before any new content "
                                       "(no terminator)") from None
                out = match.take(chunk)
                if out is not None:
                    return Opened(agen, out, elapsed_ms(began))
        except LlmError as e:
            await close_stream(agen)
            if match.read:
                raise Billed(e, self.spent(key, match.read)) from e
            raise
        except BaseException:
            await close_stream(agen)
            raise

    def spent(self, key: str, chars: int) -> Spent:
        """The estimated usage and cost of an attempt of ``key`` that read ``chars``
        characters of output: the whole prompt (a prefill included) and those characters."""
        usage = Usage(input_tokens=self.prompt_tokens + self.prefilled // _CHARS_PER_TOKEN,
                      output_tokens=-(-chars // _CHARS_PER_TOKEN))
        target = self.targets.get(key)
        return usage, (cost_usd(price_of(target), usage) if target is not None else None)


def committed_spent(target: Target, request: ChatRequest, chars: int,
                    resume: Resume | None) -> Spent:
    """The estimated usage and cost of committed attempt on ``target`` that had delivered
    ``chars`` characters of text in all when it failed."""
    if resume is None:
        usage = Usage(input_tokens=estimate_prompt_tokens(request),
                      output_tokens=-(-chars // _CHARS_PER_TOKEN))
        return usage, cost_usd(price_of(target), usage)
    return resume.spent(target.key, chars - resume.prefilled)


async def resume_stream(call: Call, gen: Generator[Decision, Outcome, None],
                        request: ChatRequest, resume: Resume,
                        err: LlmError) -> tuple[Opened, Try]:
    """Go on with the call's walk after its committed attempt failed with ``err`` (already
    ended): the next attempt that reproduces the delivered output and goes beyond it, or
    StreamInterruptedError when none does."""
    original = err

    def failed(done: Done) -> Exception:
        diverged = isinstance(done.error, ResumeDiverged)
        return interrupted(call, original, resume.delivered.text,
                           "resume_diverged" if diverged else None, done)

    log.emit("stream_resuming", request_id=call.request_id, alias=call.alias,
             target=err.target, error_class=err.error_class.value,
             delivered_chars=sum(map(len, resume.delivered.parts)))
    return await drive(call, gen, request, resume, first=gen.send(err), keep=True,
                       failed=failed)


def interrupted(call: Call, err: LlmError, text: str, cause: str | None = None,
                done: Done | None = None) -> StreamInterruptedError:
    """The StreamInterruptedError that ends a committed stream that ``err`` broke (logged,
    and the call's span ended). ``done``: how recovery ended, when it was tried."""
    why = str(err)
    if done is not None and done.error is not None and done.error is not err:
        why += f"; recovery failed ({done.reason}): {done.error}"
    log.emit("route_failed", level=log.WARNING, request_id=call.request_id, alias=call.alias,
             error_class=StreamInterruptedError.error_class.value,
             attempts=len(call.records), reason="stream_interrupted",
             cause=cause or err.error_class.value)
    error = StreamInterruptedError(
        f"the stream from {err.target} failed after {len(text)} characters: {why}",
        partial_text=text, cause_class=err.error_class, cause=cause, target=err.target,
        status=err.status, attempts=call.records)
    call.end_span(None, error)
    return error


__all__ = ["MODES", "Delivered", "Resume", "ResumeDiverged", "committed_spent", "fix_chunk",
           "interrupted", "recover_mode", "resume_stream"]
