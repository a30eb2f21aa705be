from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.errors import ConfigurationError
from gatekeeper.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "gatekeeper.toml"


def test_demo_toml_paths_resolve_against_the_file() -> None:
    settings = Settings.load(DEMO)
    assert settings.identity.subjects_file == DEMO.parent / "subjects.toml"
    assert settings.policy.path == (DEMO.parent / "../../policies").resolve()
    assert settings.network.trusted_proxies == ["127.0.0.1"]
    assert settings.quota.storage == "memory://"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_QUOTA__STORAGE", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("GATEKEEPER_NETWORK__TRUSTED_PROXIES", '["10.0.0.0/8"]')
    settings = Settings.load(DEMO)
    assert settings.quota.storage == "redis://127.0.0.1:6379/3"
    assert settings.network.trusted_proxies == ["10.0.0.0/8"]
    assert settings.identity.subjects_file == DEMO.parent / "subjects.toml"


def test_config_file_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_CONFIG", str(DEMO))
    assert Settings.load().audit.labels == {"app": "gatekeeper-demo"}


def test_keyword_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_SERVER__PORT", "9001")
    assert Settings.load(DEMO, server={"port": 9002}).server.port == 9002


@pytest.mark.parametrize(
    "content",
    ["[quota]\nstorage = 3\nbogus = 1\n", "[nonsense]\nx = 1\n", "[server]\nport = 70000\n"],
    ids=["unknown-key", "unknown-section", "out-of-range"],
)
def test_bad_settings_fail_with_a_configuration_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "gk.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        Settings.load(path)


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        Settings.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1"]),
        ("127.0.0.1,10.0.0.0/8", ["127.0.0.1", "10.0.0.0/8"]),
        (" 127.0.0.1 , 10.0.0.0/8 ,", ["127.0.0.1", "10.0.0.0/8"]),
        ('["127.0.0.1", "10.0.0.0/8"]', ["127.0.0.1", "10.0.0.0/8"]),
    ],
    ids=["one-address", "comma-separated", "spaces-and-trailing-comma", "json"],
)
def test_list_settings_accept_json_or_commas(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("GATEKEEPER_NETWORK__TRUSTED_PROXIES", value)
    monkeypatch.setenv("GATEKEEPER_REQUEST__UNPROTECTED_PATHS", "/healthz,/status")
    settings = Settings.load()
    assert settings.network.trusted_proxies == expected
    assert settings.request.unprotected_paths == ["/healthz", "/status"]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("GATEKEEPER_NETWORK__TRUSTED_PROXIES", '["127.0.0.1"', "trusted_proxies"),
        ("GATEKEEPER_AUDIT__LABELS", "app=x", "labels"),
        ("GATEKEEPER_SERVER__PORT", "eighty", "server.port"),
    ],
    ids=["broken-json-list", "not-json-mapping", "not-a-number"],
)
def test_a_bad_environment_variable_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=says):
        Settings.load()
