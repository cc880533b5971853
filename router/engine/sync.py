"""The sync facade: ``Router.chat_sync`` / ``stream_sync`` / ``close`` for scripts and notebooks.

A Router's pool, breakers and store belong to the event loop that first uses them (aiohttp
sessions cannot move between loops). So the facade never runs the engine on the caller's
loop: each Router used synchronously gets one ``SyncRunner``, a private loop on a daemon
thread, and does all its I/O there. A call submits the coroutine to that loop and blocks
until it ends, which also works from a thread that is itself running a loop (Jupyter): that
loop waits, the work happens on ours, nothing deadlocks. ``LoopBinding.bind`` turns "one
Router used from two loops" into a clear error instead of aiohttp's obscure one.

The caller's contextvars (structlog bindings, the current OpenTelemetry span) travel with each
call: ``run_coroutine_threadsafe`` runs it in a copy of the submitting thread's context.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any, TypeVar

from router.types import ChatChunk

__all__ = ["LoopBinding", "SyncRunner"]

T = TypeVar("T")

#: How long an interrupted call (Ctrl-C) may take to unwind, so its connection is freed
#: before KeyboardInterrupt reaches the caller.
_CANCEL_GRACE = 2.0
#: How long tasks still running when the runner stops may take to honour their cancellation.
_DRAIN_GRACE = 2.0

_REENTRANT = ("a sync Router call was made on the Router's own event loop thread (from a "
              "callback or a coroutine running there), where waiting would deadlock: "
              "use `await router.chat(...)` / `router.stream(...)` there")
_bind_lock = threading.Lock()
_runner_lock = threading.Lock()


class SyncRunner:
    """A private event loop on a daemon thread, started on first use; ``run(coro)`` from any
    other thread blocks until ``coro`` ends on that loop. ``close()`` stops it; safe twice."""

    def __init__(self, name: str = "router-sync") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The runner's loop (None until the first call)."""
        return self._loop

    @property
    def closed(self) -> bool:
        """True once ``close()`` (or ``abandon()``) began: no call is accepted any more."""
        return self._closed

    def in_loop_thread(self) -> bool:
        """True on the runner's own thread, where a blocking ``run`` would deadlock."""
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
        thread.start()  # callbacks queued before run_forever begins simply wait for it
        self._loop, self._thread = loop, thread
        return loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the runner loop (starting it if needed) and return at once."""
        with self._lock:
            if self.in_loop_thread():
                coro.close()
                raise RuntimeError(_REENTRANT)
            if self._closed:
                coro.close()
                raise RuntimeError(f"{self.name}: this Router's sync runner is closed "
                                   "(the Router was closed)")
            loop = self._loop or self._start()
            return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runner loop and return its result; its exceptions propagate
        unchanged. An interrupt while waiting (Ctrl-C) cancels it there, then re-raises."""
        unwound = threading.Event()
        wrapper = _signalling(coro, unwound)
        try:
            future = self.submit(wrapper)
        except BaseException:
            wrapper.close()  # refused: neither ever started
            coro.close()
            raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise RuntimeError(f"{self.name}: the Router was closed while this call "
                                   "was running") from None
            raise
        except BaseException:
            if not future.done():  # interrupted while waiting, not an error of the call
                future.cancel()
                unwound.wait(_CANCEL_GRACE)
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runner loop from another loop, without blocking that loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def close(self) -> None:
        """Stop the loop (cancelling what still runs, closing open async generators) and join
        the thread; safe to call twice."""
        if self.in_loop_thread():
            raise RuntimeError(_REENTRANT)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def abandon(self) -> None:
        """Stop the loop without waiting (for a garbage-collected owner; any thread)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(loop.stop)

    def close_agen(self, agen: AsyncIterator[Any]) -> None:
        """Close an async generator that was iterated on the runner loop, from outside it."""
        aclose = getattr(agen, "aclose", None)
        if aclose is None or self._closed or self.in_loop_thread():
            # Closed runner: its shutdown closed the generator. Loop thread: asyncio's
            # async-generator finalizer closes it on that loop when it is collected.
            return
        try:
            self.run(aclose())
        except RuntimeError:
            if not self._closed:  # closed meanwhile: as above
                raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._loop else "idle"
        return f"SyncRunner({self.name!r}, {state})"


async def _signalling(coro: Coroutine[Any, Any, T], unwound: threading.Event) -> T:
    try:
        return await coro
    finally:
        unwound.set()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The runner thread: run the loop until stopped, then clean up as ``asyncio.run`` does."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=_DRAIN_GRACE))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


# --------------------------------------------------------------------------------------------
# The Router's side: which loop its I/O belongs to, and its runner


class LoopBinding:
    """Which event loop one Router's pool, breakers and store belong to (bound by its first
    call), its sync runner (made by the first sync call) and whether it is closed."""

    __slots__ = ("__weakref__", "closed", "loop", "runner")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: SyncRunner | None = None
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the I/O to ``loop`` on the first call; a call from another loop raises."""
        with _bind_lock:
            if self.loop is None:
                self.loop = loop
            bound = self.loop
        if bound is not loop:
            raise RuntimeError(_two_loops(bound))

    def sync_runner(self, owner: object) -> SyncRunner:
        """The runner, made on first use (stopped when ``owner`` is collected unclosed);
        checks the Router can still run sync calls."""
        if self.closed:
            raise RuntimeError("this Router is closed")
        runner, bound = self.runner, self.loop
        if bound is not None and (runner is None or bound is not runner.loop):
            raise RuntimeError(_two_loops(bound))  # already used with `await` on another loop
        if runner is None:
            with _runner_lock:
                runner = self.runner
                if runner is None:
                    runner = self.runner = SyncRunner(f"router-sync-{id(owner):x}")
                    # Dropped without close(): stop the thread (aiohttp warns about the pool).
                    weakref.finalize(owner, runner.abandon)
        return runner

    def run(self, owner: object, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` (a call of ``owner``) run on the runner loop; blocks until it returns."""
        try:
            runner = self.sync_runner(owner)
        except BaseException:
            coro.close()
            raise
        return runner.run(coro)

    def iterate(self, owner: object,
                agen: AsyncIterator[ChatChunk]) -> Generator[ChatChunk, None, None]:
        """``agen`` (a stream of ``owner``) as a plain iterator: each ``next`` pulls one chunk
        on the runner loop; closing it early (break, ``close()``, collection) closes the
        stream there."""
        runner = self.sync_runner(owner)
        if runner.in_loop_thread():
            raise RuntimeError(_REENTRANT)
        return _pull(runner, agen)

    def close(self, aclose: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """``Router.close()``: run ``aclose()`` on the runner loop, then stop the runner."""
        runner = self.runner
        if runner is not None and runner.in_loop_thread():
            raise RuntimeError(_REENTRANT)
        if self.closed:
            if runner is not None:
                runner.close()
            return
        if runner is None or runner.closed:
            if self.loop is not None:
                raise RuntimeError("this Router was used with `await` on an event loop: "
                                   "close it there with `await router.aclose()`")
            runner = SyncRunner("router-sync-close")  # never used: any loop can close it
        try:
            runner.run(aclose())
        finally:
            runner.close()

    async def aclose(self, close_here: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """``Router.aclose()``: ``close_here`` closes the pool and store on the running loop.
        When the sync facade ran the Router, they belong to the runner loop: close them there
        (from whichever loop awaits this), then stop the runner."""
        runner = self.runner
        if runner is None or runner.closed or runner.loop is None or runner.in_loop_thread():
            await close_here()
            if runner is not None and runner.loop is None:
                runner.close()
            return
        try:
            await runner.arun(close_here())
        finally:
            runner.close()  # joins a loop with nothing left to do: brief


def _two_loops(bound: asyncio.AbstractEventLoop) -> str:
    msg = ("this Router is used from two event loops: use chat_sync everywhere or await chat "
           "everywhere (its connection pool belongs to the loop it first ran on)")
    if bound.is_closed():
        msg += ("; that loop is closed: create the Router inside the asyncio.run that uses "
                "it, or use the sync calls")
    return msg


def _pull(runner: SyncRunner,
          agen: AsyncIterator[ChatChunk]) -> Generator[ChatChunk, None, None]:
    suspended = False  # the async stream is paused at a yield and must be closed if we stop
    try:
        while True:
            chunk = runner.run(_next_chunk(agen))  # raises what the stream raised, as is
            if chunk is None:
                return
            suspended = True
            yield chunk
            suspended = False
    finally:
        if suspended:  # the consumer stopped early: free the upstream connection now
            runner.close_agen(agen)


async def _next_chunk(agen: AsyncIterator[ChatChunk]) -> ChatChunk | None:
    # None for the end: StopAsyncIteration does not belong in a Future.
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None
