"""``gatekeeper._timers``: deadlines on one shared loop timer, and ``timeout`` over them, which
must behave as ``asyncio.timeout`` does."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from gatekeeper._timers import loop_timers, timeout


async def test_a_body_that_outlasts_its_timeout_raises_timeout_error() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        async with timeout(0.02):
            await never
    assert asyncio.get_running_loop().time() - started >= 0.02
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_body_done_in_time_leaves_nothing_armed() -> None:
    async with timeout(0.01):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # a deadline left behind would cancel this task now
    assert not loop_timers().pending


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def waits() -> None:
        async with timeout(10):
            await asyncio.sleep(10)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("kind", [timeout, asyncio.timeout], ids=["shared", "asyncio"])
async def test_an_outer_cancellation_after_the_deadline_is_not_swallowed(kind: Any) -> None:
    """Expired, and cancelled by someone else as well: CancelledError, as asyncio.timeout."""

    async def waits() -> None:
        async with kind(0.01):
            # The deadline's cancellation, swallowed (a stand-in for a race).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)
            await asyncio.sleep(1)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("kind", [timeout, asyncio.timeout], ids=["shared", "asyncio"])
async def test_an_error_raised_after_the_deadline_is_not_replaced(kind: Any) -> None:
    async def waits() -> None:
        async with kind(0.01):
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise ValueError("cleanup failed") from None

    with pytest.raises(ValueError, match="cleanup failed"):
        await asyncio.create_task(waits())


async def test_each_deadline_runs_at_its_time_whatever_the_order_they_were_set() -> None:
    loop = asyncio.get_running_loop()
    timers = loop_timers()
    ran: list[tuple[str, float]] = []
    now = loop.time()
    timers.call_at(now + 0.06, lambda: ran.append(("late", loop.time())))
    timers.call_at(now + 0.02, lambda: ran.append(("early", loop.time())))  # re-arms earlier
    cancelled = timers.call_at(now + 0.01, lambda: ran.append(("cancelled", loop.time())))
    cancelled.cancel()
    timers.call_at(now + 0.04, lambda: ran.append(("middle", loop.time())))
    await asyncio.sleep(0.1)
    assert [name for name, _ in ran] == ["early", "middle", "late"]
    for (_, at), due in zip(ran, (0.02, 0.04, 0.06), strict=True):
        assert now + due <= at < now + due + 0.03
    assert not timers.pending and timers.handle is None


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    ran: list[str] = []

    def fails() -> None:
        raise ValueError("boom")

    now = loop.time()
    loop_timers().call_at(now + 0.01, fails)
    loop_timers().call_at(now + 0.01, ran.append, "after")
    loop_timers().call_at(now + 0.03, ran.append, "later")
    await asyncio.sleep(0.05)
    loop.set_exception_handler(None)
    assert ran == ["after", "later"]
    assert isinstance(reported[0]["exception"], ValueError)


def test_each_loop_has_its_own_timers() -> None:
    """A middleware serving under two loops in turn (tests, TestClient portals)."""

    async def one_timeout() -> object:
        with pytest.raises(TimeoutError):
            async with timeout(0.01):
                await asyncio.sleep(1)
        return loop_timers()

    first = asyncio.run(one_timeout())
    second = asyncio.run(one_timeout())
    assert first is not second
