"""The parts one gatekeeper instance runs with, built once from settings.

The middleware runs the request pipeline; this module owns what the pipeline calls: the subject
store, the address resolver and GeoIP database, the policy engine, the quota store, the
distillation signals stage and the decision log. Building them validates every file the
settings name, so a misconfiguration fails at start-up with ``ConfigurationError`` rather than
on the first request.
"""

from __future__ import annotations

import gc
import logging
import sys
from dataclasses import dataclass, field

from gatekeeper.audit import DecisionLog
from gatekeeper.audit.setup import build_decision_log, policy_data_of
from gatekeeper.errors import ConfigurationError
from gatekeeper.identity import Identifier, SubjectResolver, SubjectStore
from gatekeeper.network import (
    ClientAddressResolver,
    GeoDatabaseError,
    GeoLocator,
    ensure_database,
)
from gatekeeper.observability import Observability, ObservedParts
from gatekeeper.policy import PolicyEngine, open_engine
from gatekeeper.quota import QuotaStore, open_quota_store
from gatekeeper.reasoning.continuity import ReasoningVault, open_vault
from gatekeeper.reasoning.enforcement import ReasoningSetup
from gatekeeper.reasoning.summarize import ExtractiveSummariser, Summariser, load_summariser
from gatekeeper.settings import Settings
from gatekeeper.signals import SignalStage

log = logging.getLogger("gatekeeper")


@dataclass
class Gatekeeper:
    """Everything the request pipeline needs, already validated."""

    settings: Settings
    #: The identity methods in their order (``identity.methods``): the identify stage.
    identity: Identifier
    resolver: ClientAddressResolver
    geo: GeoLocator | None
    engine: PolicyEngine
    quotas: QuotaStore
    decision_log: DecisionLog
    counters: dict[str, int] = field(default_factory=dict)
    #: The distillation signals stage (``input.signals``); None when ``signals.enabled`` is off.
    signals: SignalStage | None = None
    #: What ``summary`` mode shows (``shaping.summariser``); an API team may set its own.
    summariser: Summariser = field(default_factory=ExtractiveSummariser)
    #: Where continuity keeps reasoning; None when ``shaping.continuity`` is off.
    vault: ReasoningVault | None = None
    #: Health endpoints, metrics, traces; built from ``settings.observability``.
    observability: Observability = field(init=False)

    @property
    def subjects(self) -> SubjectStore | None:
        """The API-key subject store (cached), or None when ``api_key`` is not a method."""
        return self.identity.store

    def __post_init__(self) -> None:
        self.observability = Observability(
            self.settings.observability,
            ObservedParts(
                engine=self.engine,
                identity=self.identity,
                quotas=self.quotas,
                decision_log=self.decision_log,
                geo=self.geo,
                intel=self.signals.intel if self.signals is not None else None,
                counters=self.counters,
            ),
        )

    def reasoning_setup(self) -> ReasoningSetup:
        """What every request's reasoning enforcement reads (the pipeline builds it once: set
        ``summariser`` before the middleware is built)."""
        return ReasoningSetup.of(
            self.settings.shaping,
            summariser=self.summariser,
            vault=self.vault,
            key_prefix=self.settings.quota.key_prefix,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, resolver: SubjectResolver | None = None
    ) -> Gatekeeper:
        """Build every part named by ``settings``; raises ``ConfigurationError``.

        ``resolver`` is the app's own identity hook (``gatekeeper.identity.SubjectResolver``),
        used when ``identity.methods`` lists ``resolver``; it overrides ``identity.resolver``.
        """
        engine = _engine(settings)
        return cls(
            settings=settings,
            identity=Identifier.from_settings(settings.identity, resolver=resolver),
            resolver=ClientAddressResolver(settings.network.trusted_proxies),
            geo=_geo(settings),
            engine=engine,
            quotas=_quota_store(settings),
            # The policy's own mask rules (data.gatekeeper.config.log.mask) are read per batch.
            decision_log=build_decision_log(settings.audit, lambda: policy_data_of(engine)),
            signals=_signal_stage(settings),
            summariser=load_summariser(settings.shaping.summariser),
            vault=_vault(settings),
        )

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def start(self) -> None:
        """Start background work ahead of the first request: the policy engine's connection
        and first upload (OPA), the decision log's writer process (if it has one), the policy
        and GeoIP reload watchers, and the signals' stream reader and maintenance; then, with
        ``runtime.gc_freeze``, freeze the start-up heap, and set the interpreter's thread switch
        interval (``runtime.switch_interval``). Called at ASGI lifespan start-up; without a
        lifespan, each part starts on first use."""
        await self.engine.start()
        await self.decision_log.prepare()  # with audit.sealer = "process": its writer boots
        if self.geo is not None:
            await self.geo.start()  # the GeoIP reload watcher (network.geoip_reload_interval)
        await self.identity.start()
        if self.signals is not None:
            await self.signals.start()
        if self.settings.runtime.switch_interval > 0:
            # The decision log's writer thread seals batches under the interpreter lock; the
            # event loop, woken by a request meanwhile, gets the lock after this long at most.
            sys.setswitchinterval(self.settings.runtime.switch_interval)
        if self.settings.runtime.gc_freeze:
            # Everything built so far lives as long as the process: out of the cyclic GC's
            # scans, a full collection costs what requests allocate, not 60 ms of start-up
            # objects every second or so under load (docs/performance.md, "Whole stack").
            gc.collect()
            gc.freeze()

    async def aclose(self) -> None:
        """Flush the decision log and release stores."""
        await self.decision_log.aclose()
        await self.identity.aclose()
        await self.quotas.aclose()
        if self.vault is not None:
            await self.vault.aclose()
        if self.signals is not None:
            await self.signals.aclose()
        await self.engine.aclose()
        await self.observability.aclose()
        if self.geo is not None:
            await self.geo.aclose()


def _geo(settings: Settings) -> GeoLocator | None:
    net = settings.network
    if net.geoip_database is None:
        return None
    if net.geoip_source is not None:
        ensure_database(net.geoip_source, net.geoip_database)
    # A missing or damaged database stops the start (GeoDatabaseError, a ConfigurationError):
    # there is no last good one to fall back on yet, and serving without location would refuse
    # or mislabel every client. Once started, a damaged replacement is refused and the last
    # good database kept (GeoLocator.check).
    try:
        return GeoLocator(
            net.geoip_database,
            source=net.geoip_source,
            canaries=net.geoip_canaries,
            reload_interval=net.geoip_reload_interval,
        )
    except GeoDatabaseError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"GeoIP database {net.geoip_database}: {exc}") from exc


def _engine(settings: Settings) -> PolicyEngine:
    # embedded or opa, wrapped for hot reload when policy.reload is set.
    return open_engine(settings.policy)


def _quota_store(settings: Settings) -> QuotaStore:
    quota = settings.quota
    return open_quota_store(
        quota.storage,
        prefix=quota.key_prefix,
        timeout=quota.timeout,
        local_fraction=quota.local_fraction,
        retry_interval=quota.retry_interval,
        failure_threshold=quota.failure_threshold,
        settle_interval=quota.settle_interval,
        max_connections=quota.max_connections,
        pool_timeout=quota.pool_timeout,
    )


def _vault(settings: Settings) -> ReasoningVault | None:
    # Continuity keeps reasoning where quotas live: in process, or in the same Redis.
    if not settings.shaping.continuity:
        return None
    quota = settings.quota
    return open_vault(
        quota.storage,
        max_entries=settings.shaping.continuity_max_entries,
        max_connections=quota.max_connections,
        pool_timeout=quota.pool_timeout,
    )


def _signal_stage(settings: Settings) -> SignalStage | None:
    if not settings.signals.enabled:
        return None
    return SignalStage.from_settings(settings.signals, settings.quota.storage)
