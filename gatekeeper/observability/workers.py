"""Metrics of every worker process of one server, whichever worker is scraped.

With ``observability.multiprocess_dir`` set (or ``PROMETHEUS_MULTIPROC_DIR``), each worker keeps
its cheap in-process tallies and, from a thread, writes a snapshot of its metric families to
that directory every ``observability.multiprocess_interval_seconds`` and once more at shutdown:
one JSON file per worker, written to a temporary name and renamed, so a reader sees a whole
snapshot or the previous one. A scrape merges the answering worker's live families with the
other workers' snapshots:

- counters, histograms and summaries are summed (histograms bucket by bucket), over every
  worker of the server, including workers that exited (their last snapshot stays, as in
  prometheus-client's multiprocess mode), so totals never go down while the server runs;
- gauges (queue depth, build and policy revision info, ...) and every ``process_*`` metric are
  reported per worker with a ``pid`` label, for live workers only: a worker is gone once its
  snapshot says it exited, or is older than ``STALE_INTERVALS`` intervals (at least
  ``STALE_MIN_SECONDS``);
- ``gatekeeper_workers{state}`` counts the workers merged: ``live`` and ``exited``.

Snapshot files are named after the server (the parent process's pid and start time, the
master of ``uvicorn --workers`` or gunicorn), the worker's pid and a token of its own, so a
previous run's files and another server's are never read, and a reused pid never overwrites a
dead worker's counts. Other workers' counts are as old as their last snapshot: at most one
interval behind.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("gatekeeper")

FORMAT = 1
PREFIX = "gatekeeper-"
#: A live worker rewrites its snapshot every interval; one this many intervals old is gone.
STALE_INTERVALS = 5
STALE_MIN_SECONDS = 5.0
#: Families whose samples add up across workers (unless ``process_*``: those are per process).
SUMMED = frozenset({"counter", "histogram", "summary"})

#: One family as a snapshot holds it: name, type, help, unit, samples ``[name, labels, value]``.
Family = dict[str, Any]


def server_id() -> str:
    """The server this worker belongs to: its parent's pid and (on Linux) start time."""
    ppid = os.getppid()
    try:
        stat = Path(f"/proc/{ppid}/stat").read_text()
        started = stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime in clock ticks
    except (OSError, IndexError):
        return str(ppid)
    return f"{ppid}.{started}"


def families_of(metrics: Iterable[Metric]) -> list[Family]:
    """Plain, JSON-ready copies of metric families."""
    return [
        {
            "name": metric.name,
            "type": metric.type,
            "help": metric.documentation,
            "unit": metric.unit,
            "samples": [[s.name, s.labels, s.value] for s in metric.samples],
        }
        for metric in metrics
    ]


class Source:
    """One worker's families, as merged: its pid, whether it is live, and the families."""

    __slots__ = ("families", "live", "pid")

    def __init__(self, pid: int, live: bool, families: list[Family]) -> None:
        self.pid = pid
        self.live = live
        self.families = families


def merge(sources: Iterable[Source]) -> list[Metric]:
    """The families of several workers as one server's (see the module's docstring)."""
    merged: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    workers = {"live": 0, "exited": 0}
    for source in sources:
        workers["live" if source.live else "exited"] += 1
        for family in source.families:
            name, kind = family["name"], family["type"]
            summed = kind in SUMMED and not name.startswith("process_")
            if not (summed or source.live):
                continue
            metric = merged.get(name)
            if metric is None:
                metric = merged[name] = Metric(name, family["help"], kind, family["unit"])
            if summed:
                totals = sums.setdefault(name, {})
                for sample, labels, value in family["samples"]:
                    if sample.endswith("_created"):
                        continue  # a per-process time: no meaning for a sum
                    key = (sample, tuple(sorted(labels.items())))
                    totals[key] = totals.get(key, 0.0) + _number(value)
            else:
                pid = str(source.pid)
                for sample, labels, value in family["samples"]:
                    metric.add_sample(sample, {**labels, "pid": pid}, _number(value))
    for name, totals in sums.items():
        for (sample, labels), value in totals.items():
            merged[name].add_sample(sample, dict(labels), value)
    count = GaugeMetricFamily(
        "gatekeeper_workers",
        "Worker processes whose metrics this scrape merged: live ones, and ones that exited "
        "(their counters are kept).",
        labels=["state"],
    )
    for state, value in workers.items():
        count.add_metric([state], value)
    return [*merged.values(), count]


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)  # JSON has no NaN: orjson wrote null


class WorkerMetrics(Collector):
    """Writes this worker's snapshots; collects the server's merged families at scrape."""

    def __init__(self, registry: CollectorRegistry, directory: Path, interval: float) -> None:
        self.source = registry
        self.directory = directory
        self.interval = interval
        self.stale_after = max(STALE_INTERVALS * interval, STALE_MIN_SECONDS)
        #: What ``/metrics`` and the metrics listener expose: the merged families.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._token = f"{time.time_ns():x}"
        self._named: tuple[int, str, Path] | None = None  # (pid, server, snapshot file)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def _name(self) -> tuple[int, str, Path]:
        """This worker's pid, server and snapshot file, named in the worker itself (a server
        that builds the app before forking its workers must not name them after itself)."""
        pid = os.getpid()
        if self._named is None or self._named[0] != pid:
            server = server_id()
            path = self.directory / f"{PREFIX}{server}-{pid}-{self._token}.json"
            self._named = (pid, server, path)
        return self._named

    @property
    def path(self) -> Path:
        """This worker's snapshot file."""
        return self._name()[2]

    def start(self) -> None:
        """Write a first snapshot, then one every interval from a daemon thread."""
        if self._thread is not None:
            return
        self.write()
        self._thread = threading.Thread(
            target=self._run, name="gatekeeper-metrics-snapshots", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def stop(self) -> None:
        """Stop the thread and write the last snapshot, marked exited (blocking: not on the
        event loop)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
            self.write(exited=True)

    def write(self, *, exited: bool = False) -> None:
        """Write this worker's snapshot atomically; a failure is logged, never raised."""
        path = self.path
        snapshot = {
            "format": FORMAT,
            "pid": os.getpid(),
            "written": time.time(),
            "exited": exited,
            "families": families_of(self.source.collect()),
        }
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            temporary.write_bytes(orjson.dumps(snapshot))
            os.replace(temporary, path)
        except OSError as exc:
            if not self._failing:
                log.warning("metrics snapshot %s not written: %s", path, exc)
            self._failing = True
            return
        if self._failing:
            log.info("metrics snapshot %s written again", path)
        self._failing = False

    def snapshots(self) -> Iterator[Source]:
        """The other workers of this server, as their snapshots last described them."""
        _pid, server, own = self._name()
        now = time.time()
        for path in sorted(self.directory.glob(f"{PREFIX}{server}-*.json")):
            if path == own:
                continue
            try:
                data = orjson.loads(path.read_bytes())
                if data.get("format") != FORMAT:
                    continue
                live = not data["exited"] and now - data["written"] <= self.stale_after
                yield Source(int(data["pid"]), live, list(data["families"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.debug("metrics snapshot %s skipped: %s", path, exc)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        live = Source(os.getpid(), True, families_of(self.source.collect()))
        yield from merge([live, *self.snapshots()])


__all__ = ["Source", "WorkerMetrics", "families_of", "merge", "server_id"]
