"""The parts one gatekeeper instance runs with, built once from settings.

The middleware runs the request pipeline; this module owns what the pipeline calls: the subject
store, the address resolver and GeoIP database, the policy engine, the quota store and the
decision log. Building them validates every file the settings name, so a misconfiguration
fails at start-up with ``ConfigurationError`` rather than on the first request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gatekeeper.audit import DecisionLog, JsonlFileSink
from gatekeeper.errors import ConfigurationError, PolicyLoadError
from gatekeeper.identity import FileSubjectStore, RedisSubjectStore, SubjectStore
from gatekeeper.network import ClientAddressResolver, GeoLocator, ensure_database
from gatekeeper.policy import EmbeddedEngine, PolicyEngine, load_policy
from gatekeeper.quota import MemoryQuotaStore, QuotaStore
from gatekeeper.settings import Settings

log = logging.getLogger("gatekeeper")


@dataclass
class Gatekeeper:
    """Everything the request pipeline needs, already validated."""

    settings: Settings
    subjects: SubjectStore
    resolver: ClientAddressResolver
    geo: GeoLocator | None
    engine: PolicyEngine
    quotas: QuotaStore
    decision_log: DecisionLog
    counters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Gatekeeper:
        """Build every part named by ``settings``; raises ``ConfigurationError``."""
        return cls(
            settings=settings,
            subjects=_subject_store(settings),
            resolver=ClientAddressResolver(settings.network.trusted_proxies),
            geo=_geo(settings),
            engine=_engine(settings),
            quotas=_quota_store(settings),
            decision_log=DecisionLog(
                JsonlFileSink(settings.audit.path), queue_size=settings.audit.queue_size
            ),
        )

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def aclose(self) -> None:
        """Flush the decision log and release stores."""
        await self.decision_log.aclose()
        await self.subjects.aclose()
        await self.quotas.aclose()
        await self.engine.aclose()
        if self.geo is not None:
            self.geo.close()


def _subject_store(settings: Settings) -> SubjectStore:
    ident = settings.identity
    if ident.store == "redis":
        if not ident.redis_url:
            raise ConfigurationError("identity.store = redis needs identity.redis_url")
        return RedisSubjectStore(
            ident.redis_url, prefix=ident.redis_prefix, cache_seconds=ident.cache_seconds
        )
    if ident.subjects_file is None:
        raise ConfigurationError("identity.store = file needs identity.subjects_file")
    return FileSubjectStore(ident.subjects_file)


def _geo(settings: Settings) -> GeoLocator | None:
    net = settings.network
    if net.geoip_database is None:
        return None
    if net.geoip_source is not None:
        ensure_database(net.geoip_source, net.geoip_database)
    try:
        return GeoLocator(net.geoip_database)
    except Exception as exc:
        raise ConfigurationError(f"GeoIP database {net.geoip_database}: {exc}") from exc


def _engine(settings: Settings) -> PolicyEngine:
    try:
        source = load_policy(settings.policy.path)
        return EmbeddedEngine(source, settings.policy.decision)
    except PolicyLoadError as exc:
        raise ConfigurationError(f"policy {settings.policy.path}: {exc}") from exc


def _quota_store(settings: Settings) -> QuotaStore:
    uri = settings.quota.storage
    if uri.startswith("memory://"):
        return MemoryQuotaStore()
    raise ConfigurationError(f"unsupported quota storage {uri!r} (supported: memory://)")
