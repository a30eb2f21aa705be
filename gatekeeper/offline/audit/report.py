"""The HTML report for reviewers: one self-contained file, readable offline.

Everything is inline (CSS, SVG charts, the script, the decisions as JSON); nothing is fetched
from the network, so the file can be archived with the log it describes. The charts and counts
are drawn here from every decision selected; the decision table, the subject and cluster
drill-downs and the exports are drawn in the page (``report.js``) from the embedded rows, the
newest ``--max-rows`` decisions, filtered by the page's URL fragment (``#subject=s1&reason=…``,
the same filters as ``audit query``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from importlib.resources import files
from typing import Any
from urllib.parse import quote

import orjson

from gatekeeper._version import __version__
from gatekeeper.offline.audit.activity import LEVELS, Activity, rank
from gatekeeper.offline.audit.chains import ChainsReport
from gatekeeper.offline.audit.charts import (
    ALLOW,
    DENY,
    PALETTE,
    legend,
    stacked_bars,
    stacked_columns,
)
from gatekeeper.offline.audit.query import Stats, decision_facts, rfc3339_or_none
from gatekeeper.offline.audit.verify import VerifyReport

_OUTCOMES = (("allow", ALLOW), ("deny", DENY))
_LEVEL_COLORS = (("watch", "#f9a825"), ("suspect", "#ef6c00"), ("strong", "#b71c1c"))
_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
_MODES = ("full", "summary", "truncate", "redact", "drop")
#: A bar this many times the next one is drawn apart, so that the others stay readable.
_DOMINANT = 10

#: The columns of the embedded rows, of the table and of the exports.
COLUMNS = (
    "time", "id", "chain", "seq", "subject", "org", "tier", "cluster", "country", "tags",
    "decision", "status", "reasons", "path", "model", "reasoning_mode", "reasoning_seen",
    "reasoning_exposed", "reasoning_removed", "level", "evidence", "flag_for_review",
    "step_up_kyc", "cot_elicitation", "cluster_size",
)  # fmt: skip


class ReportRows:
    """The newest ``limit`` decisions selected, as rows of ``COLUMNS``; ``seen`` counts all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.rows: deque[list[Any]] = deque(maxlen=limit or None)
        self.seen = 0

    def add(self, chain: str, entry: dict[str, Any]) -> None:
        self.seen += 1
        if not self.limit:
            return
        f = decision_facts(entry)
        reasoning = f["reasoning"]
        row = [
            f["timestamp"], f["id"], chain, f["seq"], f["subject"], f["org"], f["tier"],
            f["cluster"], f["country"], f["jurisdictions"], f["decision"], f["status"],
            f["reasons"], f["path"], f["model"],
            reasoning.get("applied_mode") or reasoning.get("mode"),
            reasoning.get("seen_tokens"), reasoning.get("exposed_tokens"),
            reasoning.get("removed_tokens"), f["level"], f["evidence"], f["flag_for_review"],
            f["step_up_kyc"], f["cot_elicitation"], f["cluster_size"],
        ]  # fmt: skip
        self.rows.append(row)


def render_report(
    stats: Stats,
    integrity: VerifyReport | ChainsReport | None,
    *,
    sources: Sequence[str],
    title: str,
    chains: Sequence[str] = (),
    rows: ReportRows | None = None,
    selection: Mapping[str, str] | None = None,
    paths: Sequence[str] = (),
) -> str:
    """The report as one HTML document; ``sources`` are the log files read, ``selection`` the
    filters that chose its decisions (``Filters.as_fragment``) from the log at ``paths``: the
    page adds its own to them, and names the ``audit query`` that selects the same."""
    rows = rows or ReportRows(0)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    span = f"{_day(stats.first_ns)} → {_day(stats.last_ns)}" if stats.first_ns else "no decisions"
    n_chains = len(chains) or 1
    read = f"{len(sources)} file(s) read in {n_chains} chain(s)"
    if selection:
        read += " · decisions selected by " + ", ".join(f"{k}={v}" for k, v in selection.items())
    data = {
        "columns": COLUMNS,
        "rows": list(rows.rows),
        "selected": rows.seen,
        "limit": rows.limit,
        "selection": dict(selection or {}),
        "paths": list(paths),
        "generated": generated,
    }
    body = [
        f"<header><h1>{escape(title)}</h1><p>{escape(span)} · {escape(read)} · generated "
        f"{generated} by gatekeeper {escape(__version__)}</p></header><main>",
        _kpis(stats, integrity),
        _section(
            "Decisions and refusals over time",
            legend([("allowed", ALLOW), ("refused", DENY)])
            + _over_time(stats.minutes, _OUTCOMES, "decisions over time"),
            "time",
        ),
        _section("Refusals by reason", _reasons(stats), "reasons"),
        '<div class="cols">',
        _section("Decisions by tier", _outcome_bars(stats.tiers, "tier", "decisions by tier")),
        _section(
            "Decisions by country", _outcome_bars(stats.countries, "country", "by country", 15)
        ),
        "</div>",
        _section(
            "Decisions by jurisdiction tag",
            _outcome_bars(stats.jurisdictions, "tag", "by jurisdiction", 15, width=760)
            + (
                ""
                if stats.jurisdictions
                else "<p class=note>No decision carries a jurisdiction tag: tags come from the "
                "setting <code>network.jurisdiction_tags</code> (tag → country codes).</p>"
            ),
            "jurisdiction",
        ),
        _decisions_section(rows),
        _extraction(stats),
        _activity_section(
            "Subjects", "subject", stats.subjects, "the 50 with most decisions", "subjects"
        ),
        _activity_section(
            "Clusters", "cluster", stats.clusters, "the 50 with most decisions", "clusters"
        ),
        _section("Reasoning exposure by tier (allowed requests)", _reasoning(stats), "reasoning"),
        _section("Policy revisions", _table(["revision", "decisions"], stats.revisions)),
        _section("Integrity", _integrity(integrity), "integrity"),
        "</main><footer>Files read: " + ", ".join(escape(s) for s in sources) + "</footer>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_asset('report.css')}</style></head><body>"
        + "".join(body)
        + '<script type="application/json" id="gk-data">'
        + _json_for_html(data)
        + f"</script><script>{_asset('report.js')}</script></body></html>\n"
    )


def _asset(name: str) -> str:
    return files("gatekeeper.offline.audit").joinpath(name).read_text(encoding="utf-8")


def _json_for_html(value: Any) -> str:
    # "<" escaped: no "</script>" or "<!--" inside the data can end or bend the script element.
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def _section(title: str, content: str, anchor: str | None = None) -> str:
    ident = f' id="{anchor}"' if anchor else ""
    return f"<section{ident}><h2>{escape(title)}</h2>{content}</section>"


def _link(key: str, value: str) -> str:
    return f"{key}={quote(value, safe='')}"


def _kpis(stats: Stats, integrity: VerifyReport | ChainsReport | None) -> str:
    rate = f"{100 * stats.denied / stats.decisions:.1f}%" if stats.decisions else "-"
    if integrity is None:
        verdict = ('<span class="warn">not verified</span>', "")
    elif integrity.problem is not None:
        where = integrity.problem.file if isinstance(integrity, ChainsReport) else None
        verdict = (
            '<span class="bad">FAILED</span>',
            f"seq {integrity.problem.seq}" + (f" in {where}" if where else ""),
        )
    elif integrity.torn_tail is not None:
        verdict = ('<span class="warn">torn tail</span>', "crash mid-write")
    else:
        verdict = ('<span class="ok">intact</span>', f"{integrity.checkpoints} checkpoints")
    extraction = stats.extraction
    cells = [
        ("decisions", f"{stats.decisions:,}", "", ""),
        ("allowed", f"{stats.allowed:,}", "", "decision=allow"),
        ("refused", f"{stats.denied:,}", rate, "decision=deny"),
        ("graded (anti-extraction)", f"{extraction.graded:,}", "", "level=any"),
        ("gaps", f"{stats.kinds.get('gap', 0)}", f"{stats.gap_dropped} events dropped", ""),
        ("restarts", f"{stats.kinds.get('restart', 0)}", "", ""),
        ("chain", verdict[0], verdict[1], ""),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"{_attr(link)}>{escape(label)}<b>{value}</b>{escape(note)}</div>'
            for label, value, note, link in cells
        )
        + "</div>"
    )


def _attr(link: str) -> str:
    return f' data-filter="{escape(link)}" tabindex="0"' if link else ""


def _buckets(minutes: Mapping[int, Counter[str]]) -> tuple[int, int, int]:
    """First and last minute, and a bucket size (seconds) giving at most 60 columns."""
    first, last = min(minutes), max(minutes)
    span = (last - first + 1) * 60
    return first, last, next((b for b in _BUCKETS if span / b <= 60), _BUCKETS[-1])


def _over_time(
    minutes: Mapping[int, Counter[str]], keys: Sequence[tuple[str, str]], title: str
) -> str:
    if not minutes:
        return stacked_columns([], keys, title=title)
    first, last, size = _buckets(minutes)
    buckets: dict[int, Counter[str]] = {}
    for minute, counts in minutes.items():
        buckets.setdefault(minute * 60 // size * size, Counter()).update(counts)
    span = (last - first + 1) * 60
    fmt = "%H:%M" if size < 86400 else "%m-%d"
    if size < 86400 and span > 86400:
        fmt = "%m-%d %H:%M"
    series, links = [], []
    for t in range(first * 60 // size * size, last * 60 + 1, size):
        series.append((datetime.fromtimestamp(t, UTC).strftime(fmt), buckets.get(t, Counter())))
        since = rfc3339_or_none(t * 1_000_000_000) or ""
        until = rfc3339_or_none((t + size) * 1_000_000_000 - 1) or ""
        links.append(f"{_link('since', since)}&{_link('until', until)}")
    return stacked_columns(series, keys, title=title, links=links) + (
        '<p class="note">Click a column to list its decisions.</p>'
    )


def _split_bars(
    ranked: Sequence[tuple[str, Mapping[str, int]]],
    keys: Sequence[tuple[str, str]],
    key: str,
    title: str,
    **options: Any,
) -> str:
    """Bars, the dominant ones (``_DOMINANT`` times the next) on a scale apart, so that they do
    not flatten the others; said in a note."""
    totals = [sum(counts.values()) for _, counts in ranked]
    cut = 0
    while (
        cut + 1 < len(totals)
        and totals[cut] >= 100
        and totals[cut] >= _DOMINANT * max(1, totals[cut + 1])
    ):
        cut += 1
    if cut == 0 or cut >= 3:
        return stacked_bars(
            ranked, keys, title=title, links=[_link(key, k) for k, _ in ranked], **options
        )
    top, rest = ranked[:cut], ranked[cut:]
    names = ", ".join(k for k, _ in top)
    note = (
        f'<p class="note split">Above: {escape(names)}, at least {_DOMINANT} times the next; '
        "below, the others on a scale of their own.</p>"
    )
    first = stacked_bars(top, keys, title=title, links=[_link(key, k) for k, _ in top], **options)
    links = [_link(key, k) for k, _ in rest]
    others = stacked_bars(rest, keys, title=f"{title} (the rest)", links=links, **options)
    return first + note + others


def _reasons(stats: Stats) -> str:
    ranked = [(k, {"deny": v}) for k, v in stats.reasons.most_common(15)]
    several = stats.reason_mentions - stats.denied
    note = (
        f"Counted per refusal: each bar is the number of refused decisions carrying that reason. "
        f"{stats.denied:,} refusals carry {stats.reason_mentions:,} reasons"
        + (
            f" (some carry several, so the bars add up to {several:,} more than the refusals)."
            if several > 0
            else " (one each)."
        )
        + " Click a bar to list them."
    )
    if len(stats.reasons) > 15:
        note += f" The 15 most frequent of {len(stats.reasons)} reasons are shown."
    return f'<p class="note">{escape(note)}</p>' + _split_bars(
        ranked, _OUTCOMES, "reason", "refusals by reason"
    )


def _outcome_bars(
    groups: Mapping[str, Counter[str]], key: str, title: str, top: int = 12, width: int = 400
) -> str:
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1].values()))[:top]
    return legend([("allowed", ALLOW), ("refused", DENY)]) + _split_bars(
        ranked, _OUTCOMES, key, title, label_width=90, width=width
    )


def _decisions_section(rows: ReportRows) -> str:
    shown = len(rows.rows)
    if rows.seen > shown:
        cap = (
            f"This report holds the newest {shown:,} of the {rows.seen:,} decisions selected "
            f"(--max-rows {rows.limit:,}); the charts and counts cover all of them. For the "
            "others, make a report of a narrower selection (--since, --until, --subject, "
            "--reason…) or use the query command shown below."
        )
    else:
        cap = f"All {shown:,} decisions selected are here; the filters apply to them."
    return (
        '<section id="decisions"><h2>Decisions</h2>'
        f'<p class="note">{escape(cap)} Filters live in the address (#subject=…&amp;reason=…): '
        "a filtered view can be bookmarked or sent. Click a column heading to sort.</p>"
        '<form id="filters" class="controls" autocomplete="off"></form>'
        '<p id="matching" class="note"></p>'
        '<p class="controls"><button type="button" id="export-csv">Export CSV</button> '
        '<button type="button" id="export-jsonl">Export JSON lines</button> '
        '<button type="button" id="clear">Clear filters</button></p>'
        '<p class="note">Same selection, whole events, from the command line: '
        '<code id="cli"></code></p>'
        '<div id="drill"></div>'
        '<div class="scroll"><table id="table" class="decisions"><thead></thead>'
        "<tbody></tbody></table></div>"
        '<p class="controls"><button type="button" id="more">Show more</button></p></section>'
    )


def _extraction(stats: Stats) -> str:
    total = stats.extraction
    if not (total.of_interest or stats.levels):
        return _section(
            "Anti-extraction",
            "<p>The anti-extraction policy graded no decision selected (no "
            "<code>distillation:&lt;level&gt;</code> note), flagged none for review and asked "
            "for no KYC step-up.</p>",
            "anti-extraction",
        )
    removed_share = (
        f"{100 * total.reasoning_removed / total.reasoning_seen:.0f}%"
        if total.reasoning_seen
        else "-"
    )
    kpis = [
        ("graded decisions", f"{total.graded:,}", "level=any"),
        ("flagged for review", f"{total.flagged:,}", ""),
        ("KYC step-ups asked", f"{total.step_ups:,}", ""),
        ("refused by anti-extraction", f"{total.extraction_refusals:,}", ""),
        ("subjects acted on", f"{len(rank(stats.subjects)):,}", ""),
        ("clusters acted on", f"{len(rank(stats.clusters)):,}", ""),
    ]
    evidence = [(k, {"graded": v}) for k, v in total.evidence.most_common(20)]
    levels = [(lvl, {lvl: total.levels.get(lvl, 0)}) for lvl in LEVELS if total.levels.get(lvl)]
    content = (
        '<p class="note">What the anti-extraction policy did: the grade and evidence it noted on '
        "each decision (obligations.notes <code>distillation:&lt;level&gt;</code> and "
        "<code>evidence:…</code>), the reviews and KYC step-ups it asked for, its refusals, and "
        f"the reasoning withheld: of {total.reasoning_seen:,} reasoning tokens the model produced "
        f"for the decisions selected, {total.reasoning_removed:,} ({removed_share}) were removed "
        "before the client saw them. Click a subject, a cluster, a grade or a piece of evidence "
        "to list its decisions and its history.</p>"
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"{_attr(link)}>{escape(label)}<b>{value}</b></div>'
            for label, value, link in kpis
        )
        + "</div><h3>Graded decisions over time</h3>"
        + legend(list(_LEVEL_COLORS))
        + _over_time(stats.levels, _LEVEL_COLORS, "graded decisions over time")
        + '<div class="cols"><div><h3>Grades</h3>'
        + stacked_bars(
            levels,
            _LEVEL_COLORS,
            title="graded decisions by level",
            label_width=90,
            width=400,
            links=[_link("level", k) for k, _ in levels],
        )
        + "</div><div><h3>Evidence (graded decisions carrying it)</h3>"
        + stacked_bars(
            evidence,
            (("graded", PALETTE[0]),),
            title="evidence",
            label_width=140,
            width=400,
            links=[_link("evidence", k) for k, _ in evidence],
        )
        + "</div></div><h3>Flagged subjects</h3>"
        + _flagged_table("subject", rank(stats.subjects))
        + "<h3>Flagged clusters</h3>"
        + _flagged_table("cluster", rank(stats.clusters))
    )
    return _section("Anti-extraction", content, "anti-extraction")


def _flagged_table(key: str, ranked: list[tuple[str, Activity]], top: int = 50) -> str:
    if not ranked:
        return "<p>none</p>"
    extra = "cluster" if key == "subject" else "subjects · size · linked by"
    head = (
        f"<th>{key}</th><th>{extra}</th><th>highest grade</th><th>graded</th>"
        "<th>flagged for review</th><th>step-ups</th><th>refused</th><th>reasoning removed</th>"
        "<th>evidence</th><th>last seen</th>"
    )
    rows = []
    for name, a in ranked[:top]:
        if key == "subject":
            other = ", ".join(k for k, _ in a.names["cluster"].most_common(3))
        else:
            other = f"{len(a.names['subject'])} · {a.max_size} · " + ", ".join(
                sorted(a.names["linked_by"])
            )
        evidence = ", ".join(f"{k} {v}" for k, v in a.evidence.most_common(4))
        rows.append(
            f'<tr data-filter="{escape(_link(key, name))}" tabindex="0">'
            f"<td>{escape(name)}</td><td>{escape(other)}</td>"
            f'<td class="lvl-{escape(a.highest_level or "none")}">'
            f"{escape(a.highest_level or '-')}</td>"
            f'<td class="n">{a.graded:,}</td><td class="n">{a.flagged:,}</td>'
            f'<td class="n">{a.step_ups:,}</td><td class="n">{a.refused:,}</td>'
            f'<td class="n">{a.reasoning_removed:,}</td><td>{escape(evidence)}</td>'
            f"<td>{escape(_day(a.last_ns))}</td></tr>"
        )
    more = f"<p class=note>The first {top} of {len(ranked)}.</p>" if len(ranked) > top else ""
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
        + more
    )


def _activity_section(
    title: str, key: str, activities: Mapping[str, Activity], which: str, anchor: str
) -> str:
    ranked = sorted(activities.items(), key=lambda kv: (-kv[1].decisions, kv[0]))[:50]
    if not ranked:
        return _section(title, "<p>none</p>", anchor)
    extra = "org · tier" if key == "subject" else "subjects · size"
    rows = []
    for name, a in ranked:
        if key == "subject":
            other = " · ".join(
                ", ".join(k for k, _ in a.names[n].most_common(2)) for n in ("org", "tier")
            )
        else:
            other = f"{len(a.names['subject'])} · {a.max_size or '-'}"
        rows.append(
            f'<tr data-filter="{escape(_link(key, name))}" tabindex="0">'
            f"<td>{escape(name)}</td><td>{escape(other)}</td>"
            f'<td class="n">{a.decisions:,}</td><td class="n">{a.refused:,}</td>'
            f'<td class="n">{a.graded:,}</td><td>{escape(a.highest_level or "-")}</td>'
            f'<td class="n">{a.reasoning_seen:,}</td><td class="n">{a.reasoning_removed:,}</td>'
            f"<td>{escape(_day(a.first_ns))}</td><td>{escape(_day(a.last_ns))}</td></tr>"
        )
    table = (
        f'<table class="sortable"><thead><tr><th>{key}</th><th>{extra}</th><th>decisions</th>'
        "<th>refused</th><th>graded</th><th>highest grade</th><th>reasoning seen</th>"
        "<th>reasoning removed</th><th>first seen</th><th>last seen</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    note = (
        f'<p class="note">{escape(which.capitalize())} of {len(activities):,}. Click a row for '
        f"its decisions, evidence and withheld reasoning over time.</p>"
    )
    return _section(title, note + table, anchor)


def _table(headers: Sequence[str], counts: Counter[str], top: int = 10) -> str:
    if not counts:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows = "".join(
        f'<tr><td>{escape(k)}</td><td class="n">{v:,}</td></tr>' for k, v in counts.most_common(top)
    )
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _reasoning(stats: Stats) -> str:
    modes = [(m, PALETTE[i % len(PALETTE)]) for i, m in enumerate(_MODES)]
    chart = legend(modes) + stacked_bars(
        sorted(stats.reasoning_modes.items()),
        modes,
        title="reasoning modes by tier",
        label_width=120,
        links=[_link("tier", k) for k in sorted(stats.reasoning_modes)],
    )
    rows = []
    for tier, tokens in sorted(stats.reasoning_tokens.items()):
        seen = tokens.get("seen_tokens", 0)
        shown = tokens.get("exposed_tokens", 0)
        share = f"{100 * shown / seen:.1f}%" if seen else "-"
        rows.append(
            f'<tr><td>{escape(tier)}</td><td class="n">{seen:,}</td><td class="n">{shown:,}</td>'
            f'<td class="n">{tokens.get("removed_tokens", 0):,}</td><td class="n">{share}</td>'
            "</tr>"
        )
    table = (
        '<table class="sortable"><thead><tr><th>tier</th><th>reasoning tokens seen</th>'
        "<th>exposed</th><th>removed</th><th>exposed share</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="5">none</td></tr>')
        + "</tbody></table>"
    )
    return chart + table


def _integrity(report: VerifyReport | ChainsReport | None) -> str:
    if report is None:
        return "<p>The chain was not verified for this report.</p>"
    lines = "".join(f"<li>{escape(line)}</li>" for line in report.summary().splitlines())
    return f"<ul>{lines}</ul>"


def _day(ns: int | None) -> str:
    if ns is None:
        return "?"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
