"""Send a population's requests through a gateway and record what each one got back.

Two ways to run:

- **in-process** (default): the demo app (demo-reasoner behind ``GatekeeperMiddleware``) with
  a subjects file of the simulated accounts, the scenario's GeoIP source, memory stores and a
  *simulated clock*: quota buckets and signal windows read the clock the simulator advances to
  each request's scheduled time, so an hour of traffic runs in seconds with the refill rates and
  windows of a real hour. Requests are sent one after another in schedule order (deterministic).
  What still follows the wall clock: ``input.time`` (the policy's "now"), account ages and the
  launch window, none of which moves meaningfully during a run.
- **target**: a running gateway at a URL (configured with the subjects file ``--write-subjects``
  produces and the scenario's GeoIP source). Its clocks are real, so the schedule is replayed
  at ``speed`` times real time with bounded concurrency; token buckets then refill ``speed``
  times slower relative to the traffic than they would in production (the report says so).

Every request comes from 127.0.0.1 with ``X-Forwarded-For`` set to the account's address, so a
gateway that trusts 127.0.0.1 as a proxy sees the simulated networks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from gatekeeper.offline.simulate.population import PlannedRequest, Population

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request got: its status, the refusal's reason code, reasoning tokens seen,
    tool calls the completion made, and (in-process runs) the evidence the policy noted
    (``evidence:<a>+<b>`` in its notes)."""

    status: int
    code: str | None = None
    reasoning_tokens: int = 0
    evidence: tuple[str, ...] = ()
    tool_calls: int = 0


class SimulatedClock:
    """A clock the simulator sets; stores that accept a ``clock`` read it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def headers_for(request: PlannedRequest) -> dict[str, str]:
    account = request.account
    return {
        "authorization": f"Bearer {account.key}",
        "x-forwarded-for": account.ip,
        "user-agent": account.user_agent,
        "content-type": "application/json",
    }


def outcome_of(status: int, body: bytes) -> Outcome:
    """Read the status, the reason code of an error, and the reasoning the client received
    (demo-reasoner counts tokens as whitespace-separated words)."""
    try:
        document: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    if status >= 400:
        error = document.get("error") if isinstance(document, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return Outcome(status, code if isinstance(code, str) else None)
    tokens = calls = 0
    choices = document.get("choices") if isinstance(document, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            for key in ("reasoning_content", "reasoning"):
                value = message.get(key)
                if isinstance(value, str):
                    tokens += len(value.split())
            tool_calls = message.get("tool_calls")
            if isinstance(tool_calls, list):
                calls += len(tool_calls)
    return Outcome(status, None, tokens, tool_calls=calls)


def prepare_policy(
    source: Path,
    target: Path,
    *,
    model: str,
    released_days_ago: float | None,
    releases_hours_ago: dict[str, float] | None = None,
) -> Path:
    """Copy a policy directory; with ``released_days_ago``, mark ``model`` as released then,
    and each model of ``releases_hours_ago`` that many hours ago (config/launch/data.json), so
    the launch-window rule sees a fresh release."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    launch = target / "gatekeeper" / "config" / "launch" / "data.json"
    ago = {name: timedelta(hours=hours) for name, hours in (releases_hours_ago or {}).items()}
    if released_days_ago is not None:
        ago[model] = timedelta(days=released_days_ago)
    if ago and launch.is_file():
        data = json.loads(launch.read_text())
        now = datetime.now(UTC)
        for name, delta in ago.items():
            data.setdefault("releases", {})[name] = (now - delta).strftime("%Y-%m-%dT%H:%M:%SZ")
        launch.write_text(json.dumps(data, indent=2))
    return target


async def run_in_process(
    population: Population,
    policy: Path,
    workdir: Path,
    *,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Run every request through an in-process demo gateway with a simulated clock."""
    # Imported here: the CLI's other commands should not pay for the demo app.
    from gatekeeper.middleware import GatekeeperMiddleware
    from gatekeeper.offline.demo.model_server import create_model_app
    from gatekeeper.quota import MemoryQuotaStore
    from gatekeeper.runtime import Gatekeeper
    from gatekeeper.settings import Settings
    from gatekeeper.signals import SignalStage

    subjects, geo_db = await asyncio.to_thread(_write_inputs, population, workdir)
    settings = Settings.load(
        None,
        # Re-read the subjects file at most every 10 ms (wall): a reviewer's flag (scenario
        # `review`) reaches the gateway within a few requests, as within cache_seconds live.
        identity={"store": "file", "subjects_file": subjects, "cache_seconds": 0.01},
        network={"trusted_proxies": ["127.0.0.1"], "geoip_database": geo_db},
        policy={"path": policy},
        quota={"storage": "memory://"},
        # The evidence of each request is read back from this log in request order: it must
        # hold every decision (no rotation to another file, no drop from a full queue).
        audit={
            "path": workdir / "decisions.jsonl",
            "rotate_bytes": 0,
            "queue_size": len(population.requests) + 1000,
        },
        signals={"enabled": True, "storage": "memory://"},
    )
    gk = Gatekeeper.from_settings(settings)
    clock = SimulatedClock(time.time())
    start = clock.now
    await gk.quotas.aclose()
    gk.quotas = MemoryQuotaStore(clock=clock)
    if gk.signals is not None:
        await gk.signals.aclose()
    gk.signals = SignalStage.from_settings(settings.signals, "memory://", clock=clock)
    app = create_model_app()
    app.add_middleware(GatekeeperMiddleware, gatekeeper=gk)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    outcomes: list[Outcome] = []
    total = len(population.requests)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            reviews = {at: group for group, at in population.review_at.items()}
            for request in population.requests:
                if request.index in reviews:
                    await review(population, reviews[request.index], subjects)
                clock.now = start + request.at
                response = await client.post(
                    "/v1/chat/completions", content=request.body, headers=headers_for(request)
                )
                outcomes.append(outcome_of(response.status_code, response.content))
                if progress is not None and (len(outcomes) % 50 == 0 or len(outcomes) == total):
                    progress(len(outcomes), total)
    finally:
        await gk.aclose()
    evidence = await asyncio.to_thread(evidence_by_subject, workdir / "decisions.jsonl")
    return [
        replace(o, evidence=queue.popleft()) if (queue := evidence.get(r.account.id)) else o
        for r, o in zip(population.requests, outcomes, strict=True)
    ]


async def review(population: Population, group: str, subjects: Path) -> None:
    """A reviewer flags every account of ``group`` in the subjects file, as
    ``gatekeeper subjects flag <id> <flag>…`` does (the same admin path). The gateway's file
    store re-reads the file at most every identity.cache_seconds (10 ms here), in the
    background: the next few requests may still see the old flags, as they would live."""
    from gatekeeper.offline.identity.admin import FileSubjectAdmin

    scenario_group = next(
        g for g in [*population.scenario.benign, *population.scenario.campaigns] if g.name == group
    )
    assert scenario_group.review is not None
    admin = FileSubjectAdmin(subjects)
    for account in population.accounts:
        if account.group == group:
            flags = [*account.flags, *scenario_group.review.flags]
            await admin.set_flags(account.id, list(dict.fromkeys(flags)))
    await admin.aclose()
    await asyncio.sleep(0.05)


def evidence_by_subject(log: Path) -> dict[str, deque[tuple[str, ...]]]:
    """The evidence each decision of the audit log noted, per subject in log order (requests
    are sent one after another, so a subject's decisions are in the order of its requests)."""
    result: dict[str, deque[tuple[str, ...]]] = {}
    if not log.is_file():
        return result
    with log.open("rb") as lines:
        for line in lines:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            document = entry.get("input") if isinstance(entry, dict) else None
            subject = document.get("subject") if isinstance(document, dict) else None
            ident = subject.get("id") if isinstance(subject, dict) else None
            if not isinstance(ident, str):
                continue
            result_doc = entry.get("result")
            obligations = result_doc.get("obligations") if isinstance(result_doc, dict) else None
            notes = obligations.get("notes") if isinstance(obligations, dict) else None
            found: tuple[str, ...] = ()
            for note in notes if isinstance(notes, list) else []:
                if isinstance(note, str) and note.startswith("evidence:"):
                    found = tuple(e for e in note.split(":", 1)[1].split("+") if e)
            result.setdefault(ident, deque()).append(found)
    return result


def _write_inputs(population: Population, workdir: Path) -> tuple[Path, Path]:
    """The subjects file and the GeoIP database of a run (file I/O, off the event loop)."""
    from gatekeeper.network import ensure_database

    workdir.mkdir(parents=True, exist_ok=True)
    subjects = workdir / "subjects.json"
    subjects.write_bytes(orjson.dumps(population.subjects_document()))
    geo_db = workdir / "geo.mmdb"
    ensure_database(population.scenario.geo, geo_db)
    return subjects, geo_db


async def run_against(
    url: str,
    population: Population,
    *,
    speed: float = 60.0,
    concurrency: int = 32,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Replay the schedule against a running gateway at ``speed`` times real time."""
    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(concurrency)
    outcomes: list[Outcome | None] = [None] * len(population.requests)
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60, limits=limits) as client:
        started = loop.time()

        async def send(request: PlannedRequest) -> None:
            nonlocal done
            delay = request.at / speed - (loop.time() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            async with semaphore:
                try:
                    response = await client.post(
                        "/v1/chat/completions", content=request.body, headers=headers_for(request)
                    )
                    outcomes[request.index] = outcome_of(response.status_code, response.content)
                except httpx.HTTPError:
                    outcomes[request.index] = Outcome(599, "client_error")
            done += 1
            if progress is not None and (done % 50 == 0 or done == len(outcomes)):
                progress(done, len(outcomes))

        await asyncio.gather(*(send(r) for r in population.requests))
    return [o if o is not None else Outcome(599, "client_error") for o in outcomes]
