"""Streaming over HTTP, shaped vs passed through: `python -m bench.streaming`.

The hello-world model API of ``bench.stack`` answers ``"stream": true`` with a reasoning
model's SSE stream (a role event, ``--events`` reasoning deltas, the answer, usage, ``[DONE]``)
and is served by uvicorn twice: alone (``bare``: the stream passed through untouched) and
behind gatekeeper (in-memory quotas, the default pack, the chained log), where the pack's tiers
pick the shaping: ``full`` (enterprise: every byte kept, usage read), ``summary`` (pro:
reasoning withheld, a summary sent when the reasoning ends), ``drop`` (free: reasoning removed).

The client is this process: one HTTP/1.1 request at a time on a raw socket, so its own cost is
the same few microseconds for every contender. Two phases, contenders interleaved, medians:

1. **time to first byte** with the model pacing its events (``--pause-ms`` between events, a
   model's time per token): the first body byte's arrival after the request was sent, its
   growth over ``bare``, and that growth in events (growth / pause). gatekeeper's request path
   (identity, policy, quotas) is part of the growth: the same as any request's added latency
   (``bench.stack``), shown apart as "JSON" for comparison;
2. **per event** with no pause (the stream as fast as the server makes it): long streams
   against short ones, so that what a stream pays once (the request path) cancels out; the
   client's time and the server's CPU per event, less ``bare``'s.

Targets: shaping at most 50 µs per event; time to first byte grown by at most one event.

Every answer's status is counted per contender (``Non-2xx answers``, warm-up included): a
refused request's first byte is no stream's, so if any answer was not 2xx the tables are not
printed (each such contender's count and statuses are) and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench._common import Answers, exit_if_refused, median, report_answers
from bench._load import load_average, process_cpu, servers
from bench._stack import HEADERS, KEYS_BY_MODE, PATH, REQUEST

MODULE = "bench.streaming"
CONTENDERS = ["bare", "full", "summary", "drop"]
#: Every status each contender answered, over both phases and the warm-up.
ANSWERS = {name: Answers() for name in CONTENDERS}


def serve(contender: str, port: int, directory: Path) -> None:
    import uvicorn

    from bench._stack import bench_settings, hello_app, protected_app

    app = (
        hello_app() if contender == "bare" else protected_app(bench_settings(directory / contender))
    )
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, proxy_headers=False
    )


def request_bytes(host: str, mode: str, events: int, pause_ms: float, stream: bool) -> bytes:
    body = orjson.dumps({**REQUEST, "stream": stream, "max_tokens": 4096})
    headers = {
        **HEADERS,
        "authorization": f"Bearer {KEYS_BY_MODE.get(mode, KEYS_BY_MODE['full'])}",
        "host": host,
        "connection": "close",
        "content-length": str(len(body)),
        "x-bench-events": str(events),
        "x-bench-pause-ms": str(pause_ms),
    }
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {PATH} HTTP/1.1\r\n{head}\r\n".encode() + body


async def fetch(url: str, payload: bytes) -> tuple[float, float, int, int]:
    """(time to first body byte, time to the last byte, status, body bytes) of one request."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.perf_counter()
    writer.write(payload)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    while not rest:  # the first byte of the body (a chunk-size line, then the event)
        rest = await reader.read(65536)
        if not rest:
            break
    first = time.perf_counter() - started
    size = len(rest)
    while chunk := await reader.read(65536):
        size += len(chunk)
    writer.close()
    return first, time.perf_counter() - started, status, size


async def paced_phase(
    children: dict[str, Any], args: argparse.Namespace, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Time to first byte of short paced streams, and the time of a JSON request, in ms."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for round_no in range(rounds):
        order = CONTENDERS[round_no % 4 :] + CONTENDERS[: round_no % 4]
        for name in order:
            child = children[name]
            host = urlsplit(child.url).netloc
            # The first bytes are all this phase needs: a short stream says as much as a long one.
            streamed = request_bytes(host, name, 20, args.pause_ms, True)
            first, _, status, _ = await fetch(child.url, streamed)
            ANSWERS[name].count(status)
            out[name]["ttfb"].append(first * 1e3)
            plain = request_bytes(host, name, 0, 0, False)
            first, _, status, _ = await fetch(child.url, plain)
            ANSWERS[name].count(status)
            out[name]["json"].append(first * 1e3)
    return out


async def fast_phase(
    children: dict[str, Any], args: argparse.Namespace, rounds: int
) -> dict[str, dict[str, float]]:
    """Per event, from the difference between long and short streams (so the request path,
    paid once per stream, cancels out): wall µs from the client, CPU µs of the server."""
    short = 20
    walls: dict[tuple[str, int], list[float]] = defaultdict(list)
    cpus: dict[tuple[str, int], float] = defaultdict(float)
    sizes: dict[str, int] = {}
    for round_no in range(rounds):
        order = CONTENDERS[round_no % 4 :] + CONTENDERS[: round_no % 4]
        for name in order:
            child = children[name]
            host = urlsplit(child.url).netloc
            for events in (short, args.events):
                cpu = process_cpu(child.pid)
                _, total, status, size = await fetch(
                    child.url, request_bytes(host, name, events, 0, True)
                )
                cpus[(name, events)] += process_cpu(child.pid) - cpu
                walls[(name, events)].append(total)
                ANSWERS[name].count(status)
                if events == args.events:
                    sizes[name] = size
    extra = args.events - short
    return {
        name: {
            "wall_us": (median(walls[(name, args.events)]) - median(walls[(name, short)]))
            / extra
            * 1e6,
            "cpu_us": (cpus[(name, args.events)] - cpus[(name, short)]) / (rounds * extra) * 1e6,
            "kb": sizes[name] / 1e3,
        }
        for name in CONTENDERS
    }


def report(
    paced: dict[str, Any], fast: dict[str, dict[str, float]], args: argparse.Namespace
) -> None:
    def med(name: str, key: str) -> float:
        return median(paced[name][key])

    print(f"\n1. Time to first byte, the model pausing {args.pause_ms:g} ms between events "
          f"(medians of {args.ttfb_rounds} streams, ms)")  # fmt: skip
    print(f"{'contender':<10}{'TTFB':>8}{'+TTFB':>8}{'JSON':>8}{'+JSON':>8}"
          f"{'+TTFB-+JSON':>13}{'in events':>10}")  # fmt: skip
    for name in CONTENDERS:
        grown = med(name, "ttfb") - med("bare", "ttfb")
        path = med(name, "json") - med("bare", "json")
        beyond = grown - path
        print(f"{name:<10}{med(name, 'ttfb'):>8.3f}{grown:>+8.3f}{med(name, 'json'):>8.3f}"
              f"{path:>+8.3f}{beyond:>+13.3f}{beyond / args.pause_ms:>+10.2f}")  # fmt: skip
    print(
        "(JSON: first byte of a JSON answer, the same request path; +TTFB-+JSON: what streaming and"
    )
    print(" shaping add to the first byte beyond it, also in events of the model's pace)")
    print(f"\n2. Per event, streams of {args.events} events vs 20 as fast as the server sends "
          f"them ({args.rounds} rounds)")  # fmt: skip
    print(f"{'contender':<10}{'wall µs/event':>14}{'added':>8}{'server CPU µs/event':>20}"
          f"{'added':>8}{'kB sent':>9}")  # fmt: skip
    bare = fast["bare"]
    for name in CONTENDERS:
        m = fast[name]
        wall, cpu = m["wall_us"], m["cpu_us"]
        print(f"{name:<10}{wall:>14.1f}{wall - bare['wall_us']:>+8.1f}"
              f"{cpu:>20.1f}{cpu - bare['cpu_us']:>+8.1f}{m['kb']:>9.1f}")  # fmt: skip
    print(f"\n{load_average()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="(internal) serve one contender")
    serve_cmd.add_argument("contender", choices=CONTENDERS)
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--events", type=int, default=1000, help="events of a long stream")
    parser.add_argument("--pause-ms", type=float, default=2.0, help="pause per event (2 ms)")
    parser.add_argument("--ttfb-rounds", type=int, default=40, help="paced streams each (40)")
    parser.add_argument("--rounds", type=int, default=15, help="fast streams each (15)")
    parser.add_argument("--quick", action="store_true", help="a few short streams")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.contender, args.port, args.dir)
        return
    if args.quick:
        args.events, args.ttfb_rounds, args.rounds = 100, 2, 2
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sse-")))
        children = stack.enter_context(servers(MODULE, CONTENDERS, "--dir", str(directory)))
        print(f"bench.streaming: {args.events} reasoning events per stream; {load_average()}")

        async def both() -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
            await fast_phase(children, args, 1)  # warm-up
            return (
                await paced_phase(children, args, args.ttfb_rounds),
                await fast_phase(children, args, args.rounds),
            )

        first_bytes, per_event = asyncio.run(both())
    if refused := report_answers(ANSWERS, "every request, the warm-up included"):
        for name in refused:
            print(f"{name}: {ANSWERS[name].refusal()}")
        print("Time to first byte and per-event figures: not reported")
        exit_if_refused("bench.streaming", refused)
    report(first_bytes, per_event, args)


if __name__ == "__main__":
    main()
