"""The demo app: demo-reasoner behind ``GatekeeperMiddleware``, configured by one TOML file."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.applications import Starlette

from gatekeeper.middleware import GatekeeperMiddleware
from gatekeeper.offline.demo.model_server import create_model_app
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings

#: The demo's API keys, as listed in examples/demo/subjects.toml (tier, KYC level).
DEMO_KEYS: dict[str, tuple[str, str]] = {
    "gk-demo-free": ("free", "email"),
    "gk-demo-pro": ("pro", "government_id"),
    "gk-demo-enterprise": ("enterprise", "business"),
    "gk-demo-unverified": ("free", "none"),
}


def create_demo_app(config: Path | str | None = None, **overrides: object) -> Starlette:
    """demo-reasoner protected by gatekeeper, with settings from ``config`` (a TOML file)."""
    settings = Settings.load(config, **overrides)
    gatekeeper = Gatekeeper.from_settings(settings)
    app = create_model_app()
    app.add_middleware(GatekeeperMiddleware, gatekeeper=gatekeeper)
    return app


def demo_banner(host: str, port: int, settings: Settings, loop: str = "auto") -> str:
    """What ``make run`` prints: the keys and three copy-paste curl lines."""
    base = f"http://{host}:{port}"
    keys = "\n".join(
        f"  {key:<20} tier={tier:<11} kyc={kyc}" for key, (tier, kyc) in DEMO_KEYS.items()
    )
    return f"""gatekeeper demo: demo-reasoner behind gatekeeper on {base}
  policy:       {settings.policy.path} ({settings.policy.engine} engine)
  quotas:       {_without_password(settings.quota.storage)}
  decision log: {settings.audit.path}
  event loop:   {loop}

API keys (Authorization: Bearer <key> or x-api-key: <key>):
{keys}

Try:
{_curl_lines(base)}
"""


def _curl_lines(base: str) -> str:
    chat = '{"model":"demo-reasoner","messages":[{"role":"user","content":"Is 9.11 > 9.8?"}]}'
    messages = (
        '{"model":"demo-reasoner","max_tokens":256,"stream":true,'
        '"messages":[{"role":"user","content":"Why is the sky blue?"}]}'
    )
    responses = '{"model":"demo-reasoner","input":"hello"}'
    json_type = "-H 'Content-Type: application/json'"
    lines = [
        f"curl -s {base}/v1/chat/completions -H 'Authorization: Bearer gk-demo-enterprise' "
        f"{json_type} -d '{chat}'",
        f"curl -sN {base}/v1/messages -H 'x-api-key: gk-demo-free' "
        f"-H 'anthropic-version: 2023-06-01' {json_type} -d '{messages}'",
        f"curl -si {base}/v1/responses -H 'Authorization: Bearer gk-demo-pro' "
        f"-H 'X-Forwarded-For: 198.51.100.7' {json_type} -d '{responses}'",
    ]
    return "\n".join("  " + line for line in lines)


def _without_password(uri: str) -> str:
    """A storage URI fit for printing: ``redis://:secret@host`` becomes ``redis://:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", uri)
