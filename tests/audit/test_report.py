"""The HTML report a reviewer works in: a decision table filtered from the URL, drill-downs,
exports, the anti-extraction section, honest counts; opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.offline.audit.query import collect_stats
from gatekeeper.offline.audit.report import ReportRows, render_report
from tests.audit.conftest import BASE_NS, LogFactory, decision_event
from tests.audit.test_filters import expected, graded_event

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["audit", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
async def report(make_log: LogFactory, tmp_path: Path) -> Path:
    # 70 decisions over 70 minutes; subject-3 graded watch, then suspect
    log = await make_log(70, checkpoint_every=20, event=graded_event)
    out = tmp_path / "report.html"
    code, printed, _ = run("report", log, "-o", out)
    assert code == 0, printed
    return out


def embedded(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="gk-data">(.*?)</script>', html)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_the_report_embeds_every_decision_it_covers(report: Path) -> None:
    html = report.read_text()
    data = embedded(html)
    assert data["selected"] == len(data["rows"]) == 70
    row = dict(zip(data["columns"], data["rows"][0], strict=True))
    assert row["id"] == "d-00000" and row["chain"] == "decisions.jsonl"
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", html)  # nothing fetched
    assert "@media print" in html  # a print stylesheet
    assert 'id="anti-extraction"' in html and 'data-filter="subject=subject-3"' in html


def test_the_table_keeps_the_newest_rows_of_a_big_selection(report: Path, tmp_path: Path) -> None:
    log = next(report.parent.glob("log/decisions.jsonl"))
    out = tmp_path / "capped.html"
    code, printed, _ = run("report", "--no-verify", "--max-rows", "10", log, "-o", out)
    html = out.read_text()
    data = embedded(html)
    assert code == 0 and "its table holds 10" in printed
    assert data["selected"] == 70 and [r[1] for r in data["rows"]][-1] == "d-00069"
    assert len(data["rows"]) == 10
    assert "holds the newest 10 of the 70 decisions selected (--max-rows 10)" in html
    assert "make a report of a narrower selection" in html


def test_the_data_cannot_end_its_script_element() -> None:
    event = decision_event(1, subject="</script><script>alert(1)</script>")
    rows = ReportRows(10)
    rows.add("decisions.jsonl", event)
    html = render_report(collect_stats([event]), None, sources=["x"], title="t", rows=rows)
    assert "alert(1)" in html and "</script><script>alert" not in html
    assert embedded(html)["rows"][0][4] == "</script><script>alert(1)</script>"


def refusal(i: int, *reasons: str, quota: bool = False) -> dict[str, Any]:
    event = decision_event(i, allow=not reasons, country="US")
    event["result"]["reasons"] = [{"code": r, "message": r} for r in reasons]
    if quota:
        event["gatekeeper"]["enforcement"]["quotas"] = [{"name": "requests", "refused": True}]
        event["gatekeeper"]["enforcement"]["status"] = 429
    return event


def test_reason_counts_say_they_are_per_refusal() -> None:
    events = [
        refusal(1, "kyc_insufficient", "jurisdiction_restricted"),
        refusal(2, "kyc_insufficient"),
    ]
    stats = collect_stats(events)
    assert dict(stats.reasons) == {"kyc_insufficient": 2, "jurisdiction_restricted": 1}
    assert (stats.denied, stats.reason_mentions) == (2, 3)
    html = render_report(stats, None, sources=["x"], title="t")
    assert "Counted per refusal" in html and "2 refusals carry 3 reasons" in html
    assert "add up to 1 more than the refusals" in html


def test_a_dominant_reason_is_drawn_apart() -> None:
    events = [refusal(i, quota=True) for i in range(300)]
    events += [refusal(300 + i, "kyc_insufficient") for i in range(12)]
    events += [refusal(400 + i, "jurisdiction_restricted") for i in range(3)]
    html = render_report(collect_stats(events), None, sources=["x"], title="t")
    section = html.split('id="reasons"')[1].split("</section>")[0]
    assert "Above: quota_exceeded, at least 10 times the next" in section
    first, rest = section.split('class="note split"')
    assert ">300<" in first and "kyc_insufficient" not in first
    # the others are scaled to their own longest bar: kyc_insufficient is full width
    widths = [float(w) for w in re.findall(r'<rect x="170.0" y="\d+" width="([\d.]+)"', rest)]
    assert widths[0] == 760 - 170 - 50 and widths[1] == pytest.approx(widths[0] * 3 / 12)


async def test_sources_count_the_files_read(make_log: LogFactory, tmp_path: Path) -> None:
    log = await make_log(120, rotate_bytes=20_000, checkpoint_every=1000)
    files = sorted(log.parent.glob("decisions*.jsonl"))
    files = [f for f in files if "checkpoints" not in f.name]
    assert len(files) >= 3  # rotated files and the active one
    out = tmp_path / "r.html"
    code, printed, _ = run("report", "--no-verify", log, "-o", out)
    assert code == 0 and f"from {len(files)} file(s) in 1 chain(s)" in printed
    assert f"{len(files)} file(s) read in 1 chain(s)" in out.read_text()


# -- in a browser ---------------------------------------------------------------------------


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no console output at all: no errors, no warnings
    return result


class Rows(HTMLParser):
    """The decision table's rows in a dumped DOM: (data-subject, data-id) per row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.drill = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-id" in found:
            self.rows.append(found)
        if found.get("id") == "drill-panel":
            self.drill = True


def dom(tmp_path: Path, report: Path, fragment: str) -> tuple[str, Rows]:
    html = chromium(tmp_path, "--dump-dom", report.as_uri() + fragment).stdout
    assert 'data-report-ready="1"' in html  # the script ran to its end
    parsed = Rows()
    parsed.feed(html)
    return html, parsed


@pytest.fixture
def screenshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[list[Path]]:
    taken: list[Path] = []
    yield taken
    with capsys.disabled():
        for path in taken:
            print(f"\nscreenshot: {path}")


@needs_chromium
@pytest.mark.parametrize(
    ("fragment", "count", "check"),
    [
        pytest.param("", 70, lambda r: True, id="everything"),
        pytest.param("#subject=subject-1", 18, lambda r: r["data-subject"] == "subject-1",
                     id="subject"),
        pytest.param("#reason=jurisdiction_restricted&decision=deny", 14,
                     lambda r: r["class"] == "deny", id="reason-and-refused"),
        pytest.param("#level=suspect", 7, lambda r: r["data-subject"] == "subject-3", id="grade"),
        pytest.param("#since=2026-05-28T21:00:00Z&until=2026-05-28T21:09:59Z", 10,
                     lambda r: True, id="time-window"),
        pytest.param("#id=d-00042", 1, lambda r: r["data-id"] == "d-00042", id="decision-id"),
    ],
)  # fmt: skip
def test_the_page_filters_from_its_address(
    report: Path, tmp_path: Path, fragment: str, count: int, check: Any
) -> None:
    html, parsed = dom(tmp_path, report, fragment)
    assert len(parsed.rows) == count and all(check(r) for r in parsed.rows)
    assert f'data-rows-matching="{count}"' in html


@needs_chromium
def test_a_subject_has_its_own_drill_down(report: Path, tmp_path: Path) -> None:
    html, parsed = dom(tmp_path, report, "#subject=subject-3")
    assert (
        parsed.drill and "Subject subject-3: its decisions, evidence and withheld reasoning" in html
    )
    assert "watch 10, suspect 7" in html and "cot_high 17, templated 17" in html
    assert "gatekeeper audit query --subject subject-3 " in html  # the same view, whole events
    _, parsed = dom(tmp_path, report, "#tier=pro")
    assert not parsed.drill  # only a subject, cluster or org has one


@needs_chromium
async def test_a_report_of_one_subject_opens_on_its_drill_down(
    make_log: LogFactory, tmp_path: Path
) -> None:
    log = await make_log(70, event=graded_event)
    out = tmp_path / "subject-3.html"
    assert run("report", "--subject", "subject-3", "--since", "2026-05-28", log, "-o", out)[0] == 0
    html, parsed = dom(tmp_path, out, "#decision=deny")
    assert parsed.drill and len(parsed.rows) == expected(subject="subject-3", decision="deny")
    cli = re.search(r'<code id="cli">(.*?)</code>', html)
    assert cli is not None and cli.group(1).startswith(
        "gatekeeper audit query --since 2026-05-28T00:00:00Z --subject subject-3 --decision deny "
    )


@needs_chromium
def test_exports_hold_the_filtered_view(report: Path, tmp_path: Path) -> None:
    # The report itself, with a few lines added that show what its export buttons would save.
    probe = tmp_path / "probe.html"
    probe.write_text(
        report.read_text().replace(
            "</body>",
            "<script>document.body.setAttribute('data-csv', gatekeeperReport.csv());"
            "document.body.setAttribute('data-jsonl', gatekeeperReport.jsonl());</script></body>",
        )
    )
    html, _ = dom(tmp_path, probe, "#cluster=cluster-0&decision=deny")
    count = expected(cluster="cluster-0", decision="deny")
    csv = _attribute(html, "data-csv").splitlines()
    assert csv[0].startswith("time,id,chain,seq,subject,org,tier,cluster,")
    assert len(csv) == 1 + count and all(
        ",cluster-0," in line and ",deny," in line for line in csv[1:]
    )
    lines = [json.loads(line) for line in _attribute(html, "data-jsonl").splitlines()]
    assert len(lines) == count and {(e["cluster"], e["decision"]) for e in lines} == {
        ("cluster-0", "deny")
    }


def _attribute(html: str, name: str) -> str:
    import html as markup

    match = re.search(f'{name}="([^"]*)"', html)
    assert match is not None
    return markup.unescape(match.group(1))


@needs_chromium
def test_screenshots_of_the_report(report: Path, tmp_path: Path, screenshots: list[Path]) -> None:
    for name, fragment, height in (
        ("report.png", "", 5200),
        ("report-subject-3.png", "#subject=subject-3", 2400),
    ):
        path = tmp_path / name
        chromium(
            tmp_path,
            f"--window-size=1280,{height}",
            f"--screenshot={path}",
            report.as_uri() + fragment,
        )
        assert path.stat().st_size > 50_000  # something was drawn
        screenshots.append(path)
    # printing: the controls go, the tables and charts stay
    pdf = tmp_path / "report.pdf"
    chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", report.as_uri())
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000
    screenshots.append(pdf)


def test_time_columns_link_to_their_window() -> None:
    events = [decision_event(i, unix_ns=BASE_NS + i * 60_000_000_000) for i in range(30)]
    html = render_report(collect_stats(events), None, sources=["x"], title="t")
    links = re.findall(r'class="hit" data-filter="since=([^&]+)&amp;until=([^"]+)"', html)
    assert len(links) == 30  # one column a minute
    assert links[0] == ("2026-05-28T20%3A26%3A00Z", "2026-05-28T20%3A26%3A59.999999999Z")
