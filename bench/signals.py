"""The distillation signals, side by side in one run: `python -m bench.signals`.

- ``stage``   ``SignalStage.inspect`` + ``observe`` per request (score, template hash, links,
              rolling counters, the Signals model), with a state of 10,000 active subjects,
              for a short CoT prompt and a long one (capped at ``signals.max_prompt_chars``);
- ``policy``  the default pack evaluated by the embedded engine for the same input document
              with the anti-extraction module off (``config/distillation`` ``enabled: false``)
              and on, for no signals, ordinary signals and a campaign's signals;
- ``maintain`` one ``SignalState.maintain`` (expire links, rebuild clusters) of that state.

CPU time (``time.process_time``), medians of interleaved rounds, printed with ratios. No HTTP
request is sent (``Non-2xx answers``: none possible).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.contract import Decision, Network, Subject
from gatekeeper.policy import EmbeddedEngine, load_policy
from gatekeeper.signals import MemorySignalStore, SignalStage, SignalState

POLICIES = Path(__file__).resolve().parents[1] / "policies"
ROUNDS = 7


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def chat(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def stage_figures() -> dict[str, float]:
    clock = Clock()
    state = SignalState({"10m": 600.0, "1h": 3600.0, "24h": 86400.0}, "1h")
    stage = SignalStage(
        MemorySignalStore(state), link_by=["payment", "org", "network+user_agent"], clock=clock
    )
    rng = random.Random(1)
    subjects = [
        Subject(id=f"s{i}", org=f"o{i}", payment_fingerprint=f"p{i % 5000}", kyc_level="email")
        for i in range(10_000)
    ]
    networks = [Network(client_ip=f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}")]
    allow = Decision(allow=True)
    for _ in range(10):  # 100,000 requests of history
        clock.now += 300
        for i, who in enumerate(subjects):
            ctx = await stage.inspect(
                who, networks[0], chat(f"How do I cache {i} rows?"), user_agent=f"ua{i % 7}"
            )
            stage.observe(ctx, allow)
    prompts = {
        "short prompt (113 chars)": chat(
            "Think step by step and show your full reasoning: Alice has 12 apples and gives 3 "
            "to Bob. How many are left?"
        ),
        "long prompt (2,700 chars)": chat("Please review the text carefully. " * 80),
    }
    results: dict[str, list[float]] = {name: [] for name in prompts}
    for _ in range(ROUNDS):
        for name, body in prompts.items():
            n, started = 2000, time.process_time()
            for k in range(n):
                ctx = await stage.inspect(subjects[k], networks[0], body, user_agent="ua1")
                stage.observe(ctx, allow)
            results[name].append((time.process_time() - started) / n * 1e6)
    started = time.process_time()
    state.maintain(clock.now + 60)
    figures = {f"stage, {name}": statistics.median(v) for name, v in results.items()}
    figures["maintain (10,000 subjects), once"] = (time.process_time() - started) * 1e6
    return figures


def documents() -> dict[str, dict[str, Any]]:
    usage = {"10m": 3, "1h": 3, "24h": 3}
    zero = {"10m": 0, "1h": 0, "24h": 0}

    def counters(requests: int, templates: int) -> dict[str, Any]:
        return {
            "requests": {k: requests for k in usage},
            "tokens": zero,
            "reasoning_requests": zero,
            "reasoning_tokens": zero,
            "refused": zero,
            "reasoning_share": 0.3,
            "template_count": templates,
        }

    base: dict[str, Any] = {
        "version": 1,
        "subject": {
            "id": "s1",
            "org": "o",
            "tier": "pro",
            "kyc_level": "government_id",
            "kyc_rank": 4,
            "account_age_days": 300,
            "flags": [],
        },
        "network": {
            "client_ip": "192.0.2.7",
            "country": "DE",
            "asn": 64501,
            "is_hosting": False,
            "is_proxy": False,
            "jurisdiction_tags": [],
        },
        "request": {
            "method": "POST",
            "path": "/v1/chat/completions",
            "dialect": "openai_chat",
            "model": "demo-reasoner",
            "stream": False,
            "reasoning_requested": True,
            "estimated_tokens": 300,
        },
        "signals": {"available": False},
        "time": {
            "unix_ns": 1795824000000000000,
            "rfc3339": "2026-11-28T00:00:00Z",
            "weekday": 5,
            "hour_utc": 0,
        },
    }
    quiet = {
        "available": True,
        "subject": {**counters(3, 1), "account_age_days": 300},
        "cluster": {**counters(3, 1), "id": "c-1", "size": 1, "linked_by": []},
        "cot_elicitation": 0.0,
        "cot_patterns": [],
        "template_hash": "0123456789abcdef",
        "template_repetition": 0.25,
    }
    campaign = {
        **quiet,
        "subject": {**counters(30, 10), "account_age_days": 3},
        "cluster": {**counters(3000, 500), "id": "c-1", "size": 60, "linked_by": ["payment"]},
        "cot_elicitation": 0.8,
        "template_repetition": 0.9,
    }
    return {
        "no signals": base,
        "ordinary signals": {**base, "signals": quiet},
        "campaign signals": {
            **base,
            "signals": campaign,
            "network": {**base["network"], "is_hosting": True},
        },
    }


def policy_figures() -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        off = Path(tmp) / "off"
        shutil.copytree(POLICIES, off)
        data = off / "gatekeeper" / "config" / "distillation" / "data.json"
        data.write_text(json.dumps({**json.loads(data.read_text()), "enabled": False}))
        engines = {
            "off": EmbeddedEngine(load_policy(off)),
            "on": EmbeddedEngine(load_policy(POLICIES)),
        }
    figures: dict[str, tuple[float, float]] = {}
    for name, doc in documents().items():
        text = orjson.dumps(doc).decode()
        samples: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(ROUNDS):
            for label, engine in engines.items():
                n, started = 500, time.process_time()
                for _ in range(n):
                    engine.evaluate_json(text)
                samples[label].append((time.process_time() - started) / n * 1e6)
        figures[name] = (statistics.median(samples["off"]), statistics.median(samples["on"]))
    return figures


def main() -> None:
    print("Non-2xx answers: none possible, no HTTP request is sent (the stage and the pack are "
          "called in-process)")  # fmt: skip
    print("signals stage (CPU µs per request, median of interleaved rounds)")
    for name, value in asyncio.run(stage_figures()).items():
        print(f"  {name:<40} {value:10.1f} µs")
    print("\ndefault pack, embedded engine: anti-extraction module off vs on (µs per decision)")
    print(f"  {'input':<20}{'off':>10}{'on':>10}{'on / off':>10}")
    for name, (off, on) in policy_figures().items():
        print(f"  {name:<20}{off:>10.1f}{on:>10.1f}{on / off:>10.2f}")


if __name__ == "__main__":
    main()
