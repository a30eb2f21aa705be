"""The simulation report: what each campaign harvested, and what benign users lost.

Both runs replay the same requests, so the pack run is compared with the baseline run request
by request:

- **harvest**: reasoning tokens that reached a campaign's clients, per simulated hour; for a
  campaign with tools, also the tool-call completions it received (what an agentic harvester
  collects, which no reasoning cap removes); for a campaign that moves to a newly released
  model, also the reasoning harvested on that model;
- **refused**: benign requests answered with an error status; "added by the pack" counts those
  the baseline answered;
- **degraded**: benign requests answered in both runs whose response carried fewer reasoning
  tokens with the pack than without it;
- **evidence** (in-process runs): per campaign and benign group, the requests whose decision
  noted each piece of evidence (the default pack's ``evidence:<a>+<b>`` note, written on
  graded requests), so a false positive says which evidence caused it.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from gatekeeper.offline.simulate.population import Population
from gatekeeper.offline.simulate.runner import Outcome


def build_report(
    population: Population,
    runs: dict[str, list[Outcome]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Aggregate per-request outcomes of the ``baseline`` and ``pack`` runs (either may be
    missing against a single target)."""
    scenario = population.scenario
    hours = scenario.hours
    slots = max(1, math.ceil(hours))
    report: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": scenario.seed,
        "simulated_hours": hours,
        "accounts": {
            "benign": sum(not a.campaign for a in population.accounts),
            "campaign": sum(a.campaign for a in population.accounts),
        },
        "requests": len(population.requests),
        **meta,
        "campaigns": {},
        "benign": {},
    }
    for group in scenario.campaigns:
        indices = [r.index for r in population.requests if r.account.group == group.name]
        entry: dict[str, Any] = {"accounts": group.accounts, "requests": len(indices)}
        for run, outcomes in runs.items():
            harvested = [0] * slots
            for i in indices:
                hour = min(slots - 1, int(population.requests[i].at // 3600))
                harvested[hour] += outcomes[i].reasoning_tokens
            total = sum(harvested)
            entry[run] = {
                "reasoning_tokens": total,
                "reasoning_tokens_per_hour": round(total / hours, 1),
                "by_hour": harvested,
                "answered": sum(outcomes[i].status < 400 for i in indices),
                "refused_by_code": dict(_codes(outcomes, indices)),
                "evidence_by_code": _evidence(outcomes, indices),
            }
            if group.tools:
                entry[run]["tool_call_completions"] = sum(
                    outcomes[i].tool_calls > 0 for i in indices
                )
            if group.launch is not None:
                entry[run]["new_model_reasoning_tokens"] = sum(
                    outcomes[i].reasoning_tokens
                    for i in indices
                    if population.requests[i].model == group.launch.model
                )
        if "baseline" in runs and "pack" in runs:
            for field, share in (
                ("reasoning_tokens", "pack_share_of_baseline"),
                ("tool_call_completions", "pack_share_of_baseline_tool_calls"),
                ("new_model_reasoning_tokens", "pack_share_of_baseline_new_model"),
            ):
                if field in entry["baseline"]:
                    base, pack = entry["baseline"][field], entry["pack"][field]
                    entry[share] = round(pack / base, 4) if base else None
        if group.launch is not None:
            entry["new_model"] = group.launch.model
        report["campaigns"][group.name] = entry
    report["benign"] = _benign(population, runs)
    return report


def _codes(outcomes: list[Outcome], indices: list[int]) -> Counter[str]:
    return Counter(
        outcomes[i].code or str(outcomes[i].status) for i in indices if outcomes[i].status >= 400
    )


def _evidence(outcomes: list[Outcome], indices: list[int]) -> dict[str, int]:
    """Requests by each piece of evidence the policy noted (a request counts once under each),
    most frequent first."""
    counts: Counter[str] = Counter(e for i in indices for e in set(outcomes[i].evidence))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _benign(population: Population, runs: dict[str, list[Outcome]]) -> dict[str, Any]:
    groups: dict[str, list[int]] = {"all": []}
    for request in population.requests:
        if not request.account.campaign:
            groups["all"].append(request.index)
            groups.setdefault(request.account.group, []).append(request.index)
    result: dict[str, Any] = {}
    for name, indices in groups.items():
        result[name] = _benign_entry(indices, runs)
        at = population.review_at.get(name)
        if at is not None:
            # A reviewer flagged the group's accounts mid-run (scenario `review`).
            result[name]["review"] = {
                "at_request": at,
                "before": _benign_entry([i for i in indices if i < at], runs),
                "after": _benign_entry([i for i in indices if i >= at], runs),
            }
    return result


def _benign_entry(indices: list[int], runs: dict[str, list[Outcome]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"requests": len(indices)}
    count = max(1, len(indices))
    for run, outcomes in runs.items():
        refused = [i for i in indices if outcomes[i].status >= 400]
        entry[run] = {
            "refused_share": round(len(refused) / count, 4),
            "refused_by_code": dict(_codes(outcomes, indices)),
            "reasoning_tokens": sum(outcomes[i].reasoning_tokens for i in indices),
            "evidence_by_code": _evidence(outcomes, indices),
        }
    if "baseline" in runs and "pack" in runs:
        base, pack = runs["baseline"], runs["pack"]
        added = [i for i in indices if pack[i].status >= 400 and base[i].status < 400]
        degraded = [
            i
            for i in indices
            if pack[i].status < 400
            and base[i].status < 400
            and pack[i].reasoning_tokens < base[i].reasoning_tokens
        ]
        entry["refused_by_pack_share"] = round(len(added) / count, 4)
        entry["degraded_by_pack_share"] = round(len(degraded) / count, 4)
        entry["refused_or_degraded_by_pack_share"] = round((len(added) + len(degraded)) / count, 4)
    return entry


def render_text(report: dict[str, Any]) -> str:
    """The report as the CLI prints it."""
    lines = [
        f"scenario {report['scenario']!r} (seed {report['seed']}): "
        f"{report['simulated_hours']:g} simulated h, {report['requests']} requests, "
        f"{report['accounts']['benign']} benign accounts, "
        f"{report['accounts']['campaign']} campaign accounts",
        f"time: {report.get('time', {}).get('mode', '?')} "
        f"({report.get('time', {}).get('wall_seconds', '?')} s wall)",
        "",
        "reasoning tokens harvested per simulated hour",
        f"  {'campaign':<22}{'accounts':>9}{'baseline':>12}{'pack':>12}{'pack/baseline':>15}",
    ]
    for name, entry in report["campaigns"].items():
        base = entry.get("baseline", {}).get("reasoning_tokens_per_hour", "-")
        pack = entry.get("pack", {}).get("reasoning_tokens_per_hour", "-")
        share = entry.get("pack_share_of_baseline")
        ratio = f"{share:.1%}" if isinstance(share, float) else "-"
        lines.append(f"  {name:<22}{entry['accounts']:>9}{base!s:>12}{pack!s:>12}{ratio:>15}")
    extra = [
        (name, label, field, share)
        for name, entry in report["campaigns"].items()
        for label, field, share in _other_harvests(entry)
        if field in entry.get("pack", entry.get("baseline", {}))
    ]
    if extra:
        lines += ["", "what else the campaigns harvested (whole run)"]
        for name, label, field, share in extra:
            entry = report["campaigns"][name]
            base = entry.get("baseline", {}).get(field, "-")
            pack = entry.get("pack", {}).get(field, "-")
            lines.append(
                f"  {name:<22}{label:<28}{base!s:>9}{pack!s:>9}{_pct(entry.get(share)):>9}"
            )
    lines += [
        "",
        "benign requests",
        f"  {'group':<22}{'requests':>9}{'refused (base)':>16}{'refused (pack)':>16}"
        f"{'+refused':>10}{'degraded':>10}",
    ]
    for name, entry in report["benign"].items():
        for part, sub in _benign_parts(entry):
            label = name if part is None else f"  {part} review flag"
            base, pack, added, degraded = _benign_shares(sub)
            lines.append(
                f"  {label:<22}{sub['requests']:>9}{base:>16}{pack:>16}{added:>10}{degraded:>10}"
            )
    lines += ["", "evidence noted by the pack (requests carrying each piece of evidence)"]
    for kind in ("campaigns", "benign"):
        for name, entry in report[kind].items():
            if kind == "benign" and name == "all":
                continue
            listed = _listed(entry.get("pack", {}).get("evidence_by_code"))
            lines.append(f"  {name:<22}{entry['requests']:>9}  {listed}")
    return "\n".join(lines)


def _other_harvests(entry: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """What a campaign harvested besides reasoning: (label, the runs' field, the field of the
    pack's share of the baseline)."""
    return (
        ("tool-call completions", "tool_call_completions", "pack_share_of_baseline_tool_calls"),
        (
            f"reasoning on {entry.get('new_model')}",
            "new_model_reasoning_tokens",
            "pack_share_of_baseline_new_model",
        ),
    )


def _other_harvest(entry: dict[str, Any]) -> str:
    """Tool-call completions and reasoning on a new model, baseline → pack (share)."""
    parts = []
    for label, field, share in _other_harvests(entry):
        base = entry.get("baseline", {}).get(field)
        pack = entry.get("pack", {}).get(field)
        if base is not None or pack is not None:
            parts.append(f"{label}: {base} → {pack} ({_pct(entry.get(share))})")
    return "; ".join(parts) or "-"


def _listed(codes: Any) -> str:
    """``{"a": 3, "b": 1}`` as ``a 3, b 1`` (``none`` when empty or missing)."""
    if not isinstance(codes, dict) or not codes:
        return "none"
    return ", ".join(f"{code} {n}" for code, n in codes.items())


def _benign_parts(entry: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """A benign group's figures, then those before and after a reviewer's flag (scenario
    ``review``): (None, the figures), then ("before", …) and ("after", …)."""
    yield None, entry
    review = entry.get("review")
    if isinstance(review, dict):
        yield "before", review["before"]
        yield "after", review["after"]


def _benign_shares(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    """Refused under the baseline, under the pack, refused and degraded by the pack."""
    return (
        _pct(entry.get("baseline", {}).get("refused_share")),
        _pct(entry.get("pack", {}).get("refused_share")),
        _pct(entry.get("refused_by_pack_share")),
        _pct(entry.get("degraded_by_pack_share")),
    )


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"


_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
    "td:first-child{text-align:left}"
)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the report."""
    rows = []
    for name, entry in report["campaigns"].items():
        base = entry.get("baseline", {})
        pack = entry.get("pack", {})
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    name,
                    entry["accounts"],
                    base.get("reasoning_tokens_per_hour", "-"),
                    pack.get("reasoning_tokens_per_hour", "-"),
                    _pct(entry.get("pack_share_of_baseline")),
                    " / ".join(map(str, base.get("by_hour", []))),
                    " / ".join(map(str, pack.get("by_hour", []))),
                    _other_harvest(entry),
                    _listed(pack.get("evidence_by_code")),
                )
            )
            + "</tr>"
        )
    benign = []
    for name, entry in report["benign"].items():
        for part, sub in _benign_parts(entry):
            label = name if part is None else f"{name}: {part} the review flag"
            cells = (
                label,
                sub["requests"],
                *_benign_shares(sub),
                _listed(sub.get("pack", {}).get("evidence_by_code")),
            )
            benign.append(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>"
            )
    time_note = html.escape(str(report.get("time", {}).get("clock", "")))
    title = html.escape(report["scenario"])
    summary = (
        f"{report['simulated_hours']:g} simulated hours, {report['requests']} requests, "
        f"seed {report['seed']}."
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gatekeeper simulation: {title}</title>
<style>{_CSS}</style>
</head><body>
<h1>Scenario {title}</h1>
<p>{html.escape(report.get("description", ""))}</p>
<p>{summary} {time_note}</p>
<h2>Reasoning tokens harvested per simulated hour</h2>
<table><tr><th>campaign</th><th>accounts</th><th>baseline</th><th>pack</th>
<th>pack / baseline</th><th>baseline by hour</th><th>pack by hour</th>
<th>also harvested (baseline → pack)</th>
<th>evidence (pack: requests carrying each)</th></tr>{"".join(rows)}</table>
<h2>Benign requests</h2>
<table><tr><th>group</th><th>requests</th><th>refused (baseline)</th><th>refused (pack)</th>
<th>refused by the pack</th><th>degraded by the pack</th>
<th>evidence (pack: requests carrying each)</th></tr>{"".join(benign)}</table>
</body></html>
"""
