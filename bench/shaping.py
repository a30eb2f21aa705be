"""Reasoning shaping, every mode side by side with passthrough: `python -m bench.shaping`.

What is measured is the shaping stage itself, in process: gatekeeper's ``Responder`` (the ASGI
send-wrapper) fed the recorded provider responses of tests/fixtures/streams the way an app sends
them (one body message per SSE event; a JSON body in one message), with a shaper of each mode,
against the same ``Responder`` without a shaper (``passthrough``: bytes forwarded untouched,
which is what an app without gatekeeper's shaping costs at this point).

Printed, per dialect and for all recordings together (medians of interleaved rounds):

- streams: added time per SSE event (µs, mode minus passthrough), throughput of the shaping
  stage (MB of upstream body per second) and the time as a multiple of passthrough;
- JSON bodies: added time per response (µs), throughput, multiple of passthrough.

``summary`` uses the built-in extractive summariser. Times are the process's CPU time
(``time.process_time_ns``): the stage is CPU-bound, and CPU time barely moves when other work
shares the machine, unlike wall time. Target: at most 50 µs added per event.

No HTTP request is sent: every recording is shaped as a 200 response (``Non-2xx answers``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from bench._common import median
from gatekeeper.contract import ReasoningPolicy
from gatekeeper.dialects import Dialect, dialect_named
from gatekeeper.reasoning import Responder, ShapingOptions, SSEDecoder

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "streams"
MODES = ["passthrough", "full", "summary", "truncate", "redact", "drop"]
_DIALECTS = {
    "openai-chat": "openai_chat",
    "openai-responses": "openai_responses",
    "anthropic-messages": "anthropic_messages",
}


class Recording:
    """One recorded body, cut into the body messages an app would send."""

    def __init__(self, path: Path) -> None:
        self.name = path.stem
        dialect = dialect_named(_DIALECTS[path.name.split("__")[0]])
        assert dialect is not None
        self.dialect: Dialect = dialect
        self.body = path.read_bytes()
        self.streamed = path.suffix == ".sse"
        if self.streamed:
            frames = SSEDecoder().feed(self.body)
            self.chunks = [f.raw or b"" for f in frames]
            self.events = sum(1 for f in frames if f.dispatch)
        else:
            self.chunks = [self.body]
            self.events = 0
        self.content_type = b"text/event-stream" if self.streamed else b"application/json"


async def _discard(message: MutableMapping[str, Any]) -> None:
    return None


async def shape_once(recording: Recording, mode: str) -> int:
    """CPU nanoseconds to push the whole recording through a Responder in ``mode``."""
    shaper = None
    if mode != "passthrough":
        policy = ReasoningPolicy.model_validate({"mode": mode})
        shaper = recording.dialect.new_shaper(policy, ShapingOptions(keep=True))
    responder = Responder(_discard, shaper=shaper, extra_headers=[])
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", recording.content_type)],
    }
    last = len(recording.chunks) - 1
    began = time.process_time_ns()
    await responder(start)
    for position, chunk in enumerate(recording.chunks):
        await responder({"type": "http.response.body", "body": chunk, "more_body": position < last})
    return time.process_time_ns() - began


async def measure(recordings: list[Recording], rounds: int) -> dict[tuple[str, str], float]:
    """Median nanoseconds per (recording, mode), modes interleaved within every round."""
    samples: dict[tuple[str, str], list[int]] = defaultdict(list)
    for recording in recordings:  # warm-up: imports, caches, first-call costs
        for mode in MODES:
            await shape_once(recording, mode)
    for _ in range(rounds):
        for recording in recordings:
            for mode in MODES:
                samples[(recording.name, mode)].append(await shape_once(recording, mode))
    return {key: median(values) for key, values in samples.items()}


def _rows(
    recordings: list[Recording], times: dict[tuple[str, str], float], unit: str
) -> list[list[str]]:
    groups: dict[str, list[Recording]] = defaultdict(list)
    for recording in recordings:
        groups[recording.dialect.name].append(recording)
    groups["all"] = recordings
    rows = []
    for group, members in groups.items():
        size = sum(len(r.body) for r in members)
        count = sum(r.events for r in members) if unit == "event" else len(members)
        base = sum(times[(r.name, "passthrough")] for r in members)
        for mode in MODES[1:]:
            spent = sum(times[(r.name, mode)] for r in members)
            added_us = (spent - base) / count / 1000
            rows.append(
                [
                    group,
                    mode,
                    str(count),
                    f"{added_us:8.1f}",
                    f"{size / (spent / 1e9) / 1e6:8.1f}",
                    f"{spent / base:6.1f}x",
                ]
            )
    return rows


def _print(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i >= 2 else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shaping", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median)")
    args = parser.parse_args(argv)
    recordings = [Recording(p) for p in sorted(FIXTURES.iterdir()) if p.suffix in (".sse", ".json")]
    streams = [r for r in recordings if r.streamed]
    documents = [r for r in recordings if not r.streamed]
    times = asyncio.run(measure(recordings, args.rounds))
    events = sum(r.events for r in streams)
    size = sum(len(r.body) for r in streams)
    print(f"{len(streams)} recorded streams ({events} events, {size / 1e3:.0f} kB), "
          f"{len(documents)} JSON bodies; {args.rounds} interleaved rounds, medians")  # fmt: skip
    print("Non-2xx answers: none possible, no HTTP request is sent (every recording is shaped "
          "as a 200 response)")  # fmt: skip
    header = ["dialect", "mode", "events", "µs/event added", "MB/s", "vs passthrough"]
    _print("SSE streams", header, _rows(streams, times, "event"))
    header = ["dialect", "mode", "bodies", "µs/response added", "MB/s", "vs passthrough"]
    _print("JSON bodies", header, _rows(documents, times, "response"))


if __name__ == "__main__":
    main()
