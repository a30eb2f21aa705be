"""Structured logs: JSON lines with fields, and no credential in any of them."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.observability import JsonFormatter, RedactingFormatter, logging_config, redact
from tests.observability.conftest import Factory

DEMO_KEYS = ("gk-demo-free", "gk-demo-pro", "gk-demo-enterprise", "gk-demo-unverified")


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gatekeeper.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_extra_fields() -> None:
    line = JsonFormatter().format(make_record("refused %s", "POST", decision_id="d-1", status=403))
    document = json.loads(line)
    assert document["message"] == "refused POST"
    assert (document["level"], document["logger"]) == ("WARNING", "gatekeeper.test")
    assert (document["decision_id"], document["status"]) == ("d-1", 403)
    assert document["time"].endswith("Z")


def test_json_lines_include_the_exception() -> None:
    try:
        raise ValueError("bad Bearer gk-demo-pro")
    except ValueError:
        record = make_record("failed")
        record.exc_info = sys.exc_info()
    document = json.loads(JsonFormatter().format(record))
    assert "ValueError" in document["exception"]
    assert "gk-demo-pro" not in document["exception"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer gk-demo-pro", "gk-demo-pro"),
        ("authorization=basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("x-api-key: gk-demo-free", "gk-demo-free"),
        ('{"api_key": "sk-abc123"}', "sk-abc123"),
        ("GET /v1/models?api_key=gk-demo-free&x=1", "gk-demo-free"),
        ("redis://:hunter2@127.0.0.1:6379/0", "hunter2"),
        ("rediss://user:hunter2@cache:6380", "hunter2"),
        ("password=hunter2", "hunter2"),
    ],
    ids=["bearer", "basic", "x-api-key", "json-key", "query", "url-password",
         "url-user-password", "password"],
)  # fmt: skip
def test_redaction_patterns(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_known_secrets_are_redacted_verbatim() -> None:
    assert redact("upstream said: sk-upstream-1 is wrong", ["sk-upstream-1"]) == (
        "upstream said: [redacted] is wrong"
    )


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=8, max_size=40))
def test_any_bearer_token_is_redacted(token: str) -> None:
    key = "gk-" + token
    for line in (f"Bearer {key}", f"x-api-key: {key}", f"?key=x&api_key={key}"):
        assert key not in redact(line)


def test_text_formatter_redacts_too() -> None:
    formatter = RedactingFormatter("%(message)s", secrets=["s3cret"])
    assert formatter.format(make_record("got Bearer gk-demo-pro and s3cret")) == (
        "got Bearer [redacted] and [redacted]"
    )


def test_logging_config_covers_gatekeeper_and_uvicorn() -> None:
    config = logging_config(json_logs=True, level="DEBUG", secrets=["x"])
    assert config["formatters"]["gatekeeper"]["()"] is JsonFormatter
    assert {"gatekeeper", "uvicorn", "uvicorn.error", "uvicorn.access"} <= set(config["loggers"])


async def test_gatekeeper_never_logs_an_api_key(
    protected: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """Not even before redaction: the raw log records hold no key, whatever the outcome."""
    caplog.set_level(logging.DEBUG)
    async with protected(observability={"access_log": True}) as p:
        for key in (*DEMO_KEYS, "gk-demo-free-typo"):
            await p.chat(key)
            await p.client.post("/v1/messages", headers={"x-api-key": key}, content=b"{not json")
            await p.client.get(
                f"/v1/models?api_key={key}", headers={"Authorization": f"Bearer {key}"}
            )
    assert any(r.name == "gatekeeper.access" for r in caplog.records)
    raw = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("gatekeeper")
    )
    for key in DEMO_KEYS:
        assert key not in raw
