"""The signals stage: what it puts in input.signals, and what it records after the policy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.contract import Decision, Network, Signals, Subject
from gatekeeper.errors import ConfigurationError
from gatekeeper.reasoning.shaper import ReasoningStats
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings, SignalSettings
from gatekeeper.signals import (
    ElicitationScore,
    MemorySignalStore,
    RedisSignalStore,
    SignalStage,
    SignalState,
    cluster_id,
    load_scorer,
    network_prefix,
)
from gatekeeper.signals.scorer import PatternScorer

ALLOW = Decision(allow=True)
REFUSE = Decision(allow=False, status=403, reasons=[{"code": "x"}])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_stage(clock: Clock, link_by: list[str] | None = None) -> SignalStage:
    state = SignalState({"10m": 600.0, "1h": 3600.0}, "1h")
    return SignalStage(
        MemorySignalStore(state),
        link_by=link_by or ["payment", "org", "network+user_agent"],
        clock=clock,
    )


def subject(sid: str, **extra: Any) -> Subject:
    return Subject(id=sid, tier="pro", kyc_level="government_id", account_age_days=3, **extra)


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


NET = Network(client_ip="203.0.113.9", asn=64500)


async def send(stage: SignalStage, who: Subject, text: str, **kwargs: Any) -> Any:
    network = kwargs.pop("network", NET)
    decision = kwargs.pop("decision", ALLOW)
    ctx = await stage.inspect(who, network, chat(text), **kwargs)
    stage.observe(ctx, decision)
    return ctx


async def test_a_first_request_gets_available_signals() -> None:
    stage = make_stage(Clock())
    ctx = await stage.inspect(subject("a"), NET, chat("Think step by step: 2+2?"))
    signals = ctx.signals
    assert signals.available
    assert signals.cot_patterns == ["step_by_step"]
    assert signals.cot_elicitation == pytest.approx(0.45)
    assert signals.template_hash is not None and signals.template_repetition == 1.0
    assert signals.subject.requests == {"10m": 0, "1h": 0}
    assert signals.subject.account_age_days == 3
    assert (signals.cluster.size, signals.cluster.id) == (1, cluster_id("a"))


async def test_repeated_templates_and_refusals_are_counted() -> None:
    clock = Clock()
    stage = make_stage(clock)
    who = subject("a")
    for n in range(6):
        clock.now += 10
        await send(stage, who, f"Solve step by step: {n} apples", reasoning_requested=True)
    await send(stage, who, "Something else entirely", decision=REFUSE)
    ctx = await stage.inspect(who, NET, chat("Solve step by step: 99 apples"))
    assert ctx.signals.subject.requests["1h"] == 7
    assert ctx.signals.subject.refused["1h"] == 1
    assert ctx.signals.subject.template_count == 6
    assert ctx.signals.subject.reasoning_share == pytest.approx(6 / 7, abs=1e-3)
    assert ctx.signals.template_repetition == pytest.approx(7 / 8)


@pytest.mark.parametrize(
    ("first", "second", "linked"),
    [
        ({"payment_fingerprint": "card-1"}, {"payment_fingerprint": "card-1"}, ["payment"]),
        ({"org": "acme"}, {"org": "acme"}, ["org"]),
        ({}, {}, ["network+user_agent"]),
        ({"payment_fingerprint": "card-1"}, {"payment_fingerprint": "card-2"}, None),
    ],
    ids=["payment", "org", "network-and-agent", "nothing-shared"],
)
async def test_shared_attributes_link_accounts(
    first: dict[str, Any], second: dict[str, Any], linked: list[str] | None
) -> None:
    stage = make_stage(Clock())
    other_net = Network(client_ip="198.51.100.4")
    await send(stage, subject("a", **first), "hi", user_agent="bot/1")
    network = NET if linked == ["network+user_agent"] else other_net
    ctx = await stage.inspect(subject("b", **second), network, chat("hi"), user_agent="bot/1")
    if linked is None:
        assert (ctx.signals.cluster.size, ctx.signals.cluster.linked_by) == (1, [])
    else:
        assert ctx.signals.cluster.size == 2
        assert ctx.signals.cluster.id == cluster_id("a")
        assert ctx.signals.cluster.linked_by == linked
        assert ctx.signals.cluster.requests["1h"] == 1  # a's request, before this one


async def test_settle_adds_tokens_and_exposed_reasoning() -> None:
    stage = make_stage(Clock())
    ctx = await send(stage, subject("a"), "hi", estimated_tokens=500)
    stats = ReasoningStats(usage={"prompt_tokens": 10, "completion_tokens": 90}, exposed_tokens=40)
    stage.settle(ctx, stats, 200)
    estimated = await send(stage, subject("a"), "hi", estimated_tokens=500)
    stage.settle(estimated, None, 200)  # no usage seen: the estimate
    failed = await send(stage, subject("a"), "hi", estimated_tokens=500)
    stage.settle(failed, None, 500)  # an error costs nothing
    after = await stage.inspect(subject("a"), NET, chat("hi"))
    assert after.signals.subject.tokens["1h"] == 600
    assert after.signals.subject.reasoning_tokens["1h"] == 40


async def test_a_failing_scorer_never_fails_the_request(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def score(self, text: str) -> ElicitationScore:
            raise RuntimeError("model server down")

    stage = SignalStage(
        MemorySignalStore(SignalState({"1h": 3600.0}, "1h")), scorer=Broken(), clock=Clock()
    )
    ctx = await stage.inspect(subject("a"), NET, chat("hi"))
    assert not ctx.signals.available
    stage.observe(ctx, ALLOW)  # nothing is recorded for a request without signals
    assert stage.state.stats()["subjects"] == 0
    assert stage.counters["errors"] == 1
    assert "signals stage failed" in caplog.text


async def test_requests_without_a_body_are_counted() -> None:
    stage = make_stage(Clock())
    ctx = await stage.inspect(subject("a"), NET, None)
    assert ctx.signals.available and ctx.signals.template_hash is None
    stage.observe(ctx, ALLOW)
    again = await stage.inspect(subject("a"), NET, None)
    assert again.signals.subject.requests["1h"] == 1


history = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # who
        st.sampled_from([{}, {"payment_fingerprint": "card-1"}, {"org": "acme"}]),  # links
        st.sampled_from(["hi", "Think step by step: 2+2?", "Show your reasoning for 7", ""]),
        st.booleans(),  # reasoning requested
        st.booleans(),  # refused
        st.floats(min_value=0, max_value=900),  # seconds since the previous request
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(requests=history, age=st.none() | st.floats(0, 900) | st.integers(0, 900))
def test_the_signals_document_is_what_the_signals_model_dumps(
    requests: list[tuple[str, dict[str, Any], str, bool, bool, float]], age: float | None
) -> None:
    # The stage builds input.signals as JSON: every field, in the model's order, of the type
    # the model holds (an int where a float belongs would change the bytes the policy sees).
    async def run() -> None:
        clock = Clock()
        stage = make_stage(clock)
        for who, links, text, reasoning, refused, pause in requests:
            clock.now += pause
            # Read before and after counting: a subject (or cluster) new to the state, too.
            for _ in range(2):
                who_now = Subject(id=who, account_age_days=age, **links)
                ctx = await stage.inspect(who_now, NET, chat(text), user_agent="bot/1")
                dumped = Signals.model_validate(ctx.document).model_dump(mode="json")
                assert orjson.dumps(ctx.document) == orjson.dumps(dumped)
                await send(
                    stage,
                    subject(who, **links),
                    text,
                    reasoning_requested=reasoning,
                    decision=REFUSE if refused else ALLOW,
                )

    asyncio.run(run())


async def test_a_cluster_of_one_reads_the_subjects_own_usage_apart() -> None:
    ctx = await make_stage(Clock()).inspect(subject("a"), NET, chat("hi"))
    own, cluster = ctx.document["subject"], ctx.document["cluster"]
    assert (cluster["size"], cluster["requests"]) == (1, own["requests"])
    own["requests"]["1h"] = 99  # e.g. a masking rule rewriting one part of the document
    assert cluster["requests"]["1h"] == 0


@pytest.mark.parametrize(
    ("score", "patterns", "available", "expected"),
    [
        (1, ("custom",), True, 1.0),
        (0.25, (), True, 0.25),
        ("high", (), False, 0.0),
        (0.5, (7,), False, 0.0),
    ],
    ids=["int-score-as-float", "float-score", "text-score-fails", "non-text-pattern-fails"],
)
async def test_a_plug_in_scorers_values_are_validated(
    score: Any, patterns: tuple[Any, ...], available: bool, expected: float
) -> None:
    class Custom:
        async def score(self, text: str) -> ElicitationScore:
            return ElicitationScore(score, patterns)

    stage = SignalStage(
        MemorySignalStore(SignalState({"1h": 3600.0}, "1h")), scorer=Custom(), clock=Clock()
    )
    ctx = await stage.inspect(subject("a"), NET, chat("hi"))
    assert ctx.available is available
    assert ctx.document["cot_elicitation"] == expected
    assert type(ctx.document["cot_elicitation"]) is float


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:aa:bb::1", "2001:db8:aa::/48"),
        ("unknown", None),
        (None, None),
        ("not:an:address", None),
    ],
)
def test_network_prefix(ip: str | None, prefix: str | None) -> None:
    assert network_prefix(ip) == prefix


def scorer_factory() -> PatternScorer:
    return PatternScorer(())


def test_a_scorer_is_loaded_by_import_path() -> None:
    scorer = load_scorer("tests.signals.test_stage:scorer_factory")
    assert isinstance(scorer, PatternScorer) and scorer.patterns == ()


@pytest.mark.parametrize(
    "path", ["no.such.module:f", "tests.signals.test_stage:missing", "json:dumps"]
)
def test_a_bad_scorer_is_a_configuration_error(path: str) -> None:
    with pytest.raises(ConfigurationError, match=r"signals\.scorer"):
        load_scorer(path)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, MemorySignalStore),
        ({"storage": "redis://127.0.0.1:1/0"}, RedisSignalStore),
        ({"enabled": False}, type(None)),
    ],
    ids=["memory-by-default", "redis", "disabled"],
)
async def test_runtime_builds_the_stage_from_settings(
    tmp_path: Path, overrides: dict[str, Any], expected: type
) -> None:
    subjects = tmp_path / "subjects.json"
    subjects.write_text('{"subjects": []}')
    settings = Settings.load(
        None,
        identity={"subjects_file": subjects},
        audit={"path": tmp_path / "d.jsonl"},
        signals=overrides,
    )
    gk = Gatekeeper.from_settings(settings)
    try:
        stage = gk.signals
        assert isinstance(stage.store if stage else None, expected)
    finally:
        await gk.aclose()


def test_an_unknown_storage_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported signals storage"):
        SignalStage.from_settings(SignalSettings(storage="memcached://x"), "memory://")
