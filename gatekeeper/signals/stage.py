"""The signals stage of the request pipeline: facts for ``input.signals``, and the update after.

``inspect`` runs after identify/locate/inspect and before the policy. It scores the prompt's
chain-of-thought elicitation, hashes its template, links the subject to the account cluster
its attributes put it in, and reads the subject's and the cluster's rolling usage from the
in-process state: no round trip, a few tens of microseconds. ``observe`` (after the policy
decided) counts the request; ``settle`` (after the response) adds the tokens it used and the
reasoning tokens the client saw. Neither blocks: with Redis storage they are published in the
background. The stage never refuses anything: an error in it is logged and the policy sees
``signals.available = false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gatekeeper.contract import Decision, Network, Signals, Subject
from gatekeeper.errors import ConfigurationError
from gatekeeper.input_document import signals_document, unavailable_signals
from gatekeeper.quota.reservation import usage_total_tokens
from gatekeeper.signals.clusters import link_key
from gatekeeper.signals.families import skeleton_bands
from gatekeeper.signals.fingerprint import RequestFeatures, request_features
from gatekeeper.signals.intel import IntelSource
from gatekeeper.signals.prompt import prompt_text
from gatekeeper.signals.scorer import ElicitationScore, PatternScorer, Scorer
from gatekeeper.signals.skeleton import skeleton, skeleton_hash
from gatekeeper.signals.state import Observation, SignalState
from gatekeeper.signals.store import MemorySignalStore, RedisSignalStore, SignalStore
from gatekeeper.signals.windows import MAX_AMOUNT

if TYPE_CHECKING:
    from gatekeeper.reasoning.shaper import ReasoningStats
    from gatekeeper.settings import SignalSettings

log = logging.getLogger("gatekeeper.signals")


@dataclass(slots=True)
class SignalContext:
    """What ``inspect`` found, carried to ``observe`` and ``settle`` of the same request.

    ``document`` is ``input.signals`` as the policy sees it (``signals_document``, JSON): the
    pipeline puts it in the input document as it is; ``signals`` is the model, built on
    demand (tests and tools; the request path never needs it).
    """

    document: dict[str, Any]
    subject: str = ""
    at: float = 0.0
    template: str | None = None
    links: tuple[str, ...] = ()
    reasoning_requested: bool = False
    estimated_tokens: int = 0
    bands: tuple[str, ...] = ()
    features: RequestFeatures | None = None
    age_days: float | None = None
    repeated: bool = False
    model: str | None = None
    observed: bool = field(default=False)

    @property
    def available(self) -> bool:
        """Whether the stage ran (``input.signals.available``)."""
        return self.document.get("available") is True

    @property
    def signals(self) -> Signals:
        """``document`` as the contract's model."""
        return Signals.model_validate(self.document)


class SignalStage:
    """Computes ``input.signals`` and records what each request did."""

    def __init__(
        self,
        store: SignalStore,
        *,
        scorer: Scorer | None = None,
        link_by: list[str] | None = None,
        max_prompt_chars: int = 2000,
        clock: Callable[[], float] | None = None,
        intel: IntelSource | None = None,
    ) -> None:
        self.store = store
        self.intel = intel
        self.state = store.state
        self.scorer: Scorer = scorer or PatternScorer()
        self.link_by = [combo.split("+") for combo in (link_by or ["payment", "org"])]
        self.max_prompt_chars = max_prompt_chars
        self.counters = {"errors": 0}
        #: Link keys by the attributes they hash (``_links``).
        self._link_cache: dict[tuple[Any, ...], tuple[str, ...]] = {}
        # An injected clock (the simulator's) runs maintenance in-band as its time passes;
        # the wall clock gets a background task instead, off the request path.
        self._clock = clock or time.time
        self._inline = clock is not None
        self._next_maintenance = 0.0
        self._task: asyncio.Task[None] | None = None
        self._started = False

    @classmethod
    def from_settings(
        cls,
        settings: SignalSettings,
        default_storage: str,
        *,
        clock: Callable[[], float] | None = None,
    ) -> SignalStage:
        """The stage ``settings`` describe; raises ``ConfigurationError``."""
        state = SignalState(
            settings.windows,
            settings.window,
            settings.buckets,
            max_subjects=settings.max_subjects,
            max_family_bands=settings.max_family_bands,
        )
        uri = (settings.storage or default_storage).strip().removeprefix("async+")
        store: SignalStore
        if uri.startswith("memory://"):
            store = MemorySignalStore(state)
        elif uri.startswith(("redis://", "rediss://", "redis+")):
            try:
                store = RedisSignalStore(
                    state,
                    uri,
                    key=f"{settings.key_prefix}:events",
                    flush_seconds=settings.flush_seconds,
                    retention_seconds=settings.replay_seconds or settings.windows[settings.window],
                )
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"signals storage: {exc}") from exc
        else:
            raise ConfigurationError(
                f"unsupported signals storage {uri.split('://')[0]!r}:// (memory:// or redis)"
            )
        scorer = load_scorer(settings.scorer) if settings.scorer else None
        intel = IntelSource(settings.intel_path) if settings.intel_path else None
        return cls(
            store,
            scorer=scorer,
            link_by=settings.link_by,
            max_prompt_chars=settings.max_prompt_chars,
            clock=clock,
            intel=intel,
        )

    async def inspect(
        self,
        subject: Subject,
        network: Network,
        document: Any,
        *,
        reasoning_requested: bool = False,
        estimated_tokens: int = 0,
        user_agent: str | None = None,
        model: str | None = None,
    ) -> SignalContext:
        """The signals of one request (``document`` is its parsed JSON body, or None;
        ``model`` the model it calls, as its dialect read it)."""
        try:
            if not self._started:
                await self.start()
            text = prompt_text(document, self.max_prompt_chars) if document is not None else ""
            scorer = self.scorer
            if not text:
                scored = ElicitationScore()
            elif type(scorer) is PatternScorer:
                scored = scorer.score_text(text)  # what its ``score`` returns, not awaited
            else:
                scored = await scorer.score(text)
            template: str | None = None
            bands: tuple[str, ...] = ()
            if text:
                template, bands = skeleton_facts(skeleton(text))
            features = request_features(
                document, len(text), reasoning=reasoning_requested, user_agent=user_agent
            )
            links = self._links(subject, network, user_agent)
            now = self._clock()
            if self._inline and now >= self._next_maintenance:
                self.state.maintain(now)
                self._next_maintenance = now + self.state.maintenance_interval
            age = subject.account_age_days
            self.state.link(subject.id, links, now, age)
            family = self.state.family_of(bands, now)
            own, cluster, repetition = self.state.read_documents(
                subject.id, template, links, now, family
            )
            score, patterns = _checked_score(scored)
            indicators = (
                self.intel.match(
                    now,
                    client_ip=network.client_ip,
                    asn=network.asn,
                    user_agent=user_agent,
                    payment_fingerprint=subject.payment_fingerprint,
                    bands=bands,
                )
                if self.intel is not None
                else []
            )
            signals = signals_document(
                own,
                cluster,
                available=True,
                account_age_days=age,
                cot_elicitation=score,
                cot_patterns=patterns,
                template_hash=template,
                template_repetition=repetition,
                family=self.state.read_family(family),
                behaviour=self.state.read_behaviour(subject.id),
                model_shift=self.state.read_shift(subject.id, model, now),
                indicators=indicators,
            )
        except Exception:
            self.counters["errors"] += 1
            log.exception("signals stage failed; the policy sees signals.available = false")
            return SignalContext(unavailable_signals())
        return SignalContext(
            signals,
            subject=subject.id,
            at=now,
            template=template,
            links=links,
            reasoning_requested=reasoning_requested,
            estimated_tokens=estimated_tokens,
            bands=bands,
            features=features,
            age_days=age,
            repeated=max(own["family_count"], cluster["family_count"]) > 0,
            model=model,
        )

    def _links(self, subject: Subject, network: Network, user_agent: str | None) -> tuple[str, ...]:
        # Cached in a plain dict, emptied when full: a subject sends the same attributes
        # request after request, and hashing three keys costs more than the lookup. Not an
        # ``lru_cache``: its entries are lists the garbage collector tracks, where these
        # tuples of strings stop being tracked; and a hit costs less with no order to keep.
        attributes = (
            subject.payment_fingerprint,
            subject.org,
            network.client_ip,
            network.asn,
            user_agent,
        )
        cache = self._link_cache
        links = cache.get(attributes)
        if links is None:
            if len(cache) >= LINK_CACHE:
                cache.clear()
            links = cache[attributes] = self._compute_links(*attributes)
        return links

    def _compute_links(
        self,
        payment: str | None,
        org: str | None,
        client_ip: str | None,
        asn: int | None,
        user_agent: str | None,
    ) -> tuple[str, ...]:
        """The link keys of these attributes (``_links`` caches them)."""
        attributes: dict[str, object] = {
            "payment": payment,
            "org": org,
            "network": network_prefix(client_ip),
            "asn": asn,
            "user_agent": user_agent,
        }
        keys = []
        for combination in self.link_by:
            values = [attributes[kind] for kind in combination]
            if not user_agent and len(combination) > 1 and "user_agent" in combination:
                # No User-Agent is a client trait like any other: with another attribute
                # (network+user_agent) it links; alone it would link every such client.
                values = ["(none)" if k == "user_agent" else v for k, v in zip(combination, values)]  # noqa: B905
            if all(v is not None and v != "" for v in values):
                keys.append(link_key("+".join(combination), values))
        return tuple(keys)

    def observe(self, ctx: SignalContext, decision: Decision) -> None:
        """Count the request once the policy decided (refused unless allowed or shadowed)."""
        if not ctx.available or ctx.observed:
            return
        ctx.observed = True
        refused = not decision.allow and not decision.shadow
        self.store.publish(
            Observation(
                ctx.at,
                ctx.subject,
                requests=1,
                reasoning_requests=int(ctx.reasoning_requested),
                refused=int(refused),
                repeated=int(ctx.repeated),
                template=ctx.template,
                links=ctx.links,
                bands=ctx.bands,
                features=ctx.features,
                age_days=ctx.age_days,
                model=ctx.model,
            )
        )

    def settle(self, ctx: SignalContext, stats: ReasoningStats | None, status: int | None) -> None:
        """Add the tokens the request used and the reasoning tokens its client saw."""
        if not ctx.available:
            return
        tokens = None
        if stats is not None and stats.usage is not None:
            tokens = usage_total_tokens(stats.usage)
        if tokens is None:
            tokens = ctx.estimated_tokens if status is not None and status < 400 else 0
        exposed = stats.exposed_tokens if stats is not None else 0
        # The upstream's usage figures are whatever it sent: bounded for the 64-bit counters
        # (``MAX_AMOUNT``: a trillion tokens, far above any real request).
        tokens = max(-MAX_AMOUNT, min(MAX_AMOUNT, tokens))
        exposed = max(-MAX_AMOUNT, min(MAX_AMOUNT, exposed))
        if tokens or exposed:
            self.store.publish(
                Observation(
                    self._clock(),
                    ctx.subject,
                    tokens=tokens,
                    reasoning_tokens=exposed,
                    reasoning_exposed=int(exposed > 0),
                )
            )

    async def start(self) -> None:
        """Start the store's background work and maintenance (idempotent). Called at ASGI
        lifespan start-up, so the first request does not pay for opening connections."""
        if self._started:
            return
        self._started = True
        await self.store.start()
        if not self._inline:
            self.state.background = True
            self._task = asyncio.create_task(self._maintain_loop(), name="gatekeeper-signals")

    async def _maintain_loop(self) -> None:
        while True:
            # Once per bucket of the main window, or sooner when evictions ask for it.
            waited = 0.0
            interval = self.state.maintenance_interval
            while waited < interval and not self.state.maintenance_due:
                step = min(MAINTENANCE_POLL, interval - waited)
                await asyncio.sleep(step)
                waited += step
            slices, longest, total = await run_maintenance(self.state, self._clock())
            if self.intel is not None:
                await self.intel.refresh()
            log.debug(
                "signals maintenance: %d slices, longest %.1f ms, %.1f ms in all",
                slices,
                longest * 1e3,
                total * 1e3,
            )

    async def health(self) -> dict[str, Any]:
        # The shared-intelligence file is a readiness check of its own ("intel").
        return {**await self.store.health(), "stage_errors": self.counters["errors"]}

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.store.aclose()


#: How many attribute sets keep their link keys cached (about 600 bytes each with the keys,
#: untracked by the garbage collector): enough for every subject of ``signals.max_subjects``'
#: default (200,000). It was 65,536: at 100,000 active subjects two requests in three missed
#: it (5.8 µs a request against 2.2 µs).
LINK_CACHE = 262_144
#: How long one slice of maintenance may hold the event loop before it yields (seconds).
MAINTENANCE_SLICE = 0.002
#: How often the background task looks whether evictions asked for an early pass (seconds).
MAINTENANCE_POLL = 1.0


async def run_maintenance(
    state: SignalState,
    now: float,
    slice_seconds: float = MAINTENANCE_SLICE,
    durations: list[float] | None = None,
) -> tuple[int, float, float]:
    """Run one maintenance pass of ``state`` at ``now`` in slices of about ``slice_seconds``,
    letting the event loop run requests between them (``asyncio.sleep(0)``).

    Returns the number of slices, the longest slice and the pass's CPU-bound time in all
    (seconds, wall clock of the slices only). A slice ends at the first yield of
    ``SignalState.maintenance`` past the budget, so it overshoots by at most one step.
    With ``durations``, every slice's duration is appended to it.
    """
    work = state.maintenance(now)
    clock = time.perf_counter
    slices, longest, total = 0, 0.0, 0.0
    finished = False
    try:
        while not finished:
            started = clock()
            finished = True
            for _ in work:
                if clock() - started >= slice_seconds:
                    finished = False
                    break
            spent = clock() - started
            if durations is not None:
                durations.append(spent)
            slices += 1
            longest = max(longest, spent)
            total += spent
            if not finished:
                await asyncio.sleep(0)
    finally:
        if not finished:
            work.close()  # cancelled: the state is consistent between any two slices
    return slices, longest, total


@functools.lru_cache(maxsize=2048)
def skeleton_facts(skeletal: str) -> tuple[str, tuple[str, ...]]:
    """A skeleton's template hash and family band keys, cached together: a generator's
    prompts share their skeleton, and one lookup costs less than hashing it (and looking up
    ``skeleton_bands``' own cache)."""
    return skeleton_hash(skeletal), skeleton_bands(skeletal)


def _checked_score(scored: ElicitationScore) -> tuple[float, list[str]]:
    """The score and pattern names as ``Signals`` holds them.

    The built-in scorer's values are already a float and strings; a plug-in scorer's are
    validated (and coerced, an int score becoming a float) as the model would, and a value it
    rejects fails the stage as it always did.
    """
    score, patterns = scored.score, list(scored.patterns)
    if type(score) is not float or not all(type(p) is str for p in patterns):
        checked = Signals(cot_elicitation=score, cot_patterns=patterns)
        score, patterns = checked.cot_elicitation, checked.cot_patterns
    return score, patterns


def network_prefix(ip: str | None) -> str | None:
    """The /24 of an IPv4 address or the /48 of an IPv6 one (``None`` when unknown)."""
    if not ip or ip == "unknown":
        return None
    if ":" not in ip:
        head, _, _ = ip.rpartition(".")
        return f"{head}.0/24" if head else None
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return None
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))


def load_scorer(path: str) -> Scorer:
    """Call the factory named ``module:attribute`` and return the Scorer it builds."""
    module_name, _, attribute = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
        scorer = factory()
    except Exception as exc:
        raise ConfigurationError(f"signals.scorer {path!r}: {exc}") from exc
    if not callable(getattr(scorer, "score", None)):
        raise ConfigurationError(f"signals.scorer {path!r} built no object with score(text)")
    return scorer  # type: ignore[no-any-return]
