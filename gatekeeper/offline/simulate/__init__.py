"""``gatekeeper simulate``: extraction campaigns and benign users against a gateway.

A scenario (``simulations/*.yaml``) describes a population: benign users of every tier and
one or more extraction campaigns (many accounts sharing payment cards, networks and user
agents, sending templated chain-of-thought-eliciting prompts). ``simulate`` replays the same
traffic twice, once under a baseline policy with per-key rate limits only and once under the
policy pack under test, and reports what each campaign harvested and what benign users lost.
See docs/distillation.md.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from gatekeeper.offline.simulate.population import Account, PlannedRequest, Population
from gatekeeper.offline.simulate.report import build_report, render_html, render_text
from gatekeeper.offline.simulate.runner import (
    Outcome,
    Progress,
    SimulatedClock,
    prepare_policy,
    run_against,
    run_in_process,
)
from gatekeeper.offline.simulate.scenario import Group, LaunchMove, Scenario, TierShare

IN_PROCESS_CLOCK = (
    "simulated: the quota buckets and the signal windows read a clock the simulator advances "
    "to each request's scheduled time (requests are sent one after another, in order); "
    "input.time, account ages and the launch window follow the wall clock"
)


async def simulate(
    scenario: Scenario,
    *,
    target: str | None = None,
    baseline_target: str | None = None,
    speed: float = 60.0,
    concurrency: int = 32,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` (in-process, or against ``target``) and return the report."""
    population = Population(scenario)
    started = time.perf_counter()
    runs: dict[str, list[Outcome]] = {}
    if target is None:
        with tempfile.TemporaryDirectory(prefix="gatekeeper-simulate-") as tmp:
            work = Path(tmp)
            baseline = prepare_policy(
                scenario.baseline, work / "baseline-policy", model=scenario.model,
                released_days_ago=None,
            )  # fmt: skip
            pack = prepare_policy(
                scenario.pack, work / "pack-policy", model=scenario.model,
                released_days_ago=scenario.released_days_ago,
                releases_hours_ago=scenario.releases,
            )  # fmt: skip
            runs["baseline"] = await run_in_process(
                population, baseline, work / "baseline", progress=progress
            )
            runs["pack"] = await run_in_process(population, pack, work / "pack", progress=progress)
        clock: dict[str, Any] = {"mode": "in-process", "clock": IN_PROCESS_CLOCK}
    else:
        if baseline_target is not None:
            runs["baseline"] = await run_against(
                baseline_target, population, speed=speed, concurrency=concurrency,
                progress=progress,
            )  # fmt: skip
        runs["pack"] = await run_against(
            target, population, speed=speed, concurrency=concurrency, progress=progress
        )
        clock = {
            "mode": f"target {target} (baseline: {baseline_target or 'none'})",
            "clock": f"real time at {speed:g}x: a simulated hour took {3600 / speed:.0f} s, so "
            f"token buckets refilled {speed:g}x slower relative to the traffic than in "
            "production (per-key limits bite harder than they would)",
        }
    clock["wall_seconds"] = round(time.perf_counter() - started, 1)
    policies = {"pack": str(scenario.pack), "baseline": str(scenario.baseline)}
    return build_report(population, runs, {"time": clock, "policies": policies})


__all__ = [
    "Account",
    "Group",
    "LaunchMove",
    "Outcome",
    "PlannedRequest",
    "Population",
    "Scenario",
    "SimulatedClock",
    "TierShare",
    "build_report",
    "render_html",
    "render_text",
    "run_against",
    "run_in_process",
    "simulate",
]
