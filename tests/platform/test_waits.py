"""``within``: a bounded wait that never loses its caller's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from mercato.platform.waits import within


async def test_the_result_comes_back_within_the_bound() -> None:
    assert await within(1.0, asyncio.sleep(0, "done")) == "done"
    assert await within(None, asyncio.sleep(0, "unbounded")) == "unbounded"


async def test_past_the_bound_the_wait_is_cancelled_and_times_out() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await within(0.01, never)
    assert never.cancelled()


async def test_a_cancellation_arriving_as_the_wait_ends_is_kept() -> None:
    """What 3.11's ``wait_for`` drops: the awaited thing finishes and the waiting task is
    cancelled in the same turn of the loop; the task must still end cancelled (a stop)."""
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(within(10, done))
    await asyncio.sleep(0)  # it waits now
    done.set_result(1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
