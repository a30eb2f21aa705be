"""Background tasks the long-lived parts share: a watcher that polls until cancelled, and a
cancellation that waits for the task to end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any


async def poll(
    interval: float, check: Callable[[], Awaitable[object]], log: logging.Logger, failed: str
) -> None:
    """Await ``check()`` every ``interval`` seconds until cancelled. A check that raises is
    logged (``failed``, with the traceback) and the watcher goes on: it never dies."""
    while True:
        await asyncio.sleep(interval)
        try:
            await check()
        except Exception:
            log.exception(failed)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait for it to end."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
