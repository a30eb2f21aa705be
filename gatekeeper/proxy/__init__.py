"""Reverse-proxy mode: gatekeeper in front of any OpenAI/Anthropic-compatible server.

``gatekeeper proxy --upstream URL --config FILE`` serves ``create_proxy_app(settings)`` with
uvicorn: ``ProxyApp`` (forwarding with a pooled ``httpx.AsyncClient``) behind
``GatekeeperMiddleware`` (the same pipeline and policies as a mounted app).
"""

from gatekeeper.proxy.app import ProxyApp, UpstreamBrokeOff, create_proxy_app

__all__ = ["ProxyApp", "UpstreamBrokeOff", "create_proxy_app"]
