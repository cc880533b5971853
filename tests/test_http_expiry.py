"""``_http_response.Expiry``: asyncio.timeout_at's semantics on the seam's hot path."""

from __future__ import annotations

import asyncio

import pytest

from router.providers._http_response import Expiry


async def test_expiry_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError), Expiry(loop, loop.time() + 0.01):
        await asyncio.sleep(1)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_expiry_past_deadline_fires_on_next_iteration() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError), Expiry(loop, loop.time() - 1):
        await asyncio.sleep(1)


async def test_expiry_not_reached_leaves_no_timer() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, loop.time() + 10)
    with expiry:
        await asyncio.sleep(0)
    assert expiry._handle is None and not expiry.expired  # noqa: SLF001


async def test_caller_cancellation_propagates() -> None:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    async def body() -> None:
        with Expiry(loop, loop.time() + 10):
            started.set()
            await asyncio.sleep(10)

    task = loop.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("mine", [True, False])
async def test_caller_cancellation_racing_the_timer_propagates(mine: bool) -> None:
    """The caller's cancel and the timer's in the same iteration: CancelledError, as with
    asyncio.timeout_at (run too, for the comparison)."""
    loop = asyncio.get_running_loop()

    async def body() -> None:
        if mine:
            with Expiry(loop, loop.time() - 1):
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(1)
        else:
            async with asyncio.timeout_at(loop.time() - 1):
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(1)

    task = loop.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_other_errors_pass_through() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError), Expiry(loop, loop.time() + 10):
        raise ValueError("x")


def test_outside_a_task_is_refused() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError):
            Expiry(loop, 0.0)
    finally:
        loop.close()
