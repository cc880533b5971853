"""Dry-run of a stream that breaks after its first chunk (``--simulate TARGET=cut``): what
``stream.recover`` would do, told by the same walk the engine continues (router.engine.recover).

Outcomes: ``cut`` (the stream commits, then breaks: a network failure after the first chunk),
and, for the tries that follow a cut, ``ok`` (the replay reproduces the delivered text, or the
prefill is continued, and the stream goes on) or ``diverge`` (the replay differs: closed, the
next target). Before any cut, ``diverge`` answers like ``ok``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from router.engine.decision import Decision, Done, Outcome, Try
from router.engine.recover import ResumeDiverged
from router.errors import LlmError, NetworkError, StreamInterruptedError
from router.plan.routes import Recover

STREAM_OUTCOMES = ("cut", "diverge")

Describe = Callable[[LlmError, Any], str]


class StreamSim:
    """The recovery state of one simulated stream."""

    def __init__(self, mode: Recover) -> None:
        self.mode: Recover = mode
        self.cut: LlmError | None = None  # the failure that first broke the stream
        self.diverged = False

    def on_try(self, outcome: str, d: Try, gen: Generator[Decision, Outcome, None],
               describe: Describe) -> tuple[str, Decision, bool] | None:
        """(what happens, the walk's next decision, whether the stream completes) for a try
        whose outcome is about the stream; None for the others (errors before a cut)."""
        key = d.target.key
        if outcome == "cut":
            err: LlmError = NetworkError("simulated cut after the first chunk", target=key)
            self.cut = self.cut or err
            if self.mode == "off":
                stop = StreamInterruptedError("cut (recover: off)", cause_class=err.error_class)
                return ("the stream breaks after its first chunk -> stream_interrupted "
                        "(recover: off)", Done(False, stop, "recover_off"), False)
            nxt = gen.send(err)
            return (f"the stream breaks after its first chunk -> recover ({self.mode}): "
                    f"{describe(err, nxt)}", nxt, False)
        if self.cut is None:
            return ("answers", gen.send(None), True) if outcome == "diverge" else None
        if outcome == "diverge":
            self.diverged = True
            err = ResumeDiverged("simulated replay that differs", target=key)
            nxt = gen.send(err)
            return (f"the replay differs from the delivered text -> closed at once; "
                    f"{describe(err, nxt)}", nxt, False)
        if outcome == "ok":
            self.diverged = False
            prefill = self.mode == "continue" and d.target.capabilities.prefill
            how = ("continues after the delivered text sent as a prefill" if prefill else
                   "replays silently until it has reproduced the delivered text, then "
                   "goes on")
            return how, gen.send(None), True
        return None

    def failure(self, done: Done) -> str | None:
        """How the call fails after a cut, or None (no cut, or recovered)."""
        if self.cut is None or done.ok:
            return None
        cause = "resume_diverged" if self.diverged else self.cut.error_class.value
        if done.reason == "recover_off":
            return f"stream_interrupted (cause {cause}; recover: off)"
        return (f"stream_interrupted (cause {cause}; recovery ended: "
                f"{done.reason.replace('_', ' ')})")
