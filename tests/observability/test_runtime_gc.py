"""``runtime.gc_freeze``: the start-up heap is taken out of the cyclic GC's full collections;
``runtime.switch_interval``: the interpreter hands its lock between threads sooner."""

from __future__ import annotations

import gc
import sys

import pytest

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


@pytest.mark.parametrize(
    ("runtime", "interval"),
    [({}, 0.0005), ({"switch_interval": 0.002}, 0.002), ({"switch_interval": 0}, 0.005)],
    ids=["default", "configured", "0-leaves-pythons-own"],
)
async def test_start_up_sets_the_thread_switch_interval(
    protected: Factory, runtime: dict[str, float], interval: float
) -> None:
    sys.setswitchinterval(0.005)  # Python's own
    async with protected(runtime=runtime) as p:
        await p.gk.start()
        assert sys.getswitchinterval() == interval
