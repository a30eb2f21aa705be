"""Secrets never reach the log: every demo key, sent every way, is absent from its bytes."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from gatekeeper.offline.demo.app import DEMO_KEYS
from tests.servers import ROOT, demo_server

CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "hello"}]}
HMAC_KEY = "reviewers-only"


def subjects_with_fingerprints(tmp_path: Path) -> Path:
    """The demo subjects, each with a payment fingerprint (masked by the policy pack's rules)."""
    text = (ROOT / "examples" / "demo" / "subjects.toml").read_text()
    for key in DEMO_KEYS:
        text = text.replace(
            f'key = "{key}"\n', f'key = "{key}"\npayment_fingerprint = "pf-{key}"\n'
        )
    path = tmp_path / "subjects.toml"
    path.write_text(text)
    return path


def test_no_key_or_fingerprint_is_written_in_clear(tmp_path: Path) -> None:
    env = {
        "GATEKEEPER_IDENTITY__SUBJECTS_FILE": str(subjects_with_fingerprints(tmp_path)),
        "GATEKEEPER_AUDIT__HMAC_KEY": HMAC_KEY,
    }
    keys = [*DEMO_KEYS, "gk-not-a-demo-key"]
    with demo_server(tmp_path, **env) as server, server.client() as http:
        for key in keys:
            for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
                for path in ("/v1/chat/completions", "/v1/responses", "/v1/models"):
                    body = {**CHAT, "input": "hi", "max_tokens": 32}
                    http.post(path, json=body, headers={**headers, "user-agent": "sdk/1.0"})
        events = server.events(count=len(keys) * 6)
        raw = server.log_path.read_bytes()
    assert len(events) >= len(keys) * 6
    for key in keys:
        assert key.encode() not in raw, key
        assert f"pf-{key}".encode() not in raw  # the fingerprint is hashed, not written
    digest = hmac.new(HMAC_KEY.encode(), b"pf-gk-demo-pro", hashlib.sha256).hexdigest()
    assert f"hmac-sha256:{digest}".encode() in raw  # …and a reviewer with the key can match it
    masked = [e for e in events if "/input/subject/payment_fingerprint" in e.get("masked", [])]
    assert masked
