"""Storage by URI (`limits`' conventions), keys and hash tags, and the settings that pick them."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from gatekeeper import Gatekeeper, Settings
from gatekeeper.errors import ConfigurationError
from gatekeeper.quota import FailoverQuotaStore, MemoryQuotaStore, RedisQuotaStore
from gatekeeper.quota.factory import open_quota_store, redact
from gatekeeper.quota.redis_store import storage_key

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "gatekeeper.toml"


@pytest.mark.parametrize(
    ("uri", "client"),
    [
        pytest.param("redis://127.0.0.1:6379/2", Redis, id="redis"),
        pytest.param("async+redis://127.0.0.1:6379", Redis, id="limits-async-prefix"),
        pytest.param("rediss://user:pw@127.0.0.1:6380/0", Redis, id="rediss"),
        pytest.param("redis+unix:///tmp/redis.sock?db=1", Redis, id="unix"),
        pytest.param("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", RedisCluster, id="cluster"),
        pytest.param("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster", Redis,
                     id="sentinel"),
    ],
)  # fmt: skip
async def test_redis_uris_build_a_failover_redis_store(uri: str, client: type) -> None:
    store = open_quota_store(uri)
    assert isinstance(store, FailoverQuotaStore)
    assert isinstance(store.store, RedisQuotaStore)
    assert isinstance(store.store.client, client)


def test_memory_uri_is_the_in_process_store() -> None:
    assert isinstance(open_quota_store("memory://"), MemoryQuotaStore)


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("memcached://127.0.0.1:11211", id="unsupported-scheme"),
        pytest.param("redis+sentinel://127.0.0.1:26379", id="sentinel-without-service"),
        pytest.param("redis+cluster://127.0.0.1", id="cluster-without-port"),
        pytest.param("nonsense", id="no-scheme"),
    ],
)
def test_bad_uris_fail_at_start_up(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="quota storage"):
        open_quota_store(uri)


def test_passwords_never_reach_logs_or_health() -> None:
    assert redact("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    store = open_quota_store("redis://:s3cret@127.0.0.1:1/0")
    assert isinstance(store, FailoverQuotaStore)
    assert "s3cret" not in store.description


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        pytest.param("subject:s1:requests", "gk:{subject:s1}:requests", id="subject"),
        pytest.param("org:acme:tokens_month", "gk:{org:acme}:tokens_month", id="org"),
        pytest.param("cluster:c9:req:x", "gk:{cluster:c9}:req:x", id="rest-keeps-colons"),
        pytest.param("{org:acme}:subject:s1:tokens", "gk:{org:acme}:subject:s1:tokens",
                     id="policy-chose-the-tag"),
        pytest.param("global", "gk:{global}", id="bare"),
    ],
)  # fmt: skip
def test_keys_carry_the_owner_as_hash_tag(key: str, stored: str) -> None:
    assert storage_key("gk", key) == stored


def test_one_owner_one_slot_and_shared_keys_are_the_same_for_everyone() -> None:
    slots = {key_slot(storage_key("gk", f"subject:s1:{q}").encode()) for q in ("a", "b", "c")}
    assert len(slots) == 1
    # The org's bucket is one key, whichever subject's request touches it.
    assert storage_key("gk", "org:acme:tokens") == storage_key("gk", "org:acme:tokens")


def test_storage_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEKEEPER_QUOTA__STORAGE", "redis://127.0.0.1:6390/3")
    monkeypatch.setenv("GATEKEEPER_QUOTA__TIMEOUT", "0.02")
    settings = Settings.load(DEMO, audit={"path": tmp_path / "decisions.jsonl"})
    gatekeeper = Gatekeeper.from_settings(settings)
    assert isinstance(gatekeeper.quotas, FailoverQuotaStore)
    assert gatekeeper.quotas.timeout == 0.02
    assert gatekeeper.quotas.description == "redis://127.0.0.1:6390/3"


@pytest.mark.parametrize(
    ("environment", "interval"),
    [
        pytest.param({}, 0.02, id="default-20-ms"),
        pytest.param({"GATEKEEPER_QUOTA__SETTLE_INTERVAL": "0.2"}, 0.2, id="set"),
        pytest.param({"GATEKEEPER_QUOTA__SETTLE_INTERVAL": "0"}, None, id="zero-writes-at-once"),
    ],
)
def test_settlements_wait_as_long_as_the_settings_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: dict, interval: float | None
) -> None:
    monkeypatch.setenv("GATEKEEPER_QUOTA__STORAGE", "redis://127.0.0.1:6390/3")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load(DEMO, audit={"path": tmp_path / "decisions.jsonl"})
    quotas = Gatekeeper.from_settings(settings).quotas
    assert isinstance(quotas, FailoverQuotaStore) and isinstance(quotas.store, RedisQuotaStore)
    queue = quotas.store.settlements
    assert (queue.interval if queue is not None else None) == interval


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"key_prefix": "gk{x}"}, id="prefix-with-hash-tag"),
        pytest.param({"timeout": 0}, id="zero-timeout"),
        pytest.param({"local_fraction": 1.5}, id="fraction-above-one"),
        pytest.param({"settle_interval": -0.01}, id="negative-settle-interval"),
    ],
)
def test_bad_quota_settings_are_refused(override: dict) -> None:
    with pytest.raises(ConfigurationError):
        Settings.load(DEMO, quota=override)


@pytest.mark.parametrize(
    ("uri", "bounded"),
    [
        pytest.param("redis://127.0.0.1:6379/2", True, id="redis"),
        pytest.param("redis+sentinel://127.0.0.1:26379/mymaster", True, id="sentinel"),
        pytest.param("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", False, id="cluster"),
    ],
)
def test_the_last_resort_cap_is_armed_once_per_call(uri: str, bounded: bool) -> None:
    # A store that bounds each call itself (every send and every queued wait, at wire_timeout's
    # hard bound) gets no second timer from the failover layer; a cluster store keeps it.
    store = open_quota_store(uri, timeout=0.1)
    assert isinstance(store, FailoverQuotaStore) and isinstance(store.store, RedisQuotaStore)
    assert store._bounded is bounded
    assert store.store.call_bound == (store.cap if bounded else None)
