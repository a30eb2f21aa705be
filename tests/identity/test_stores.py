from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gatekeeper.contract import KycLevel, Subject
from gatekeeper.errors import ConfigurationError, IdentityError
from gatekeeper.identity import (
    FileSubjectStore,
    RedisSubjectStore,
    SubjectRecord,
    api_key_from_headers,
    hash_api_key,
)

DEMO_SUBJECTS = Path(__file__).resolve().parents[2] / "examples" / "demo" / "subjects.toml"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer k1")], "k1"),
        ([(b"authorization", b"bearer  k1 ")], "k1"),
        ([(b"x-api-key", b"k2")], "k2"),
        ([(b"x-api-key", b"k2"), (b"authorization", b"Bearer k1")], "k1"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([], None),
    ],
    ids=["bearer", "bearer-case-space", "x-api-key", "bearer-wins", "basic", "empty", "none"],
)
def test_api_key_from_headers(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert api_key_from_headers(headers) == expected


@pytest.mark.parametrize(
    ("key", "tier", "level"),
    [
        ("gk-demo-free", "free", KycLevel.EMAIL),
        ("gk-demo-pro", "pro", KycLevel.GOVERNMENT_ID),
        ("gk-demo-enterprise", "enterprise", KycLevel.BUSINESS),
        ("gk-demo-unverified", "free", KycLevel.NONE),
    ],
)
async def test_demo_subjects_load(key: str, tier: str, level: KycLevel) -> None:
    store = FileSubjectStore(DEMO_SUBJECTS)
    subject = await store.lookup(key)
    assert subject is not None
    assert (subject.tier, subject.kyc_level) == (tier, level)
    assert subject.kyc_rank == level.rank
    assert subject.account_age_days is not None and subject.account_age_days >= 0
    assert await store.lookup(key + "x") is None


@settings(max_examples=200)
@given(
    created=st.none() | st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 1, 1)),
    now=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    level=st.sampled_from(list(KycLevel)),
    org=st.none() | st.text(max_size=8),
    flags=st.lists(st.text(max_size=8), max_size=3),
    payment=st.none() | st.text(max_size=8),
)
def test_the_subject_is_the_record_with_its_age_in_days(
    created: date | None,
    now: datetime,
    level: KycLevel,
    org: str | None,
    flags: list[str],
    payment: str | None,
) -> None:
    record = SubjectRecord(
        key="k",
        id="s1",
        org=org,
        tier="pro",
        kyc_level=level,
        account_created=created,
        flags=flags,
        payment_fingerprint=payment,
    )
    subject = record.to_subject(now)
    expected = Subject(
        id="s1",
        org=org,
        tier="pro",
        kyc_level=level,
        account_created=created.isoformat() if created else None,
        flags=flags,
        payment_fingerprint=payment,
    )
    assert subject.model_dump(exclude={"account_age_days"}) == expected.model_dump(
        exclude={"account_age_days"}
    )
    if created is None:
        assert subject.account_age_days is None
    else:
        midnight = datetime(created.year, created.month, created.day, tzinfo=UTC)
        days = max(0.0, (now - midnight).total_seconds() / 86400)
        assert subject.account_age_days == pytest.approx(days, abs=1e-6)
    subject.flags.append("changed")  # a subject's lists are its own
    assert record.flags == flags


def test_kyc_levels_are_ordered() -> None:
    order = ["none", "email", "phone", "payment", "government_id", "business"]
    assert [KycLevel(name).rank for name in order] == list(range(6))


async def test_file_store_accepts_key_hashes(tmp_path: Path) -> None:
    path = tmp_path / "subjects.json"
    digest = hash_api_key("secret")
    path.write_text(
        f'{{"subjects": [{{"key_sha256": "{digest}", "id": "h", "kyc_level": "phone"}}]}}'
    )
    subject = await FileSubjectStore(path).lookup("secret")
    assert subject is not None and subject.id == "h"


@pytest.mark.parametrize(
    "content",
    [
        "subjects = 3",
        "[[subjects]]\nid = 'no-key'",
        "[[subjects]]\nkey = 'a'\nid = 'x'\nkyc_level = 'galactic'",
        "[[subjects]]\nkey = 'a'\nid = 'x'\n[[subjects]]\nkey = 'a'\nid = 'y'",
        "not toml at all [",
    ],
    ids=["not-a-list", "no-key", "bad-level", "duplicate-key", "syntax"],
)
def test_bad_subject_files_fail_at_start_up(tmp_path: Path, content: str) -> None:
    path = tmp_path / "subjects.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        FileSubjectStore(path)


async def test_redis_store_round_trip(redis_url: str) -> None:
    store = RedisSubjectStore(redis_url, prefix="t:subj:", cache_seconds=0)
    record = SubjectRecord(key="rk-1", id="r1", tier="pro", kyc_level=KycLevel.PAYMENT)
    await store.put(record)
    subject = await store.lookup("rk-1")
    assert subject is not None and (subject.id, subject.tier) == ("r1", "pro")
    assert await store.lookup("rk-2") is None
    # The key itself is never written to Redis.
    raw = Redis.from_url(redis_url)
    stored = [await raw.get(k) for k in await raw.keys("t:subj:*")]
    await raw.aclose()
    assert stored and all(b"rk-1" not in (value or b"") for value in stored)
    await store.delete(hash_api_key("rk-1"))
    assert await store.lookup("rk-1") is None
    await store.aclose()


async def test_redis_store_unreachable_is_an_identity_error() -> None:
    store = RedisSubjectStore("redis://127.0.0.1:1/0", cache_seconds=0)
    with pytest.raises(IdentityError):
        await store.lookup("anything")
    await store.aclose()


def test_each_subject_of_a_record_is_its_own_and_aged_when_made() -> None:
    """A record validates its subject once and copies it per call: what one request does to
    its subject (identify sets auth_method) never reaches the next, and the age is each
    call's."""
    record = SubjectRecord(key="k", id="s1", account_created=date(2025, 1, 1), flags=["a"])
    first = record.to_subject(datetime(2025, 1, 2, tzinfo=UTC))
    first.auth_method = "api_key"
    first.flags.append("changed")
    second = record.to_subject(datetime(2025, 1, 11, tzinfo=UTC))
    assert second is not first
    assert second.auth_method is None and second.flags == ["a"]
    assert (first.account_age_days, second.account_age_days) == (1.0, 10.0)
    assert second.kyc_rank == second.kyc_level.rank
    assert second == Subject.model_validate(second.model_dump())


@settings(max_examples=200)
@given(key=st.text(max_size=200))
def test_a_key_hashes_to_its_sha256_whichever_implementation_computes_it(key: str) -> None:
    """hash_api_key uses CPython's own SHA-256 where there is one (cheaper on the request
    path than OpenSSL's): stores written with either must index subjects alike."""
    import hashlib

    from gatekeeper.identity.stores import hash_api_key

    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
