"""What `make run` prints: every demo key, three curl lines, and no store password."""

from __future__ import annotations

from pathlib import Path

from gatekeeper.offline.demo.app import DEMO_KEYS, demo_banner
from gatekeeper.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "gatekeeper.toml"


def test_banner_lists_keys_and_curl_lines() -> None:
    banner = demo_banner("127.0.0.1", 8000, Settings.load(DEMO))
    assert all(key in banner for key in DEMO_KEYS)
    assert banner.count("curl ") == 3
    assert "http://127.0.0.1:8000/v1/chat/completions" in banner


def test_banner_hides_the_quota_store_password() -> None:
    settings = Settings.load(DEMO, quota={"storage": "redis://:hunter2@127.0.0.1:6379/0"})
    banner = demo_banner("127.0.0.1", 8000, settings)
    assert "hunter2" not in banner
    assert "redis://:***@127.0.0.1:6379/0" in banner


def test_banner_names_the_event_loop() -> None:
    banner = demo_banner("127.0.0.1", 8000, Settings.load(DEMO), "asyncio")
    assert "  event loop:   asyncio" in banner
