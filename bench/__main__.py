"""Every benchmark scenario in sequence: `python -m bench` (or `make bench`).

Each scenario runs in its own process (``python -m bench.<name>``), one after the other, so
none inherits another's caches, servers or memory; each prints its own medians and ratios.
``--quick`` runs every scenario in a few seconds (a smoke test, not a measurement);
``--only``/``--skip`` choose scenarios by name. docs/performance.md explains every figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

#: (name, what it measures, arguments for a quick run), in the order of docs/performance.md.
SCENARIOS: list[tuple[str, str, list[str]]] = [
    ("stack", "1. the whole stack over HTTP vs bare and slowapi", ["--quick"]),
    ("policy_eval", "2. policy evaluation, embedded vs OPA", ["--rounds", "8", "--per-round", "5"]),
    ("quotas", "3. quota checks vs limits/slowapi", ["--rounds", "1", "--seconds", "1",
                                                    "--checks", "100"]),
    ("shaping", "4. reasoning shaping per event", ["--rounds", "1"]),
    ("streaming", "4. streaming over HTTP: time to first byte", ["--quick"]),
    ("decision_log", "5. decision log events/s", ["--events", "2000", "--durable-events", "200",
                                                  "--rounds", "1"]),
    ("scale", "6. 2 uvicorn workers sharing one Redis", ["--quick"]),
    ("switch", "the thread switch interval: one-connection p99", ["--quick"]),
    ("signals", "distillation signals: the stage and its policy cost", []),
    ("memory", "memory over many requests", ["--quick"]),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds each: smoke test")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--skip", default="", help="comma-separated scenario names")
    parser.add_argument("--profile", action="store_true", help="also run bench.profile")
    args = parser.parse_args(argv)
    names = [name for name, _, _ in SCENARIOS]
    only = [n for n in args.only.split(",") if n]
    skip = {n for n in args.skip.split(",") if n}
    for name in [*only, *skip]:
        if name not in names and name != "profile":
            parser.error(f"unknown scenario {name!r} (known: {', '.join(names)})")
    chosen = [s for s in SCENARIOS if (not only or s[0] in only) and s[0] not in skip]
    if args.profile:
        chosen.append(("profile", "where a request's time goes", ["--quick"]))
    failed = []
    suite_started = time.monotonic()
    for name, what, quick in chosen:
        one, five, _ = os.getloadavg()
        print(f"\n=== bench.{name}: {what} (load average {one:.2f}, {five:.2f}) ===", flush=True)
        started = time.monotonic()
        command = [sys.executable, "-m", f"bench.{name}", *(quick if args.quick else [])]
        code = subprocess.run(command, check=False).returncode
        print(f"=== bench.{name}: {time.monotonic() - started:.0f} s"
              + (f", exit status {code}" if code else "") + " ===", flush=True)  # fmt: skip
        if code:
            failed.append(name)
    print(f"\n{len(chosen)} scenarios in {time.monotonic() - suite_started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
