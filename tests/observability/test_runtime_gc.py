"""``runtime.gc_freeze``: the start-up heap is taken out of the cyclic GC's full collections."""

from __future__ import annotations

import gc

from tests.observability.conftest import Factory


async def test_start_up_freezes_what_was_built(protected: Factory) -> None:
    async with protected() as p:
        gc.unfreeze()
        await p.gk.start()
        frozen = gc.get_freeze_count()
    # The engines, stores, GeoIP reader and settings are built by then: tens of thousands.
    assert frozen > 10_000


async def test_gc_freeze_off_leaves_the_heap_alone(protected: Factory) -> None:
    async with protected(runtime={"gc_freeze": False}) as p:
        gc.unfreeze()
        await p.gk.start()
        assert gc.get_freeze_count() == 0
