"""``gatekeeper geoip build`` and ``gatekeeper geoip lookup``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli.geoip import geoip_cli

from .conftest import DEMO_SOURCE


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_group_is_named_geoip() -> None:
    assert geoip_cli.name == "geoip"
    assert sorted(geoip_cli.commands) == ["build", "lookup"]


def test_build_then_lookup(runner: CliRunner, tmp_path: Path) -> None:
    output = tmp_path / "geo.mmdb"

    built = runner.invoke(geoip_cli, ["build", str(DEMO_SOURCE), "-o", str(output)])
    looked = runner.invoke(geoip_cli, ["lookup", str(output), "198.51.100.7"])

    assert built.exit_code == 0, built.output
    assert built.output == f"wrote {output} (5 networks)\n"
    assert looked.exit_code == 0, looked.output
    lines = dict(line.split(None, 1) for line in looked.output.splitlines())
    assert lines == {
        "country": "KP",
        "registered_country": "KP",
        "asn": "64502",
        "as_org": "Example Star Joint Venture",
        "is_hosting": "false",
        "is_proxy": "false",
    }


def test_build_defaults_to_mmdb_next_to_source(runner: CliRunner, tmp_path: Path) -> None:
    source = Path(shutil.copy(DEMO_SOURCE, tmp_path / "demo-geo.yaml"))

    result = runner.invoke(geoip_cli, ["build", str(source)])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo-geo.mmdb").is_file()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        (
            "203.0.113.1",
            {
                "country": "US",
                "registered_country": "US",
                "asn": 64500,
                "as_org": "Example Cloud Hosting LLC",
                "is_hosting": True,
                "is_proxy": False,
            },
        ),
        (
            "100.64.0.1",
            {
                "country": None,
                "registered_country": None,
                "asn": None,
                "as_org": None,
                "is_hosting": False,
                "is_proxy": False,
            },
        ),
    ],
    ids=["hosting range", "absent range"],
)
def test_lookup_json(
    runner: CliRunner, demo_db: Path, ip: str, expected: dict[str, object]
) -> None:
    result = runner.invoke(geoip_cli, ["lookup", "--json", str(demo_db), ip])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


def test_absent_fields_print_as_dash(runner: CliRunner, demo_db: Path) -> None:
    result = runner.invoke(geoip_cli, ["lookup", str(demo_db), "100.64.0.1"])

    assert "country             -" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["lookup", "{db}", "not-an-ip"], 2, "not an IP address"),
        (["lookup", "{tmp}/absent.mmdb", "192.0.2.1"], 1, "not found"),
        (["build", "{tmp}/absent.yaml", "-o", "{tmp}/x.mmdb"], 1, "cannot read GeoIP source"),
    ],
    ids=["bad address", "missing database", "missing source"],
)
def test_errors_are_reported_not_raised(
    runner: CliRunner, demo_db: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    argv = [a.format(db=demo_db, tmp=tmp_path) for a in args]

    result = runner.invoke(geoip_cli, argv)

    assert result.exit_code == code
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
