"""``wire_timeout``: a store's silence times out; the event loop's own slowness never does."""

from __future__ import annotations

import asyncio
import time

import pytest

from gatekeeper.quota.deadline import wire_timeout


async def test_no_answer_on_a_free_loop_times_out() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        async with wire_timeout(0.02):
            await never


async def test_an_answer_that_arrived_while_the_loop_was_blocked_is_taken() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.005, reply.set_result, "pong")  # the store answers after 5 ms ...

    def block() -> None:
        time.sleep(0.1)  # ... but the loop is busy for 100 ms, five times the timeout

    loop.call_soon(block)
    async with wire_timeout(0.02):
        assert await reply == "pong"


async def test_a_busy_loop_extends_the_wait_instead_of_failing_the_call() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    stop = loop.time() + 0.15

    async def hog() -> None:  # 10 ms turns for 150 ms
        while loop.time() < stop:
            time.sleep(0.01)  # noqa: ASYNC251 (blocks the loop on purpose)
            await asyncio.sleep(0)
        reply.set_result("late but answered")

    task = asyncio.create_task(hog())
    async with wire_timeout(0.02):
        assert await reply == "late but answered"
    await task


async def test_the_body_finishing_in_time_leaves_nothing_armed() -> None:
    async with wire_timeout(0.01):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # a timer left behind would cancel this task now
    assert asyncio.current_task() is not None and not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_starved_loop_still_gives_up_at_the_hard_bound() -> None:
    """Every turn long (a process starved of CPU): the wait keeps restarting, but not forever."""
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    stop = False

    async def hog() -> None:
        while not stop:
            time.sleep(0.003)  # noqa: ASYNC251 (every turn longer than the 1 ms busy mark)
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with wire_timeout(0.01):  # hard bound: max(1 s, 20 x 0.01 s) = 1 s
            await never
    stop = True
    await task
    assert loop.time() - started < 10  # it ended; the bound, not a figure, is what is tested
