"""Properties (issue 11): over random cut points, ways of breaking and divergence points of the
attempts that follow, what the caller of a recovered stream sees is always a prefix of one
attempt's whole output (all of it when the stream ends cleanly), so nothing is ever repeated
or contradicted; a failure carries exactly what the caller got. Tool-call arguments cut
anywhere and replayed in other fragments reach the caller once, under the id it was given."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import Router
from router.errors import StreamInterruptedError
from router.types import ChatChunk
from tests.engine_helpers import MSG, chat_path, route_file
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    broken_reply,
    text_events,
    tool_call_events,
)

Attempt = tuple[int | None, int | None]  # (diverges at this character, breaks after N parts)


@st.composite
def scenarios(draw: Any) -> tuple[list[str], int, str, list[Attempt]]:
    n = draw(st.integers(2, 24))
    answer = [f"w{i:02d} " for i in range(n)]  # unique parts: a repeat would show
    cut = draw(st.integers(1, n - 1))
    how = draw(st.sampled_from(["reset", "error", "truncate"]))
    chars = 4 * n
    others = draw(st.lists(st.tuples(st.none() | st.integers(0, chars - 1),
                                     st.none() | st.integers(1, n - 1)), max_size=3))
    return answer, cut, how, others


def diverging(answer: list[str], at: int, k: int) -> list[str]:
    """Another answer: ``answer``'s text up to character ``at``, then something else (as a
    model that samples another token goes on differently), in parts of 4 characters."""
    text = "".join(answer)
    text = text[:at] + "#" + "".join(f"v{k}{i:02d} " for i in range(len(answer)))
    return [text[i:i + 4] for i in range(0, len(text), 4)]


async def run(answer: list[str], cut: int, how: str,
              others: list[Attempt]) -> tuple[str, list[str], Exception | None]:
    names = ["a"] + [f"b{i}" for i in range(len(others))]
    outputs = ["".join(answer)]
    async with OpenAIServer() as server:
        server.enqueue(broken_reply(text_events(answer), after=cut + 1, how=how),  # type: ignore[arg-type]
                       path=chat_path("a"))
        for k, (name, (at, breaks)) in enumerate(zip(names[1:], others, strict=True)):
            parts = answer if at is None else diverging(answer, at, k)
            outputs.append("".join(parts))
            reply = (Reply(events=text_events(parts)) if breaks is None
                     else broken_reply(text_events(parts), after=breaks + 1))
            server.enqueue(reply, path=chat_path(name))
        data = route_file(server.port, {"r": [f"{n}:m" for n in names]}, names=names,
                          retry={"attempts": 1})
        got: list[str] = []
        error: Exception | None = None
        async with Router.from_dict(data) as router:
            try:
                async for c in router.stream("r", MSG):
                    got.append(c.delta)
            except StreamInterruptedError as e:
                error = e
    return "".join(got), outputs, error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_caller_sees_a_prefix_of_one_attempt_and_never_a_repeat(
        scenario: tuple[list[str], int, str, list[Attempt]]) -> None:
    answer, cut, how, others = scenario
    seen, outputs, error = asyncio.run(run(answer, cut, how, others))
    assert any(out.startswith(seen) for out in outputs), (seen, outputs)
    assert seen.startswith("".join(answer[:cut]))  # what was said before the break stays
    words = seen.split(" ")[:-1]
    assert len(words) == len(set(words))  # never a repeat
    if error is None:
        assert seen in outputs  # a clean end: one attempt's whole answer
    else:
        assert isinstance(error, StreamInterruptedError) and error.partial_text == seen


async def run_tools(args: str, cut: int, first: int, again: int) -> list[ChatChunk]:
    events = tool_call_events([("call_1", "get_weather", args)], fragment=first)
    replay = tool_call_events([("call_2", "get_weather", args)], fragment=again)
    async with OpenAIServer() as server:
        server.enqueue(broken_reply(events, after=min(cut, len(events) - 2)),
                       Reply(events=replay), path=chat_path("a"))
        data = route_file(server.port, {"r": ["a:m"]}, names=["a"])
        async with Router.from_dict(data) as router:
            return [c async for c in router.stream("r", MSG, tools=[{
                "type": "function", "function": {"name": "get_weather", "parameters": {}}}])]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["city", "unit", "days", "q"]),
                       st.text("abc xyz", max_size=12), min_size=1),
       st.integers(2, 40), st.integers(1, 7), st.integers(1, 7))
def test_tool_call_arguments_cut_anywhere_reach_the_caller_once(
        arguments: dict[str, str], cut: int, first: int, again: int) -> None:
    args = json.dumps(arguments)
    chunks = asyncio.run(run_tools(args, cut, first, again))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert "".join(d.arguments for d in deltas) == args
    assert [d.id for d in deltas if d.id] == ["call_1"]
    final = chunks[-1].final_tool_calls or []
    assert [(c.id, c.arguments) for c in final] == [("call_1", arguments)]
