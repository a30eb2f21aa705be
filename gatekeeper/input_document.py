"""The policy input document (``input`` in Rego): the one place its shape is spelled.

Every part of the document is built here, as JSON (dicts in ``contract.Input``'s field order):

- ``build_input``: the whole document of one request, from the facts the stages gathered;
- ``signals_document``: ``input.signals``, from what the signals stage read of its state
  (``usage_document``, ``cluster_document``, ``family_document``, ``behaviour_document`` for
  its parts); with no arguments, the signals of a request the stage did not inspect
  (``unavailable_signals``);
- ``sample_input``: a complete document from sample parts, for the policy tooling.

The request path builds dicts rather than pydantic models: validating ``Input`` and its parts
from values gatekeeper computed itself, then dumping them again, costs several times as much
(bench figures in docs/performance.md). The contract stays the judge of the shape:
tests/test_input_document.py checks, over generated parts, that every document built here
validates as an ``Input`` and is exactly what that ``Input`` dumps (same fields, same order,
same types), so the two cannot drift. A value that is not exactly the type the fast path
expects (a subclass of ``Subject``, a dialect's fact of another type) goes through the model,
which coerces it, so the document never differs.

``contract.py`` depends on nothing here; this module depends on the contract only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from gatekeeper.contract import (
    CONTRACT_VERSION,
    Input,
    KycLevel,
    Network,
    PromptFeatures,
    Subject,
)

if TYPE_CHECKING:
    from gatekeeper.dialects.base import RequestFacts

#: The usage maps of ``input.signals.subject`` and ``.cluster`` (``UsageSignals``), in order;
#: the signal state keeps its counters in this order (``signals.state.USAGE_METRICS``).
USAGE_MAPS = (
    "requests",
    "tokens",
    "reasoning_requests",
    "reasoning_tokens",
    "refused",
    "reasoning_exposed",
    "repeated",
)
_REQUESTS, _REASONING, _EXPOSED, _REPEATED = 0, 2, 5, 6


def build_input(
    *,
    method: str,
    path: str,
    dialect: str | None,
    facts: RequestFacts,
    subject: Subject,
    network: Network,
    unix_ns: int,
    user_agent: str | None,
    signals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``input`` for the policy: ``signals`` is ``input.signals`` as ``signals_document``
    built it (``SignalContext.document``), ``None`` when the signals stage did not run."""
    if signals is None:
        signals = unavailable_signals()
    if _plain(method, path, dialect, facts, subject, network, user_agent):
        # The parts' fields as ``model_dump(mode="json")`` gives them, without pydantic's
        # serialiser (three calls: 1.2, 1.2 and 0.7 µs in a loop, 11.5, 4.7 and 2.3 µs on the
        # request path, where its data is no longer in the CPU's caches).
        subject_fields = subject.__dict__.copy()
        subject_fields["kyc_level"] = subject.kyc_level.value
        subject_fields["flags"] = subject.flags.copy()
        network_fields = network.__dict__.copy()
        network_fields["jurisdiction_tags"] = network.jurisdiction_tags.copy()
        return _document(
            subject_fields,
            network_fields,
            method,
            path,
            dialect,
            facts,
            facts.prompt_features.__dict__.copy(),
            user_agent,
            signals,
            unix_ns,
        )
    # Values of other types: the same document with the values as they are, validated (and so
    # coerced) by the contract, then dumped.
    raw = _document(
        subject,
        network,
        method,
        path,
        dialect,
        facts,
        facts.prompt_features,
        user_agent,
        signals,
        unix_ns,
    )
    return Input.model_validate(raw).model_dump(mode="json")


def _document(
    subject: Any,
    network: Any,
    method: Any,
    path: Any,
    dialect: Any,
    facts: RequestFacts,
    prompt_features: Any,
    user_agent: Any,
    signals: dict[str, Any],
    unix_ns: int,
) -> dict[str, Any]:
    """The document's literal: the one spelling of ``Input`` and ``RequestInfo``."""
    return {
        "version": CONTRACT_VERSION,
        "subject": subject,
        "network": network,
        "request": {
            "method": method,
            "path": path,
            "dialect": dialect,
            "model": facts.model,
            "stream": facts.stream,
            "reasoning_requested": facts.reasoning_requested,
            "max_tokens": facts.max_tokens,
            "estimated_tokens": facts.estimated_tokens,
            "user_agent": user_agent,
            "prompt_features": prompt_features,
        },
        "signals": signals,
        "time": _time(unix_ns),
    }


def _time(unix_ns: int) -> dict[str, Any]:
    """``input.time``: the arrival time, and the calendar facts policies test.

    What ``datetime.fromtimestamp(unix_ns / 1e9, UTC)`` makes of it (``_time_of``), with the
    calendar part built once per second: the microseconds rounded as ``fromtimestamp`` rounds
    them (half to even, of the same float), the fraction written as ``isoformat`` writes it
    (none when zero)."""
    fraction, whole = math.modf(unix_ns / 1e9)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole += 1.0
        micros -= 1_000_000
    elif micros < 0:
        whole -= 1.0
        micros += 1_000_000
    second = int(whole)
    cached = _last_second
    if cached[0] != second:
        cached = _second(second)
    stamp = f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"
    return {"unix_ns": unix_ns, "rfc3339": stamp, "weekday": cached[2], "hour_utc": cached[3]}


def _second(second: int) -> tuple[int, str, int, int]:
    global _last_second
    moment = datetime.fromtimestamp(second, UTC)
    _last_second = (second, moment.isoformat()[:19], moment.weekday(), moment.hour)
    return _last_second


#: The second ``_time`` last saw: its ``isoformat`` without fraction and offset, weekday, hour.
_last_second: tuple[int, str, int, int] = (-(2**63), "", 0, 0)


def _time_of(unix_ns: int) -> dict[str, Any]:
    """``_time`` as ``datetime`` computes it in one go (the reference tests hold it to)."""
    now = datetime.fromtimestamp(unix_ns / 1e9, UTC)
    return {
        "unix_ns": unix_ns,
        "rfc3339": now.isoformat().replace("+00:00", "Z"),
        "weekday": now.weekday(),
        "hour_utc": now.hour,
    }


def _plain(
    method: object,
    path: object,
    dialect: object,
    facts: RequestFacts,
    subject: Subject,
    network: Network,
    user_agent: object,
) -> bool:
    """Whether every value already has the exact type its field holds (nothing to coerce), and
    so the subject's, network's and prompt features' fields are what their JSON dump holds
    (``KycLevel`` apart, written as its value)."""
    features = facts.prompt_features
    return (
        type(subject) is Subject
        and type(network) is Network
        and type(features) is PromptFeatures
        and type(method) is str
        and type(path) is str
        and (dialect is None or type(dialect) is str)
        and (user_agent is None or type(user_agent) is str)
        and (facts.model is None or type(facts.model) is str)
        and type(facts.stream) is bool
        and type(facts.reasoning_requested) is bool
        and (facts.max_tokens is None or type(facts.max_tokens) is int)
        and type(facts.estimated_tokens) is int
        # Subject (its fields in order: SUBJECT_FIELDS)
        and type(subject.id) is str
        and (subject.org is None or type(subject.org) is str)
        and type(subject.tier) is str
        and type(subject.kyc_level) is KycLevel
        and type(subject.kyc_rank) is int
        and (subject.account_created is None or type(subject.account_created) is str)
        and (subject.account_age_days is None or type(subject.account_age_days) is float)
        and type(subject.flags) is list
        and _strings(subject.flags)
        and (subject.payment_fingerprint is None or type(subject.payment_fingerprint) is str)
        and (subject.auth_method is None or type(subject.auth_method) is str)
        # Network (NETWORK_FIELDS)
        and (network.client_ip is None or type(network.client_ip) is str)
        and (network.peer_ip is None or type(network.peer_ip) is str)
        and type(network.forwarded) is bool
        and (network.country is None or type(network.country) is str)
        and (network.registered_country is None or type(network.registered_country) is str)
        and (network.asn is None or type(network.asn) is int)
        and (network.as_org is None or type(network.as_org) is str)
        and type(network.is_hosting) is bool
        and type(network.is_proxy) is bool
        and type(network.jurisdiction_tags) is list
        and _strings(network.jurisdiction_tags)
        and type(network.lookup_error) is bool
        # PromptFeatures (FEATURES_FIELDS)
        and type(features.messages) is int
        and type(features.chars) is int
        and type(features.has_tools) is bool
        and type(features.has_tool_results) is bool
    )


def _strings(values: list[Any]) -> bool:
    """Whether every item is exactly a ``str``."""
    for value in values:  # noqa: SIM110 (all() over a generator costs three times as much)
        if type(value) is not str:
            return False
    return True


#: The fields ``_plain`` checks, by model: a field added to one of them must be checked there
#: too (tests/test_input_document.py holds these to the models).
SUBJECT_FIELDS = (
    "id",
    "org",
    "tier",
    "kyc_level",
    "kyc_rank",
    "account_created",
    "account_age_days",
    "flags",
    "payment_fingerprint",
    "auth_method",
)
NETWORK_FIELDS = (
    "client_ip",
    "peer_ip",
    "forwarded",
    "country",
    "registered_country",
    "asn",
    "as_org",
    "is_hosting",
    "is_proxy",
    "jurisdiction_tags",
    "lookup_error",
)
FEATURES_FIELDS = ("messages", "chars", "has_tools", "has_tool_results")


# -- input.signals ---------------------------------------------------------------------------


def signals_document(
    subject: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    *,
    available: bool = False,
    account_age_days: float | None = None,
    cot_elicitation: float = 0.0,
    cot_patterns: list[str] | None = None,
    template_hash: str | None = None,
    template_repetition: float = 0.0,
    family: dict[str, Any] | None = None,
    behaviour: dict[str, Any] | None = None,
    model_shift: dict[str, Any] | None = None,
    indicators: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``input.signals`` (``Signals``): the signals stage's reads put together.

    ``subject`` and ``cluster`` are ``usage_document``s (the cluster's completed by
    ``cluster_document``); the subject's gets ``account_age_days``. Every part left out is the
    contract's default, so ``signals_document()`` is what a request the stage did not inspect
    carries (``available = false``).
    """
    subject = subject if subject is not None else usage_document(())
    subject["account_age_days"] = account_age_days
    return {
        "available": available,
        "subject": subject,
        "cluster": cluster if cluster is not None else cluster_document(usage_document(())),
        "cot_elicitation": cot_elicitation,
        "cot_patterns": cot_patterns if cot_patterns is not None else [],
        "template_hash": template_hash,
        "template_repetition": template_repetition,
        "family": family if family is not None else family_document(None),
        "behaviour": behaviour if behaviour is not None else behaviour_document(),
        "model_shift": model_shift if model_shift is not None else shift_document(),
        "indicators": indicators if indicators is not None else [],
    }


def usage_document(
    windows: Sequence[str],
    totals: Sequence[Sequence[int]] | None = None,
    main: int = 0,
    template_count: int = 0,
    family_count: int = 0,
) -> dict[str, Any]:
    """The ``UsageSignals`` fields: ``totals[i]`` holds window ``windows[i]``'s totals in
    ``USAGE_MAPS`` order (``None``: nothing seen, every count 0); the shares are of the main
    window (index ``main``), rounded to 4 places."""
    doc: dict[str, Any]
    if totals is None:
        doc = {name: dict.fromkeys(windows, 0) for name in USAGE_MAPS}
        doc["reasoning_share"] = doc["exposed_share"] = doc["repeat_share"] = 0.0
    else:
        # Lengths are equal by construction (a total per map, a name per window): zip's
        # strict keyword costs 0.3 µs a call on Python 3.11, seven calls a read. Three
        # windows (the default) get dict displays: 2.6 µs a document instead of 6.6.
        if len(windows) == 3:
            (w0, w1, w2), (t0, t1, t2) = windows, totals
            doc = {
                name: {w0: a, w1: b, w2: c}
                for name, a, b, c in zip(USAGE_MAPS, t0, t1, t2)  # noqa: B905
            }
        else:
            doc = {
                name: dict(zip(windows, column))  # noqa: B905
                for name, column in zip(USAGE_MAPS, zip(*totals))  # noqa: B905
            }
        main_totals = totals[main]
        requests = main_totals[_REQUESTS]
        if requests > 0:
            doc["reasoning_share"] = round(main_totals[_REASONING] / requests, 4)
            doc["exposed_share"] = round(min(1.0, main_totals[_EXPOSED] / requests), 4)
            doc["repeat_share"] = round(main_totals[_REPEATED] / requests, 4)
        else:
            doc["reasoning_share"] = doc["exposed_share"] = doc["repeat_share"] = 0.0
    doc["template_count"] = template_count
    doc["family_count"] = family_count
    return doc


def cluster_document(
    usage: dict[str, Any],
    id: str | None = None,
    size: int = 1,
    linked_by: list[str] | None = None,
    subjects_by_age: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``input.signals.cluster`` (``ClusterSignals``): a ``usage_document`` and the cluster."""
    usage["id"] = id
    usage["size"] = size
    usage["linked_by"] = linked_by if linked_by is not None else []
    usage["subjects_by_age"] = subjects_by_age if subjects_by_age is not None else {}
    return usage


def family_document(
    id: str | None, subjects: int = 0, subjects_by_age: dict[str, int] | None = None
) -> dict[str, Any]:
    """``input.signals.family`` (``FamilySignals``)."""
    return {
        "id": id,
        "subjects": subjects,
        "subjects_by_age": subjects_by_age if subjects_by_age is not None else {},
    }


def behaviour_document(
    id: str | None = None,
    size: int = 1,
    subjects_by_age: dict[str, int] | None = None,
    fingerprinted: bool = False,
) -> dict[str, Any]:
    """``input.signals.behaviour`` (``BehaviourSignals``)."""
    return {
        "id": id,
        "size": size,
        "subjects_by_age": subjects_by_age if subjects_by_age is not None else {},
        "fingerprinted": fingerprinted,
    }


def shift_document(
    model: str | None = None,
    recent_share: float = 0.0,
    prior_share: float = 0.0,
    prior_requests: int = 0,
    moved: bool = False,
    cluster_moved: int = 0,
    subjects_moved: int = 0,
) -> dict[str, Any]:
    """``input.signals.model_shift`` (``ModelShiftSignals``); no model: a request without one."""
    return {
        "model": model,
        "recent_share": recent_share,
        "prior_share": prior_share,
        "prior_requests": prior_requests,
        "moved": moved,
        "cluster_moved": cluster_moved,
        "subjects_moved": subjects_moved,
    }


#: ``signals_document()`` as JSON: a fresh copy per request costs less than building it.
_UNAVAILABLE = orjson.dumps(signals_document())


def unavailable_signals() -> dict[str, Any]:
    """``input.signals`` of a request the signals stage did not inspect, or failed on."""
    return orjson.loads(_UNAVAILABLE)  # type: ignore[no-any-return]


# -- a sample ----------------------------------------------------------------------------------


def sample_input(
    *,
    subject: Subject | None = None,
    network: Network | None = None,
    facts: RequestFacts | None = None,
    signals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete input document from sample parts (each one replaceable): a free-tier,
    email-verified subject calling ``POST /v1/chat/completions`` from the US at
    2026-01-01T00:00:00Z, its signals unavailable."""
    from gatekeeper.dialects.base import RequestFacts  # the dialects import the shapers

    return build_input(
        method="POST",
        path="/v1/chat/completions",
        dialect="openai_chat",
        facts=facts or RequestFacts(model="sample-model", estimated_tokens=16),
        subject=subject
        or Subject(id="sample", tier="free", kyc_level=KycLevel.EMAIL, auth_method="api_key"),
        network=network or Network(client_ip="203.0.113.7", country="US"),
        unix_ns=1_767_225_600 * 10**9,
        user_agent=None,
        signals=signals,
    )
