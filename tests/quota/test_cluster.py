"""Redis Cluster (3 primaries): no script ever crosses slots, and a request whose quotas live on
several nodes is still all-or-nothing."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from gatekeeper.quota import FailoverQuotaStore, QuotaAdjustment, open_quota_store
from gatekeeper.quota.redis_store import storage_key
from tests.quota.conftest import bucket, level, unique_prefix, window

OWNERS = [f"subject:s{i}" for i in range(6)] + [f"org:o{i}" for i in range(6)]


async def test_quotas_of_many_owners_on_every_node_are_all_or_nothing(cluster_url: str) -> None:
    prefix = unique_prefix()
    store = open_quota_store(cluster_url, prefix=prefix, timeout=2.0)
    assert isinstance(store, FailoverQuotaStore)
    client = store.store.client  # type: ignore[attr-defined]
    assert isinstance(client, RedisCluster)
    specs = [bucket(f"{owner}:requests", capacity=3) for owner in OWNERS]
    specs.append(window("org:o0:tokens_month", capacity=1000, cost=10))
    assert (await store.health()).detail["state"] == "up"  # the client has read the slot map
    nodes = {client.get_node_from_key(storage_key(prefix, s.key)).name for s in specs}
    assert len(nodes) == 3  # the request really spans the cluster
    try:
        for _ in range(3):
            assert (await store.acquire(specs)).allowed
        # One more: every bucket is empty, the window is not; nothing may be taken from it.
        result = await store.acquire(specs)
        assert not result.allowed
        assert await level(store, specs[-1]) == 1000 - 30
        # One tight quota on a single node refuses; every other node gives its debit back.
        roomy = [bucket(f"{owner}:tokens", capacity=100, cost=10) for owner in OWNERS]
        tight = bucket("org:o5:tight", capacity=5, cost=10)
        refused = await store.acquire([*roomy, tight])
        assert not refused.allowed and refused.refused is not None
        assert refused.refused.name == "tight"
        assert [await level(store, s) for s in roomy] == pytest.approx([100] * len(roomy))
        # Reconciliation spans the nodes the same way.
        assert (await store.acquire(roomy)).allowed
        await store.adjust([QuotaAdjustment(s, -5) for s in roomy])
        assert [await level(store, s) for s in roomy] == pytest.approx([95] * len(roomy))
        assert (await store.health()).detail["state"] == "up"
        assert store.counters["store_errors"] == 0  # not one CROSSSLOT (or other) error
    finally:
        await store.aclose()


async def test_a_policy_chosen_hash_tag_keeps_quotas_in_one_slot(cluster_url: str) -> None:
    prefix = unique_prefix()
    keys = [
        storage_key(prefix, "{org:acme}:subject:s1:requests"),
        storage_key(prefix, "{org:acme}:subject:s2:requests"),
        storage_key(prefix, "org:acme:tokens"),
    ]
    store = open_quota_store(cluster_url, prefix=prefix, timeout=2.0)
    try:
        client = store.store.client  # type: ignore[attr-defined]
        assert len({client.keyslot(k) for k in keys}) == 1
    finally:
        await store.aclose()
