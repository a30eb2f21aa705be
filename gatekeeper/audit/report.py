"""The HTML report for reviewers: one self-contained file, readable offline.

Everything is inline (CSS, SVG charts, a few lines of script that only sort tables); nothing is
fetched from the network, so the file can be archived with the log it describes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from gatekeeper import __version__
from gatekeeper.audit.chains import ChainsReport
from gatekeeper.audit.charts import ALLOW, DENY, PALETTE, legend, stacked_bars, stacked_columns
from gatekeeper.audit.query import Stats
from gatekeeper.audit.verify import VerifyReport

_OUTCOMES = (("allow", ALLOW), ("deny", DENY))
_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
_MODES = ("full", "summary", "truncate", "redact", "drop")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;
background:#f5f6f8}
header{background:#1d232a;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b8c0cc}main{max-width:1100px;margin:0 auto;padding:18px 28px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:16px 0;padding:14px 18px}
h2{font-size:16px;margin:0 0 10px}.kpis{display:flex;flex-wrap:wrap;gap:12px}
.kpi{flex:1 1 140px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px}
.kpi b{display:block;font-size:22px}.ok{color:#2e7d32}.bad{color:#c62828}.warn{color:#ef6c00}
svg text{font-size:11px;fill:#39424e}svg .grid{stroke:#e6e9ed}svg .hit{fill:transparent}
svg .hit:hover{fill:rgba(0,0,0,.06)}.legend span{margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eceff2}th{cursor:pointer;background:#f0f2f5}td.n{text-align:right}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media(max-width:900px){.cols{display:block}}
footer{color:#6b7480;font-size:12px;padding:0 28px 24px;max-width:1100px;margin:0 auto}
"""

_SCRIPT = """
(function () {
  document.querySelectorAll("table.sortable th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = th.closest("table").tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.dataset.asc !== "1";
      th.dataset.asc = asc ? "1" : "0";
      rows.sort(function (a, b) {
        var x = a.cells[th.cellIndex].textContent, y = b.cells[th.cellIndex].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  document.body.setAttribute("data-report-ready", "1");
})();
"""


def render_report(
    stats: Stats,
    integrity: VerifyReport | ChainsReport | None,
    *,
    sources: Sequence[str],
    title: str,
) -> str:
    """The report as one HTML document."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    span = f"{_day(stats.first_ns)} → {_day(stats.last_ns)}" if stats.first_ns else "no decisions"
    body = [
        f"<header><h1>{escape(title)}</h1><p>{escape(span)} · {len(sources)} source(s) · "
        f"generated {generated} by gatekeeper {escape(__version__)}</p></header><main>",
        _kpis(stats, integrity),
        _section(
            "Decisions and refusals over time",
            legend([("allowed", ALLOW), ("refused", DENY)])
            + stacked_columns(_time_series(stats), _OUTCOMES, title="decisions over time"),
        ),
        _section(
            "Refusals by reason",
            stacked_bars(
                [(k, {"deny": v}) for k, v in stats.reasons.most_common(15)],
                _OUTCOMES,
                title="refusals by reason",
            ),
        ),
        '<div class="cols">',
        _section("Decisions by tier", _outcome_bars(stats.tiers, "decisions by tier")),
        _section("Decisions by country", _outcome_bars(stats.countries, "by country", 15)),
        "</div>",
        _section(
            "Decisions by jurisdiction tag",
            _outcome_bars(stats.jurisdictions, "by jurisdiction", 15, width=760),
        ),
        '<div class="cols">',
        _section(
            "Top subjects by refusals", _table(["subject", "refusals"], stats.refused_subjects)
        ),
        _section(
            "Top clusters by refusals", _table(["cluster", "refusals"], stats.refused_clusters)
        ),
        "</div>",
        _section("Reasoning exposure by tier (allowed requests)", _reasoning(stats)),
        _section("Policy revisions", _table(["revision", "decisions"], stats.revisions)),
        _section("Integrity", _integrity(integrity)),
        "</main><footer>Sources: " + ", ".join(escape(s) for s in sources) + "</footer>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _section(title: str, content: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{content}</section>"


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
    cells = [
        ("decisions", f"{stats.decisions}", ""),
        ("allowed", f"{stats.allowed}", ""),
        ("refused", f"{stats.denied}", rate),
        ("gaps", f"{stats.kinds.get('gap', 0)}", f"{stats.gap_dropped} events dropped"),
        ("restarts", f"{stats.kinds.get('restart', 0)}", ""),
        ("chain", verdict[0], verdict[1]),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi">{escape(label)}<b>{value}</b>{escape(note)}</div>'
            for label, value, note in cells
        )
        + "</div>"
    )


def _time_series(stats: Stats) -> list[tuple[str, Counter[str]]]:
    if not stats.minutes:
        return []
    first, last = min(stats.minutes), max(stats.minutes)
    span = (last - first + 1) * 60
    size = next((b for b in _BUCKETS if span / b <= 60), _BUCKETS[-1])
    buckets: dict[int, Counter[str]] = {}
    for minute, counts in stats.minutes.items():
        buckets.setdefault(minute * 60 // size * size, Counter()).update(counts)
    fmt = "%H:%M" if size < 86400 else "%m-%d"
    if size < 86400 and span > 86400:
        fmt = "%m-%d %H:%M"
    start = first * 60 // size * size
    return [
        (datetime.fromtimestamp(t, UTC).strftime(fmt), buckets.get(t, Counter()))
        for t in range(start, last * 60 + 1, size)
    ]


def _outcome_bars(
    groups: Mapping[str, Counter[str]], title: str, top: int = 12, width: int = 400
) -> str:
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1].values()))[:top]
    return legend([("allowed", ALLOW), ("refused", DENY)]) + stacked_bars(
        [(k, v) for k, v in ranked], _OUTCOMES, title=title, label_width=90, width=width
    )


def _table(headers: Sequence[str], counts: Counter[str], top: int = 10) -> str:
    if not counts:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows = "".join(
        f'<tr><td>{escape(k)}</td><td class="n">{v}</td></tr>' for k, v in counts.most_common(top)
    )
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _reasoning(stats: Stats) -> str:
    modes = [(m, PALETTE[i % len(PALETTE)]) for i, m in enumerate(_MODES)]
    chart = legend(modes) + stacked_bars(
        sorted(stats.reasoning_modes.items()),
        modes,
        title="reasoning modes by tier",
        label_width=120,
    )
    rows = []
    for tier, tokens in sorted(stats.reasoning_tokens.items()):
        seen = tokens.get("seen_tokens", 0)
        shown = tokens.get("exposed_tokens", 0)
        share = f"{100 * shown / seen:.1f}%" if seen else "-"
        rows.append(
            f'<tr><td>{escape(tier)}</td><td class="n">{seen}</td><td class="n">{shown}</td>'
            f'<td class="n">{tokens.get("removed_tokens", 0)}</td><td class="n">{share}</td></tr>'
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
