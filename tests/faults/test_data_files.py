"""Damaged and truncated GeoIP databases, at start-up and while a real server is serving.

Every damaged file is made from the real demo database (built from the demo's YAML source by
``gatekeeper.network.build_database``): its data section overwritten, its search tree
scrambled, a record's country changed, cut short, or emptied. The outcomes asserted here are
the ones docs/security.md ("Faults tried", "Data files") lists:

- at start-up a damaged database stops the start with one clear line naming the file;
- while serving, truncating the live file in place or ``cp``-ing a damaged file over it never
  stops the process (the database is served from memory, not mapped from the file), the
  damaged file is refused, the last good database keeps answering and ``/readyz`` says
  ``degraded`` until a good file comes back;
- the enterprise key from 198.51.100.7 (North Korea in the demo data) never gets 200;
- a lookup that fails is refused by the policy for every tier and counted.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import maxminddb
import pytest

from gatekeeper.network import (
    EMPTY_FACTS,
    LOOKUP_FAILED,
    ClientAddress,
    GeoDatabaseError,
    GeoLocator,
    build_database,
    locate,
)
from gatekeeper.policy import EmbeddedEngine, load_policy
from tests.servers import ROOT, DemoServer, demo_server

DEMO_SOURCE = ROOT / "examples" / "demo" / "geo" / "demo-geo.yaml"
POLICIES = ROOT / "policies"
MARKER = b"\xab\xcd\xefMaxMind.com"
KP_CLIENT = "198.51.100.7"
CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("geo") / "demo-geo.mmdb"
    build_database(DEMO_SOURCE, path)
    return path.read_bytes()


def _layout(data: bytes) -> tuple[int, int]:
    """(start of the data section, start of the metadata marker)."""
    with maxminddb.open_database(io.BytesIO(data), maxminddb.MODE_FD) as reader:
        metadata = reader.metadata()
    tree = metadata.node_count * metadata.record_size // 4
    return tree + 16, data.rfind(MARKER)


def data_section_overwritten(data: bytes) -> bytes:
    start, end = _layout(data)
    return data[:start] + b"\xff" * (end - start) + data[end:]


def data_section_keys_zeroed(data: bytes) -> bytes:
    # The first 40 bytes hold the shared map keys ("country", "iso_code", ...): every record
    # still decodes, as maps whose keys are empty, so every fact reads as unknown. This is the
    # damage that made every address "unknown" before the databases were checked.
    start, _ = _layout(data)
    return data[:start] + bytes(40) + data[start + 40 :]


def country_changed(data: bytes) -> bytes:
    # A record that decodes perfectly and says the wrong thing: only a canary can tell.
    return data.replace(b"BKP", b"BKQ", 1)


def search_tree_scrambled(data: bytes) -> bytes:
    start, _ = _layout(data)
    tree = start - 16
    return b"\xff" * tree + data[tree:]


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def zero_bytes(data: bytes) -> bytes:
    return b""


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "data-section": data_section_overwritten,
    "data-section-keys": data_section_keys_zeroed,
    "country-changed": country_changed,
    "search-tree": search_tree_scrambled,
    "truncated": truncated,
    "zero-bytes": zero_bytes,
}


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- loading: every damaged file is refused, with a reason ------------------------------------


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_database_is_refused_at_load(
    tmp_path: Path, good_bytes: bytes, damage: Callable[[bytes], bytes]
) -> None:
    path = write(tmp_path / "damaged.mmdb", damage(good_bytes))
    with pytest.raises(GeoDatabaseError) as caught:
        GeoLocator(path, source=DEMO_SOURCE)

    assert str(path) in str(caught.value)
    # The reason is what /readyz shows: no file name, no address.
    assert str(tmp_path) not in caught.value.reason
    assert KP_CLIENT.rsplit(".", 1)[0] not in caught.value.reason


def test_a_changed_country_is_caught_by_a_canary_from_settings(
    tmp_path: Path, good_bytes: bytes
) -> None:
    path = write(tmp_path / "damaged.mmdb", country_changed(good_bytes))
    with pytest.raises(GeoDatabaseError, match="canary"):
        GeoLocator(path, canaries={KP_CLIENT: "KP"})


def test_the_good_database_passes_every_check(tmp_path: Path, good_bytes: bytes) -> None:
    path = write(tmp_path / "good.mmdb", good_bytes)
    with GeoLocator(path, source=DEMO_SOURCE, canaries={KP_CLIENT: "KP"}) as geo:
        assert geo.lookup(KP_CLIENT).country == "KP"
        assert geo.networks == 5
        assert geo.status()["status"] == "ok"


# -- reloading in process: refused, last good kept, degraded until a good file ----------------


async def test_a_damaged_replacement_is_refused_and_the_last_good_kept(
    tmp_path: Path, good_bytes: bytes
) -> None:
    path = write(tmp_path / "live.mmdb", good_bytes)
    geo = GeoLocator(path, source=DEMO_SOURCE, cache_size=0)
    try:
        for name, damage in DAMAGE.items():
            shutil.copyfile(write(tmp_path / f"{name}.mmdb", damage(good_bytes)), path)
            assert await geo.check() is False, name
            assert geo.lookup(KP_CLIENT).country == "KP", name
            assert geo.status()["status"] == "degraded", name
        assert geo.reload_failures == len(DAMAGE)
        # The same refused file is not counted again on the next look.
        assert await geo.check() is False
        assert geo.reload_failures == len(DAMAGE)

        # With a source, a missing file is rebuilt from it, checked, and served.
        os.unlink(path)
        assert await geo.check() is True
        assert path.is_file()
        assert geo.status()["status"] == "ok"
        assert geo.status()["last_error"] is None
        assert geo.reloads == 1
    finally:
        await geo.aclose()


async def test_a_missing_database_is_refused_until_a_good_one_returns(
    tmp_path: Path, good_bytes: bytes
) -> None:
    path = write(tmp_path / "live.mmdb", good_bytes)
    geo = GeoLocator(path, cache_size=0)
    try:
        os.unlink(path)
        assert await geo.check() is False
        assert geo.status()["last_error"] == "the database file is missing or cannot be read"
        assert geo.lookup(KP_CLIENT).country == "KP"
        write(path, good_bytes)
        assert await geo.check() is True
        assert geo.status()["status"] == "ok"
    finally:
        await geo.aclose()


# -- lookup errors: unknown, counted, refused for every tier ------------------------------------


def test_a_failing_lookup_is_unknown_counted_and_not_cached(
    tmp_path: Path, good_bytes: bytes
) -> None:
    geo = GeoLocator(write(tmp_path / "good.mmdb", good_bytes))
    # Serve, unchecked, a reader over a file damaged in its data section: as if the damage had
    # happened in memory after the checks. (Nothing else can make a checked database fail.)
    damaged = write(tmp_path / "damaged.mmdb", data_section_overwritten(good_bytes))
    reader = maxminddb.open_database(str(damaged), maxminddb.MODE_MEMORY)
    geo._snapshot = dataclasses.replace(geo._snapshot, reader=reader)
    try:
        assert geo.lookup(KP_CLIENT) == LOOKUP_FAILED
        assert geo.lookup(KP_CLIENT) == LOOKUP_FAILED  # a failure is never cached
        assert geo.lookup("100.64.0.1") == EMPTY_FACTS  # not in the tree: no record, no error
        assert geo.counters["lookup_errors"] == 2
        assert geo.status()["status"] == "degraded"

        network = locate(ClientAddress(KP_CLIENT, "127.0.0.1", forwarded=True), geo)
        assert network.lookup_error is True
        assert network.country is None
    finally:
        geo.close()


@pytest.mark.parametrize(
    ("tier", "kyc"),
    [("free", "email"), ("pro", "government_id"), ("enterprise", "business")],
)
async def test_the_policy_refuses_a_failed_lookup_for_every_tier(tier: str, kyc: str) -> None:
    engine = EmbeddedEngine(load_policy(POLICIES))
    document = {
        "version": 1,
        "subject": {"id": "s", "tier": tier, "kyc_level": kyc, "flags": []},
        "network": {"client_ip": KP_CLIENT, "country": None, "lookup_error": True},
        "request": {"method": "POST", "path": "/v1/chat/completions"},
        "signals": {},
        "time": {"unix_ns": 0, "rfc3339": "x", "weekday": 0, "hour_utc": 0},
    }
    decision = await engine.decide(document)
    assert (decision.allow, decision.status) == (False, 503)
    assert decision.primary_reason is not None
    assert decision.primary_reason.code == "location_lookup_failed"


# -- real processes ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_server_does_not_start_on_a_damaged_database(
    tmp_path: Path, good_bytes: bytes, damage: Callable[[bytes], bytes]
) -> None:
    path = write(tmp_path / "damaged.mmdb", damage(good_bytes))
    with (
        pytest.raises(RuntimeError, match="server exited") as caught,
        demo_server(tmp_path, GATEKEEPER_NETWORK__GEOIP_DATABASE=str(path)),
    ):
        pass
    assert "GeoIP database" in str(caught.value)
    # One clear line, no traceback: what is wrong and with which file.
    last = str(caught.value).strip().splitlines()[-1]
    assert last.startswith("Error: ") and "GeoIP database" in last
    assert str(path) in last
    assert "Traceback" not in str(caught.value)


def _enterprise_from_kp(server: DemoServer, last_octet: int) -> httpx.Response:
    # A new address each time: no cached lookup hides what the database does.
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json=CHAT,
        headers={
            "Authorization": "Bearer gk-demo-enterprise",
            "X-Forwarded-For": f"198.51.100.{last_octet}",
        },
        timeout=10,
    )


def _geoip_check(server: DemoServer) -> dict[str, object]:
    document = httpx.get(f"{server.url}/readyz", timeout=10).json()
    check: dict[str, object] = document["checks"]["geoip"]
    return {**check, "status_of_all": document["status"]}


def _wait_for(
    server: DemoServer, predicate: Callable[[dict[str, object]], bool]
) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        check = _geoip_check(server)
        if predicate(check) or time.monotonic() > deadline:
            return check
        time.sleep(0.1)


@pytest.fixture
def serving(tmp_path: Path, good_bytes: bytes) -> Iterator[tuple[DemoServer, Path]]:
    live = write(tmp_path / "live.mmdb", good_bytes)
    env = {
        "GATEKEEPER_NETWORK__GEOIP_DATABASE": str(live),
        "GATEKEEPER_NETWORK__GEOIP_RELOAD_INTERVAL": "0.1",
    }
    with demo_server(tmp_path, **env) as server:
        yield server, live


def test_a_live_database_truncated_or_overwritten_never_stops_the_server(
    serving: tuple[DemoServer, Path], tmp_path: Path, good_bytes: bytes
) -> None:
    server, live = serving
    octet = iter(range(10, 250))
    assert _enterprise_from_kp(server, next(octet)).status_code == 451
    assert _geoip_check(server)["status"] == "ok"

    def cp(damage: Callable[[bytes], bytes]) -> Callable[[], object]:
        # What `cp damaged.mmdb live.mmdb` does: truncate the live file, then write into it.
        source = write(tmp_path / f"{damage.__name__}.mmdb", damage(good_bytes))
        return lambda: shutil.copyfile(source, live)

    faults: list[tuple[str, Callable[[], object]]] = [
        ("truncated in place", lambda: os.truncate(live, len(good_bytes) // 2)),
        ("zero bytes in place", lambda: os.truncate(live, 0)),
        ("cp of a damaged data section", cp(data_section_overwritten)),
        ("cp of a damaged search tree", cp(search_tree_scrambled)),
        ("cp of zeroed keys", cp(data_section_keys_zeroed)),
        ("cp of a changed country", cp(country_changed)),
    ]
    for refused, (name, fault) in enumerate(faults, start=1):
        fault()
        check = _wait_for(server, lambda c, n=refused: c["reload_failures"] == n)
        assert check["reload_failures"] == refused, name
        assert check["status"] == "degraded", name
        assert check["status_of_all"] == "degraded", name  # ready_when_degraded: still routed
        for _ in range(3):
            response = _enterprise_from_kp(server, next(octet))
            assert response.status_code == 451, (name, response.text)
        assert server.proc.poll() is None, name

    shutil.copyfile(write(tmp_path / "good.mmdb", good_bytes), live)
    check = _wait_for(server, lambda c: c["status"] == "ok")
    assert (check["status"], check["reloads"], check["last_error"]) == ("ok", 1, None)
    assert _enterprise_from_kp(server, next(octet)).status_code == 451

    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert f'gatekeeper_geoip_events_total{{event="reload_failures"}} {len(faults)}.0' in metrics
    assert 'gatekeeper_geoip_events_total{event="lookup_errors"} 0.0' in metrics
