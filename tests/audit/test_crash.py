"""``kill -9`` during a burst on durable routes loses no event of an answered request."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from gatekeeper.audit.keys import Keyring
from gatekeeper.offline.audit.reader import find_log_files, iter_entries
from gatekeeper.offline.audit.verify import verify_log
from tests.servers import demo_server

CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}
KEYS = ("gk-demo-enterprise", "gk-demo-pro", "gk-demo-unverified", "gk-nope")


def burst(url: str, answered: list[str], stop: threading.Event, worker: int) -> None:
    """Send requests until stopped; keep the decision id of every response received whole."""
    with httpx.Client(base_url=url, timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            key = KEYS[(worker + n) % len(KEYS)]
            try:
                r = http.post(
                    "/v1/chat/completions",
                    json={**CHAT, "stream": n % 2 == 0},
                    headers={"authorization": f"Bearer {key}"},
                )
                r.read()
            except httpx.HTTPError:
                continue  # cut off by the crash: not answered
            if "x-gatekeeper-decision-id" in r.headers:
                answered.append(r.headers["x-gatekeeper-decision-id"])


def test_kill_9_mid_burst_loses_no_answered_event(tmp_path: Path) -> None:
    log_path = tmp_path / "crash" / "decisions.jsonl"
    env = {
        "GATEKEEPER_AUDIT__PATH": str(log_path),
        "GATEKEEPER_AUDIT__DURABLE_PATHS": '["/v1/*"]',
        "GATEKEEPER_AUDIT__CHECKPOINT_EVERY": "25",
    }
    answered: list[str] = []
    with demo_server(tmp_path, **env) as server:
        stop = threading.Event()
        workers = [
            threading.Thread(target=burst, args=(server.url, answered, stop, i)) for i in range(12)
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 30
        while len(answered) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-burst: requests are in flight
        server.proc.wait(10)
        stop.set()
        for worker in workers:
            worker.join(15)
    assert len(answered) >= 150

    files = find_log_files([log_path])
    logged = {e["decision_id"] for e in iter_entries(files.entries)}
    missing = [d for d in answered if d not in logged]
    assert not missing, f"{len(missing)} answered requests have no event"
    keyring = Keyring(log_path.parent / "keys")
    # Killed: no shutdown checkpoint, and the tail after the last checkpoint is unsigned.
    killed = verify_log(files, keyring)
    assert killed.problem is not None and killed.problem.kind == "open_tail", killed.summary()
    report = verify_log(files, keyring, allow_open_tail=True)
    assert report.problem is None, report.summary()  # a torn final line is allowed, nothing else

    # The next start continues the chain after the crash and says so.
    with demo_server(tmp_path, **env) as again:
        with again.client() as http:
            r = http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": KEYS[0]})
        assert r.status_code == 200
    report = verify_log(find_log_files([log_path]), keyring)
    assert report.exit_code == 0 and report.restarts == 1 and report.closed, report.summary()
    restart = next(
        json.loads(line) for line in log_path.read_text().splitlines() if '"kind":"restart"' in line
    )
    assert restart["gatekeeper"]["restart"]["clean_shutdown"] is False
