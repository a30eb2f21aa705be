"""Factories for decision-log tests: realistic decision events and whole signed logs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit import DecisionLog, DecisionRecord, JsonlFileSink, Masker, Signer
from gatekeeper.audit.keys import Keyring

BASE_NS = 1_780_000_000_000_000_000  # 2026-05-28, a fixed clock so reports are reproducible

TIERS = ("free", "pro", "enterprise")
COUNTRIES = ("DE", "US", "FR", "IR", None)


def complete_lines(path: Path) -> list[bytes]:
    """The complete lines of a log file: a test may read it while the writer thread is in the
    middle of writing a batch, whose last line is then still partial."""
    raw = path.read_bytes()
    return raw[: raw.rfind(b"\n") + 1].splitlines()


def decision_event(i: int, *, unix_ns: int | None = None, **overrides: Any) -> dict[str, Any]:
    """A decision event as the middleware writes it, varied by ``i``."""
    tier = overrides.get("tier", TIERS[i % 3])
    country = overrides.get("country", COUNTRIES[i % 5])
    allow = overrides.get("allow", country != "IR" and i % 7 != 0)
    reason = "jurisdiction_restricted" if country == "IR" else "kyc_insufficient"
    record = DecisionRecord(
        decision_id=f"d-{i:05d}",
        unix_ns=unix_ns if unix_ns is not None else BASE_NS + i * 60_000_000_000,
        path="/v1/chat/completions",
        method="POST",
        revision="rev-1",
    )
    record.input = {
        "subject": {
            "id": overrides.get("subject", f"subject-{i % 4}"),
            "org": f"org-{i % 2}",
            "tier": tier,
            "payment_fingerprint": f"pf-{i % 4}",
        },
        "network": {
            "client_ip": "198.51.100.7",
            "country": country,
            "jurisdiction_tags": ["eu"] if country in ("DE", "FR") else [],
        },
        "request": {"method": "POST", "path": "/v1/chat/completions", "model": "demo"},
        "signals": {"cluster": {"id": f"cluster-{i % 3}"}},
    }
    record.result = {
        "allow": allow,
        "status": 200 if allow else 403,
        "reasons": [] if allow else [{"code": reason, "message": reason}],
    }
    record.status = 200 if allow else 403
    if allow:
        seen = 40 + i % 10
        exposed = {"free": 0, "pro": min(seen, 16), "enterprise": seen}[tier]
        mode = {"free": "drop", "pro": "summary", "enterprise": "full"}[tier]
        record.reasoning = {
            "mode": mode,
            "seen_tokens": seen,
            "exposed_tokens": exposed,
            "removed_tokens": seen - exposed,
        }
    return record.to_event({"app": "test"})


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "log" / "keys"  # where the runtime keeps them: beside the log


@pytest.fixture
def signer(keys_dir: Path) -> Signer:
    return Signer.from_files(keys_dir / "signing.pem", keys_dir)


@pytest.fixture
def keyring(keys_dir: Path, signer: Signer) -> Keyring:
    return Keyring(keys_dir)


LogFactory = Callable[..., Awaitable[Path]]


@pytest.fixture
def make_log(tmp_path: Path, signer: Signer) -> LogFactory:
    """``await make_log(n)``: a closed, signed log of ``n`` decision events (``event(i)``,
    default ``decision_event``); its path."""

    async def make(
        n: int,
        *,
        path: Path | None = None,
        checkpoint_every: int = 10,
        rotate_bytes: int = 0,
        log_signer: Signer | None = None,
        start: int = 0,
        event: Callable[[int], dict[str, Any]] | None = None,
        **options: Any,
    ) -> Path:
        path = path or tmp_path / "log" / "decisions.jsonl"
        log = DecisionLog(
            JsonlFileSink(path, rotate_bytes=rotate_bytes),
            signer=log_signer or signer,
            masker=Masker(),
            checkpoint_every=checkpoint_every,
            labels={"app": "test"},
            **options,
        )
        for i in range(start, start + n):
            log.record((event or decision_event)(i))
            if i % 25 == 24:
                await log.flush()  # batches of 25, as a steady stream of requests would make
        await log.aclose()
        return path

    return make


@pytest.fixture(params=["thread", "process"])
def sealer(request: pytest.FixtureRequest) -> str:
    """Where the log seals (``audit.sealer``): a test taking it runs with each."""
    return str(request.param)
