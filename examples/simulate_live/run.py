"""Run a simulation scenario live, over HTTP, against two real demo gateways.

    .venv/bin/python examples/simulate_live/run.py simulations/hydras.yaml \
        --hours 1 --speed 12 --concurrency 32 -o /tmp/live-hydras.json

Sets both gateways up as the in-process runner sets up its one (gatekeeper/offline/simulate/
runner.py): the policy directories prepared the same way (the pack with the scenario's
``releases`` / ``released_days_ago`` written into config/launch, the baseline copied as is),
the subjects file ``gatekeeper simulate --write-subjects`` writes, the scenario's GeoIP source,
127.0.0.1 as the only trusted proxy, memory quota and signal stores, and a decision log that
neither rotates nor drops. Each gateway is its own ``python -m gatekeeper demo`` process on a
free port; both are stopped (by their own pid) when the run ends, whatever happens. Then
``gatekeeper simulate SCENARIO --target PACK --baseline-target BASELINE`` replays the schedule
at ``--speed`` times real time, and the script counts, from the JSON report and the two decision
logs, the answers that were not policy decisions (transport errors, 5xx, requests that never
reached the policy). Tested by tests/examples/test_examples.py (a few simulated minutes).
What it found for the hydras scenario: docs/distillation.md, "Live, against the demo".
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from gatekeeper.offline.simulate import Scenario
from gatekeeper.offline.simulate.runner import prepare_policy

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

CONFIG = """\
[identity]
store = "file"
subjects_file = "{subjects}"

[network]
trusted_proxies = ["127.0.0.1"]
geoip_source = "{geo}"
geoip_database = "{work}/geo.mmdb"

[policy]
engine = "embedded"
path = "{policy}"
decision = "data.gatekeeper.decision"

[quota]
storage = "memory://"

[signals]
enabled = true
storage = "memory://"

[audit]
path = "{work}/decisions.jsonl"
rotate_bytes = 0
queue_size = 200000

[server]
host = "127.0.0.1"
port = {port}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gateway on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gateway on port {port} did not answer /healthz in {timeout:.0f} s")


def decisions(log: Path) -> Counter[str]:
    """Decisions of a gateway's log by outcome (allow / deny / ...)."""
    counts: Counter[str] = Counter()
    if not log.is_file():
        return counts
    for line in log.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            counts["unreadable"] += 1
            continue
        result = entry.get("result") if isinstance(entry, dict) else None
        allow = result.get("allow") if isinstance(result, dict) else None
        counts["allow" if allow is True else "deny" if allow is False else "other"] += 1
    return counts


def refusals(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Every run's non-2xx answers by code (campaigns and benign groups together): policy codes
    (distillation_suspected, quota_exceeded, ...) and anything else (``client_error`` for a
    transport error, a bare status for an answer without a gatekeeper error body)."""
    found: dict[str, dict[str, int]] = {}
    entries = [*report["campaigns"].values(), report["benign"]["all"]]
    for run in ("baseline", "pack"):
        codes: Counter[str] = Counter()
        for entry in entries:
            codes.update(entry.get(run, {}).get("refused_by_code", {}))
        found[run] = dict(codes.most_common())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--hours", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--speed", type=float, default=12.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("-o", "--output", type=Path, default=Path("/tmp/live-simulate.json"))
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    args = parser.parse_args()
    # The gateways and the simulator run from the repository root: absolute paths.
    args.scenario, args.output = args.scenario.resolve(), args.output.resolve()

    scenario = Scenario.load(args.scenario, seed=args.seed, hours=args.hours)
    work = Path(tempfile.mkdtemp(prefix="gatekeeper-live-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subjects = work / "subjects.json"
        select = ["--seed", str(args.seed)] if args.seed is not None else []
        select += ["--hours", str(args.hours)] if args.hours is not None else []
        cli = [PYTHON, "-m", "gatekeeper", "simulate", str(args.scenario), *select]
        subprocess.run([*cli, "--write-subjects", str(subjects)], check=True, cwd=ROOT)
        policies = {
            "pack": prepare_policy(
                scenario.pack, work / "pack" / "policy", model=scenario.model,
                released_days_ago=scenario.released_days_ago,
                releases_hours_ago=scenario.releases,
            ),
            "baseline": prepare_policy(
                scenario.baseline, work / "baseline" / "policy", model=scenario.model,
                released_days_ago=None,
            ),
        }  # fmt: skip
        ports: dict[str, int] = {}
        for name, policy in policies.items():
            ports[name] = port = free_port()
            config = work / name / "gatekeeper.toml"
            config.write_text(
                CONFIG.format(
                    subjects=subjects, geo=scenario.geo, policy=policy, work=work / name, port=port
                )
            )
            out = (work / name / "server.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [PYTHON, "-m", "gatekeeper", "demo", "--config", str(config)],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
            wait_healthy(port, processes[-1])
            print(f"{name}: pid {processes[-1].pid}, http://127.0.0.1:{port}", file=sys.stderr)
        command = [
            *cli, "--target", f"http://127.0.0.1:{ports['pack']}",
            "--baseline-target", f"http://127.0.0.1:{ports['baseline']}",
            "--speed", f"{args.speed:g}", "--concurrency", str(args.concurrency),
            "--no-progress", "-o", str(args.output),
        ]  # fmt: skip
        print("$ " + " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True, cwd=ROOT)
        report = json.loads(args.output.read_text())
        for name in policies:
            print(f"{name} decision log: {dict(decisions(work / name / 'decisions.jsonl'))}")
        print(f"requests per run: {report['requests']}; non-2xx by code: {refusals(report)}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
