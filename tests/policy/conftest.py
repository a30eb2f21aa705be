"""Fixtures for the policy tests: the default pack, input factories and a real OPA server."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.policy import PolicySource, load_policy
from tests.policy.opa_server import OpaServer, find_opa, opa_server, skip_reason

POLICIES = Path(__file__).resolve().parents[2] / "policies"

BASE_INPUT: dict[str, Any] = {
    "version": 1,
    "subject": {
        "id": "s1",
        "org": "o1",
        "tier": "free",
        "kyc_level": "email",
        "flags": [],
        "auth_method": "api_key",
    },
    "network": {"client_ip": "203.0.113.9", "country": "US", "jurisdiction_tags": []},
    "request": {
        "method": "POST",
        "path": "/v1/messages",
        "dialect": "anthropic_messages",
        "stream": False,
        "estimated_tokens": 50,
    },
    "signals": {},
    "time": {"unix_ns": 0, "rfc3339": "2026-01-01T00:00:00Z", "weekday": 3, "hour_utc": 0},
}


def make_input(
    tier: str = "free", kyc: str = "email", country: str | None = "US"
) -> dict[str, Any]:
    """An input document for a subject of ``tier`` and ``kyc`` calling from ``country``."""
    doc = copy.deepcopy(BASE_INPUT)
    doc["subject"].update(tier=tier, kyc_level=kyc)
    doc["network"]["country"] = country
    return doc


@pytest.fixture(scope="session")
def pack() -> PolicySource:
    return load_policy(POLICIES)


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    """A writable copy of the default pack."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


@pytest.fixture(scope="session")
def opa_bin() -> str:
    """The opa binary; the test is skipped, saying why, where there is none."""
    found = find_opa()
    if found is None:
        pytest.skip(skip_reason())
    return found


@pytest.fixture(scope="module")
def opa_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., OpaServer]]:
    """Start OPA servers (``factory(*args)``); all stopped at the end of the module."""
    found = find_opa()
    if found is None:
        pytest.skip(skip_reason())
    started: list[Any] = []

    def start(*args: str) -> OpaServer:
        ctx = opa_server(found, *args)
        server = ctx.__enter__()
        started.append(ctx)
        return server

    yield start
    for ctx in reversed(started):
        ctx.__exit__(None, None, None)
