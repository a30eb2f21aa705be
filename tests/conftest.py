from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.servers import redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session (started by the tests, stopped after)."""
    with redis_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _unfreeze_the_heap() -> Iterator[None]:
    """gatekeeper freezes the heap at lifespan start-up (``runtime.gc_freeze``); a test run
    starts many, so each test hands the next a heap the cyclic GC still scans."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
