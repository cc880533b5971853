"""The sync facade (engine/sync.py): chat_sync / stream_sync / close run the async engine on a
private loop thread, from plain code and from inside a running loop (Jupyter), without
deadlocks, with errors unchanged and every connection and thread freed.

Most tests use the offline ``fake`` provider; the HTTP ones use the loopback OpenAI server,
served from its own background loop thread so that the tests themselves stay plain sync code.
Waits that a regression could turn into a hang sit under ``_hang_guard``: it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from router import Router
from router.engine.sync import SyncRunner
from router.errors import ErrorClass, LlmError, RouteFailed, StreamInterruptedError
from tests.engine_helpers import MSG, chat_path, route_file
from tests.servers.openai import OpenAIServer, RecordedRequest, Reply, stream_reply, text_events

TEXT = "one two three four"
TIMEOUTS = {"connect": "1s", "first_token": "1s", "total": "3s", "idle": "1s"}
RETRY = {"attempts": 1, "initial": "1ms", "max": "5ms"}


# -- helpers ---------------------------------------------------------------------------------

class _Hung(Exception):
    pass


@contextlib.contextmanager
def _hang_guard(seconds: float = 5.0) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts even a thread blocked waiting on a lock."""
    def fire(_signum: int, _frame: FrameType | None) -> None:
        raise _Hung(f"still blocked after {seconds}s: a deadlock")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fake_router(script: list[Any] | None = None, *, text: str = TEXT) -> Router:
    return Router.from_dict({
        "version": 1, "defaults": {"timeout": TIMEOUTS, "retry": RETRY},
        "providers": {"f": {"kind": "fake", "script": script or ["ok"], "text": text}},
        "models": {"fast": ["f:m"]},
    })


def runner_of(router: Router) -> SyncRunner:
    runner = router.sync_runner
    assert runner is not None
    return runner


def thread_named(name: str) -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.name == name), None)


class Upstream:
    """The loopback OpenAI server, running on a loop thread of its own."""

    def __init__(self) -> None:
        self.runner = SyncRunner("test-openai-server")
        self.server: OpenAIServer = self.runner.run(self._start())

    @staticmethod
    async def _start() -> OpenAIServer:
        return await OpenAIServer().start()

    def router(self) -> Router:
        return Router.from_dict(route_file(self.server.port, {"fast": ["o:m"]}, names=["o"],
                                           retry=RETRY))

    def enqueue(self, *replies: Reply | Any) -> None:
        self.runner.run(self._enqueue(replies))

    async def _enqueue(self, replies: tuple[Any, ...]) -> None:
        self.server.enqueue(*replies, path=chat_path("o"))

    def connections_after_close(self) -> int:
        """Open client connections once they have had a moment to close (0 expected)."""
        return self.runner.run(self.server.wait_connections(0))

    def close(self) -> None:
        try:
            self.runner.run(self.server.close())
        finally:
            self.runner.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    try:
        yield up
    finally:
        up.close()


# -- calls -----------------------------------------------------------------------------------

def test_chat_sync_answers_from_plain_sync_code() -> None:
    with fake_router() as router:
        response = router.chat_sync("fast", MSG)
    assert response.text == TEXT
    assert response.target == "f:m"
    assert [r.outcome for r in response.attempts] == ["ok"]


async def test_chat_sync_inside_a_running_loop_does_not_deadlock() -> None:
    """As in Jupyter: the sync API called on a thread whose own loop is running."""
    caller_loop = asyncio.get_running_loop()
    router = fake_router()
    with _hang_guard():
        response = router.chat_sync("fast", MSG)
        deltas = [c.delta for c in router.stream_sync("fast", MSG) if c.delta]
        assert runner_of(router).loop is not caller_loop  # the I/O ran on the runner's loop
        router.close()
    assert response.text == TEXT
    assert "".join(deltas) == TEXT


def test_stream_sync_yields_the_chunks_in_order() -> None:
    with fake_router() as router:
        chunks = list(router.stream_sync("fast", MSG))
    assert [c.delta for c in chunks if c.delta] == ["one", " two", " three", " four"]
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None and last.usage.output_tokens >= 1
    assert last.attempts is not None and [r.outcome for r in last.attempts] == ["ok"]


def test_real_http_works_through_the_facade(upstream: Upstream) -> None:
    upstream.enqueue(stream_reply(text_events(["Hel", "lo", "!"])))
    with upstream.router() as router:
        streamed = "".join(c.delta or "" for c in router.stream_sync("fast", MSG))
        answered = router.chat_sync("fast", MSG)
    assert streamed == "Hello!"
    assert answered.text == "Hello!" and answered.target == "o:m"
    assert [r.path for r in upstream.server.requests] == [chat_path("o")] * 2
    assert upstream.connections_after_close() == 0


@pytest.mark.parametrize("how", ["break", "close"])
def test_stopping_stream_sync_early_frees_the_connection(upstream: Upstream, how: str) -> None:
    # The server sends two parts, then goes silent: only the consumer can end this stream.
    upstream.enqueue(stream_reply(text_events(["a", "b", "c"]), stall_after=3))
    with upstream.router() as router:
        stream = router.stream_sync("fast", MSG)
        first = next(stream)
        assert first.delta == "a"
        assert upstream.server.open_connections == 1
        if how == "break":
            for _ in stream:
                break
            del stream  # what leaving the loop does to `for c in router.stream_sync(...)`
        else:
            stream.close()
        assert upstream.connections_after_close() == 0


def test_closing_the_router_closes_an_open_stream(upstream: Upstream) -> None:
    upstream.enqueue(stream_reply(text_events(["a", "b", "c"]), stall_after=3))
    router = upstream.router()
    stream = router.stream_sync("fast", MSG)
    next(stream)
    router.close()
    assert upstream.connections_after_close() == 0
    with pytest.raises(RuntimeError, match="closed"):
        next(stream)


# -- errors ----------------------------------------------------------------------------------

def test_errors_propagate_as_the_same_llm_error_types_with_their_tracebacks() -> None:
    with fake_router(["invalid_request"]) as router, pytest.raises(RouteFailed) as failed:
        router.chat_sync("fast", MSG)
    err = failed.value
    assert isinstance(err, LlmError)
    assert err.error_class is ErrorClass.INVALID_REQUEST
    assert [r.error_class for r in err.attempts] == [ErrorClass.INVALID_REQUEST]
    # The frames of the runner thread, where the engine raised it, are kept.
    files = [f.filename for f in traceback.extract_tb(err.__traceback__)]
    assert any(f.endswith("engine/router.py") for f in files), files


def test_a_stream_failing_mid_way_raises_stream_interrupted_after_its_chunks() -> None:
    with fake_router(["stream_interrupted"]) as router:
        got: list[str] = []
        with pytest.raises(StreamInterruptedError) as interrupted:
            for chunk in router.stream_sync("fast", MSG):
                got.append(chunk.delta or "")
    assert got and interrupted.value.partial_text == "".join(got)
    assert interrupted.value.error_class is ErrorClass.STREAM_INTERRUPTED


def test_a_failing_http_call_raises_the_classified_error(upstream: Upstream) -> None:
    upstream.enqueue(Reply(status=401, json={"error": {
        "message": "Incorrect API key provided", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}))
    with upstream.router() as router, pytest.raises(RouteFailed) as failed:
        router.chat_sync("fast", MSG)
    assert failed.value.error_class is ErrorClass.AUTH
    assert failed.value.attempts[0].status == 401


def test_ctrl_c_while_waiting_cancels_the_call_on_the_runner_loop(upstream: Upstream) -> None:
    arrived = threading.Event()

    def held_back(_request: RecordedRequest) -> Reply:
        arrived.set()
        return Reply(json={}, delay=30)  # headers held back until the server closes

    upstream.enqueue(held_back)
    main = threading.get_ident()

    def press_ctrl_c() -> None:
        if arrived.wait(5):
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=press_ctrl_c)
    try:
        with upstream.router() as router:
            presser.start()
            with _hang_guard(), pytest.raises(KeyboardInterrupt):
                router.chat_sync("fast", MSG)
            assert upstream.connections_after_close() == 0  # the request was cancelled
            assert router.chat_sync("fast", MSG).text == "Hello!"  # the runner carries on
    finally:
        presser.join()
        signal.signal(signal.SIGINT, previous)


# -- misuse ----------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["chat_sync", "stream_sync"])
def test_a_sync_call_on_the_runner_thread_raises_instead_of_deadlocking(api: str) -> None:
    with fake_router() as router:
        router.chat_sync("fast", MSG)

        async def from_the_runner_loop() -> Any:
            return getattr(router, api)("fast", MSG)

        with _hang_guard(), pytest.raises(RuntimeError, match="own event loop thread"):
            runner_of(router).run(from_the_runner_loop())
        assert router.chat_sync("fast", MSG).text == TEXT


async def test_awaiting_a_router_driven_by_the_sync_calls_raises_a_clear_error() -> None:
    router = fake_router()
    with _hang_guard():
        router.chat_sync("fast", MSG)
    with pytest.raises(RuntimeError, match="two event loops: use chat_sync everywhere"):
        await router.chat("fast", MSG)
    name = runner_of(router).name
    await router.aclose()  # from this loop: closes on the runner's, then stops its thread
    assert thread_named(name) is None


async def test_a_sync_call_on_an_awaited_router_raises_without_starting_a_thread() -> None:
    async with fake_router() as router:
        await router.chat("fast", MSG)
        with pytest.raises(RuntimeError, match="two event loops"):
            router.chat_sync("fast", MSG)
        assert router.sync_runner is None


def test_a_router_outliving_its_asyncio_run_says_so() -> None:
    router = fake_router()
    asyncio.run(router.chat("fast", MSG))
    with pytest.raises(RuntimeError, match=r"two event loops.*that loop is closed"):
        asyncio.run(router.chat("fast", MSG))


# -- lifetime --------------------------------------------------------------------------------

def test_close_stops_the_runner_thread_and_is_idempotent() -> None:
    router = fake_router()
    router.chat_sync("fast", MSG)
    name = runner_of(router).name
    assert thread_named(name) is not None
    router.close()
    assert thread_named(name) is None
    assert router.closed
    router.close()


def test_a_sync_call_after_close_raises_a_clear_error() -> None:
    router = fake_router()
    router.chat_sync("fast", MSG)
    router.close()
    with pytest.raises(RuntimeError, match="this Router is closed"):
        router.chat_sync("fast", MSG)
    with pytest.raises(RuntimeError, match="this Router is closed"):
        router.stream_sync("fast", MSG)


def test_closing_an_unused_router_starts_nothing_that_outlives_it() -> None:
    before = set(threading.enumerate())
    fake_router().close()
    assert set(threading.enumerate()) <= before


def test_aclose_from_another_loop_stops_the_runner() -> None:
    router = fake_router()
    router.chat_sync("fast", MSG)
    name = runner_of(router).name
    asyncio.run(router.aclose())
    assert thread_named(name) is None
    assert router.closed


def test_a_router_dropped_without_close_stops_its_thread() -> None:
    router = fake_router()
    router.chat_sync("fast", MSG)
    thread = thread_named(runner_of(router).name)
    assert thread is not None
    del router
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
