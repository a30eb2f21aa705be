from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from tests.servers import RedisProcess, redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session (started by the tests, stopped after)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A redis-server of the test's own, on a fixed port, that the test can kill and start."""
    server = RedisProcess()
    server.start()
    yield server
    server.kill()


@pytest.fixture(autouse=True)
def _unfreeze_the_heap() -> Iterator[None]:
    """gatekeeper freezes the heap and sets the thread switch interval at lifespan start-up
    (``runtime.gc_freeze``, ``runtime.switch_interval``); a test run starts many, so each test
    hands the next a heap the cyclic GC still scans and Python's own switch interval."""
    interval = sys.getswitchinterval()
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
    sys.setswitchinterval(interval)
