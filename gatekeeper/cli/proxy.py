"""``gatekeeper proxy``: serve the reverse proxy with uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gatekeeper.cli._options import config_option, listen_on, server_options


@click.command("proxy")
@click.option(
    "--upstream",
    metavar="URL",
    default=None,
    help="Base URL requests are forwarded to, e.g. http://127.0.0.1:9000 "
    "(default: proxy.upstream from the configuration).",
)
@config_option(
    "TOML configuration (default: $GATEKEEPER_CONFIG). GATEKEEPER_* variables override it."
)
@server_options
@click.option(
    "--json-logs/--text-logs",
    default=None,
    help="Log one JSON object per line (default: observability.json_logs).",
)
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="One log line per request with its decision id (default: observability.access_log).",
)
def proxy_command(
    upstream: str | None,
    config: Path | None,
    host: str | None,
    port: int | None,
    loop: str | None,
    json_logs: bool | None,
    access_log: bool | None,
) -> None:
    """Protect any OpenAI/Anthropic-compatible server: forward every request to URL through
    gatekeeper's policies, quotas, reasoning shaping and decision log.

    The upstream's own API key, if it needs one, is set with GATEKEEPER_PROXY__UPSTREAM_API_KEY
    (or proxy.upstream_api_key); it then replaces the client's credentials. Health, readiness and
    metrics are served at /healthz, /readyz and /metrics unless configured otherwise.
    """
    import uvicorn

    from gatekeeper.observability import logging_config
    from gatekeeper.observability.logs import redact
    from gatekeeper.proxy.app import create_proxy_app
    from gatekeeper.settings import Settings

    overrides: dict[str, Any] = {}
    if upstream is not None:
        overrides["proxy"] = {"upstream": upstream}
    if loop is not None:
        overrides["server"] = {"loop": loop}
    observability: dict[str, Any] = {}
    if json_logs is not None:
        observability["json_logs"] = json_logs
    if access_log is not None:
        observability["access_log"] = access_log
    if observability:
        overrides["observability"] = observability
    # A ConfigurationError here is the root command's: "Error: ..." and exit status 2.
    settings = Settings.load(config, **overrides)
    app = create_proxy_app(settings)
    obs = settings.observability
    secret = settings.proxy.upstream_api_key
    log_config = logging_config(
        json_logs=obs.json_logs,
        level=obs.log_level,
        secrets=[secret.get_secret_value()] if secret else [],
    )
    host, port, loop_name = listen_on(settings.server, host, port)
    click.echo(
        f"gatekeeper proxy on http://{host}:{port} -> {redact(settings.proxy.upstream or '')}\n"
        f"  policy:       {settings.policy.path} ({settings.policy.engine} engine)\n"
        f"  quotas:       {redact(settings.quota.storage)}\n"
        f"  decision log: {settings.audit.path}\n"
        f"  event loop:   {loop_name}",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        lifespan="on",
        loop=loop_name,
        log_config=log_config,
        access_log=False,
        # gatekeeper reads forwarding headers itself, from network.trusted_proxies only.
        proxy_headers=False,
        # The upstream's Date and Server headers pass through; uvicorn must not add its own.
        server_header=False,
        date_header=False,
    )
