"""Building the policy engine the ``[policy]`` settings name (docs/policy-authoring.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatekeeper.errors import ConfigurationError, PolicyLoadError
from gatekeeper.policy.check import check_source
from gatekeeper.policy.embedded import EmbeddedEngine
from gatekeeper.policy.engine import PolicyEngine
from gatekeeper.policy.opa import OpaEngine
from gatekeeper.policy.reload import ReloadingEngine
from gatekeeper.policy.repo import PolicySource, load_policy

if TYPE_CHECKING:
    from gatekeeper.settings import PolicySettings


def open_engine(settings: PolicySettings) -> PolicyEngine:
    """The engine for ``settings``; raises ``ConfigurationError`` for a policy that cannot be
    used (does not load or compile, or, with ``check``, fails its tests or cases)."""
    opa = settings.opa
    if settings.engine == "opa" and not opa.push:
        if settings.reload:
            raise ConfigurationError(
                "policy.reload needs policy.opa.push = true (without it, OPA loads its bundles)"
            )
        return _opa(settings, None)
    try:
        source = load_policy(settings.path)
    except PolicyLoadError as exc:
        raise ConfigurationError(f"policy {settings.path}: {exc}") from exc
    engine: PolicyEngine
    if settings.engine == "opa":
        # Compiled and checked by OPA itself when it is uploaded (at start, or first decision).
        engine = _opa(settings, source)
    else:
        try:
            prepared = None
            if settings.check:
                report = check_source(source, settings.decision)
                report.raise_for_problems()
                prepared = report.prepared if settings.evaluator == "auto" else None
            engine = EmbeddedEngine(
                source,
                settings.decision,
                check=settings.check,
                evaluator=settings.evaluator,
                verify_every=settings.verify_every,
                prepared=prepared,
            )
        except PolicyLoadError as exc:
            raise ConfigurationError(f"policy {settings.path}: {exc}") from exc
    if settings.reload:
        engine = ReloadingEngine(
            engine, settings.path, interval=settings.reload_interval, digest=source.digest
        )
    return engine


def _opa(settings: PolicySettings, source: PolicySource | None) -> OpaEngine:
    opa = settings.opa
    return OpaEngine(
        opa.url,
        settings.decision,
        source=source,
        push=opa.push,
        timeout=opa.timeout,
        admin_timeout=opa.admin_timeout,
        pool_size=opa.pool_size,
        token=opa.token.get_secret_value() if opa.token is not None else None,
        check=settings.check,
    )
