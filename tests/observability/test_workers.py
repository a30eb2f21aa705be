"""Metrics across worker processes (``observability.multiprocess_dir``): the merge of the workers'
families, the snapshot files, and a real ``uvicorn --workers`` server scraped worker by worker."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gatekeeper.audit import DecisionRecord
from gatekeeper.observability import GatekeeperMetrics
from gatekeeper.observability.workers import (
    PREFIX,
    Source,
    WorkerMetrics,
    families_of,
    merge,
    server_id,
)
from gatekeeper.settings import Settings
from tests.observability.conftest import CHAT, Factory, bearer
from tests.servers import demo_workers


def samples(metrics: list[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of merged families."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in metrics for s in m.samples}


def worker(decisions: int, app_seconds: list[float], depth: int) -> list[dict[str, Any]]:
    """The families of one worker: a counter, a histogram, a gauge and a process counter."""
    counter = CounterMetricFamily("gk_decisions", "d", labels=["outcome"])
    counter.add_metric(["allow"], decisions)
    histogram = HistogramMetricFamily("gk_app_seconds", "a")
    buckets = [
        ("0.1", sum(s <= 0.1 for s in app_seconds)),
        ("1.0", sum(s <= 1 for s in app_seconds)),
    ]
    histogram.add_metric([], [*buckets, ("+Inf", len(app_seconds))], sum(app_seconds))
    gauge = GaugeMetricFamily("gk_queue_depth", "q")
    gauge.add_metric([], depth)
    cpu = CounterMetricFamily("process_cpu_seconds", "c", value=1.5)
    return families_of([counter, histogram, gauge, cpu])


def test_merge_sums_counters_and_histogram_buckets_and_keeps_exited_workers() -> None:
    merged = samples(
        merge(
            [
                Source(11, True, worker(3, [0.05, 0.5], depth=2)),
                Source(12, True, worker(4, [0.05, 0.05, 5.0], depth=7)),
                Source(13, False, worker(5, [0.5], depth=9)),  # exited: counts kept
            ]
        )
    )
    assert merged[("gk_decisions_total", (("outcome", "allow"),))] == 12
    bucket = "gk_app_seconds_bucket"
    assert merged[(bucket, (("le", "0.1"),))] == 3
    assert merged[(bucket, (("le", "1.0"),))] == 5
    assert merged[(bucket, (("le", "+Inf"),))] == 6
    assert merged[("gk_app_seconds_count", ())] == 6
    assert merged[("gk_app_seconds_sum", ())] == pytest.approx(6.15)
    # Gauges and process metrics: per live worker, by pid; the exited worker's are gone.
    assert merged[("gk_queue_depth", (("pid", "11"),))] == 2
    assert merged[("gk_queue_depth", (("pid", "12"),))] == 7
    assert ("gk_queue_depth", (("pid", "13"),)) not in merged
    assert merged[("process_cpu_seconds_total", (("pid", "12"),))] == 1.5
    assert ("process_cpu_seconds_total", (("pid", "13"),)) not in merged
    assert merged[("gatekeeper_workers", (("state", "live"),))] == 2
    assert merged[("gatekeeper_workers", (("state", "exited"),))] == 1


def test_merged_families_are_valid_exposition() -> None:
    registry = CollectorRegistry(auto_describe=False)

    class Merged(Collector):
        def collect(self) -> list[Metric]:
            return merge([Source(1, True, worker(1, [0.2], 0)), Source(2, True, worker(2, [], 1))])

    registry.register(Merged())
    text = generate_latest(registry).decode()
    assert 'gk_decisions_total{outcome="allow"} 3.0' in text
    assert text.count("# TYPE gk_app_seconds histogram") == 1
    assert 'gk_queue_depth{pid="2"} 1.0' in text


def record(outcome_allow: bool) -> DecisionRecord:
    rec = DecisionRecord(decision_id="d", path="/v1/chat/completions", method="POST")
    rec.decided_by = "policy"
    rec.result = {"allow": outcome_allow, "reasons": []}
    rec.metrics = {"timer_gatekeeper_app_ns": 2_000_000}
    return rec


def other_worker(directory: Path, pid: int, families: list[dict[str, Any]], **fields: Any) -> Path:
    """A snapshot as another worker of this server would write it."""
    path = directory / f"{PREFIX}{server_id()}-{pid}-0.json"
    snapshot = {"format": 1, "pid": pid, "written": time.time(), "exited": False}
    path.write_bytes(orjson.dumps({**snapshot, "families": families, **fields}))
    return path


def allowed(registry: CollectorRegistry) -> float:
    return (
        registry.get_sample_value(
            "gatekeeper_decisions_total", {"outcome": "allow", "reason": "none"}
        )
        or 0.0
    )


def test_snapshots_are_written_whole_and_merged_with_the_live_tallies(tmp_path: Path) -> None:
    metrics = GatekeeperMetrics()
    workers = WorkerMetrics(metrics.registry, tmp_path, interval=60)
    for _ in range(3):
        metrics.observe(record(True), 1000)
    workers.write()
    (snapshot,) = tmp_path.glob(f"{PREFIX}*.json")
    assert snapshot == workers.path
    assert [p.name for p in tmp_path.iterdir()] == [snapshot.name]  # no temporary left behind
    assert orjson.loads(snapshot.read_bytes())["pid"] == os.getpid()

    other = worker(0, [], 0)  # another worker that decided 5 requests
    decided = CounterMetricFamily("gatekeeper_decisions", "", labels=["outcome", "reason"])
    decided.add_metric(["allow", "none"], 5)
    other_worker(tmp_path, 99999991, [*other, *families_of([decided])])
    metrics.observe(record(True), 1000)  # live: counted at once, snapshot or not
    assert allowed(workers.registry) == 4 + 5
    assert allowed(metrics.registry) == 4  # the worker's own registry is unchanged

    # Files that are not this server's, or not snapshots at all, are not read.
    (tmp_path / f"{PREFIX}1.2-99999992-0.json").write_bytes(snapshot.read_bytes())
    (tmp_path / f"{PREFIX}{server_id()}-99999993-0.json").write_bytes(b"{half a snap")
    assert allowed(workers.registry) == 9


def test_a_stale_or_exited_worker_keeps_its_counters_but_not_its_gauges(tmp_path: Path) -> None:
    metrics = GatekeeperMetrics()
    workers = WorkerMetrics(metrics.registry, tmp_path, interval=0.5)
    other_worker(tmp_path, 99999991, worker(2, [], 4), written=time.time() - 60)
    other_worker(tmp_path, 99999992, worker(3, [], 6), exited=True)
    other_worker(tmp_path, 99999993, worker(4, [], 8))
    registry = workers.registry
    assert registry.get_sample_value("gk_decisions_total", {"outcome": "allow"}) == 9
    assert registry.get_sample_value("gk_queue_depth", {"pid": "99999991"}) is None
    assert registry.get_sample_value("gk_queue_depth", {"pid": "99999992"}) is None
    assert registry.get_sample_value("gk_queue_depth", {"pid": "99999993"}) == 8
    assert registry.get_sample_value("gatekeeper_workers", {"state": "live"}) == 2  # with us
    assert registry.get_sample_value("gatekeeper_workers", {"state": "exited"}) == 2


def test_the_writer_thread_refreshes_the_snapshot_and_marks_it_exited_at_stop(
    tmp_path: Path,
) -> None:
    metrics = GatekeeperMetrics()
    workers = WorkerMetrics(metrics.registry, tmp_path, interval=0.05)
    workers.start()
    try:
        metrics.observe(record(True), 1000)
        deadline = time.monotonic() + 10
        while b'"gatekeeper_decisions_total"' not in workers.path.read_bytes():
            assert time.monotonic() < deadline, "no snapshot with the decision"
            time.sleep(0.02)
    finally:
        workers.stop()
    assert orjson.loads(workers.path.read_bytes())["exited"] is True


async def test_without_a_directory_metrics_are_the_process_own(
    protected: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    async with protected() as p:
        observability = p.gk.observability
        assert observability.workers is None
        assert observability.exposition is observability.metrics.registry
        response = await p.client.get("/metrics")
    assert "gatekeeper_workers" not in response.text
    assert "x-gatekeeper-worker-pid" not in response.headers


async def test_prometheus_multiproc_dir_is_the_default_directory(
    protected: Factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    async with protected() as p:
        assert (await p.chat("gk-demo-enterprise")).status_code == 200
        response = await p.client.get("/metrics")
        workers = p.gk.observability.workers
        assert workers is not None and workers.directory == tmp_path / "prom"
    assert response.headers["x-gatekeeper-worker-pid"] == str(os.getpid())
    assert 'gatekeeper_decisions_total{outcome="allow",reason="none"} 1.0' in response.text
    assert 'gatekeeper_workers{state="live"} 1.0' in response.text
    # Closing wrote the last snapshot, marked exited.
    assert orjson.loads(workers.path.read_bytes())["exited"] is True


# -- a real server with several workers ------------------------------------------------------

DECIDED = re.compile(r"^gatekeeper_decisions_total\{[^}]*\} (\S+)$", re.MULTILINE)


def scrape(url: str) -> tuple[int, float, str]:
    """``(answering worker's pid, decisions in total, text)``, on a new connection."""
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    text = response.text
    total = sum(float(value) for value in DECIDED.findall(text))
    return int(response.headers["x-gatekeeper-worker-pid"]), total, text


def test_every_worker_answers_for_all_of_them(tmp_path: Path) -> None:
    snapshots = tmp_path / "metrics"
    env = {
        "GATEKEEPER_OBSERVABILITY__MULTIPROCESS_DIR": str(snapshots),
        "GATEKEEPER_OBSERVABILITY__MULTIPROCESS_INTERVAL_SECONDS": "0.2",
    }
    with demo_workers(tmp_path, workers=2, **env) as server:
        pids = server.pids()
        assert len(pids) == 2
        # Allowed and refused requests, each on a new connection so both workers take some.
        statuses: Counter[int] = Counter()
        for i in range(40):
            key = "gk-demo-enterprise" if i % 2 else "gk-demo-unverified"
            url = f"{server.url}/v1/chat/completions"
            response = httpx.post(url, json=CHAT, headers=bearer(key), timeout=30)
            statuses[response.status_code] += 1
        assert statuses == {200: 20, 403: 20}
        time.sleep(1.0)  # past the snapshot interval

        # Both workers counted some of them, and each answers with the server's totals.
        per_worker = {}
        for path in snapshots.glob(f"{PREFIX}*.json"):
            snapshot = orjson.loads(path.read_bytes())
            (decided,) = [f for f in snapshot["families"] if f["name"] == "gatekeeper_decisions"]
            per_worker[snapshot["pid"]] = sum(value for _, _, value in decided["samples"])
        assert set(per_worker) == pids
        assert all(per_worker.values()), per_worker
        answered: set[int] = set()
        deadline = time.monotonic() + 60
        while answered != pids:
            assert time.monotonic() < deadline, f"only {answered} answered /metrics"
            pid, total, text = scrape(server.url)
            answered.add(pid)
            assert total == 40, (pid, text)
            assert (
                'gatekeeper_decisions_total{outcome="deny",reason="kyc_insufficient"} 20.0' in text
            )
            assert 'gatekeeper_workers{state="live"} 2.0' in text
            for worker_pid in pids:
                assert f'gatekeeper_build_info{{pid="{worker_pid}",' in text

        # A worker that exits: its counts stay (uvicorn starts another in its place).
        gone = min(pids)
        os.kill(gone, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, server.printed()
            try:
                pid, total, text = scrape(server.url)
            except httpx.TransportError:
                continue
            if 'gatekeeper_workers{state="exited"} 1.0' in text and pid != gone:
                break
            time.sleep(0.1)
        for _ in range(6):
            pid, total, text = scrape(server.url)
            assert total == 40, (pid, text)
            assert f'pid="{gone}"' not in text


def test_a_relative_directory_in_a_toml_file_is_relative_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "gatekeeper.toml"
    config.write_text('[observability]\nmultiprocess_dir = "var/metrics"\n')
    settings = Settings.load(config)
    assert settings.observability.multiprocess_dir == tmp_path / "var" / "metrics"
    assert settings.observability.multiprocess_interval_seconds == 1.0
