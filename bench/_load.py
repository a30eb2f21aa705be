"""The load generator of the HTTP benchmarks (wrk with a Lua script) and what Redis counts.

wrk (Debian's) runs in its own process, one thread, so the other core serves. Its Lua script
sends the benchmark's request (a ``POST`` with its JSON body and headers) and prints wrk's
per-request latency percentiles in microseconds as one JSON line, with the request and error
counts and every status answered (``Load.answers``: a run with any but 2xx reports no figure).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import Answers, Child, free_port, spawn_server, wait_for_port
from bench._stack import QUOTA_SCALE

# Every response's status is counted by wrk's ``response`` callback, in the thread's Lua state
# (``statuses``); ``done`` runs in the main thread's, and reads each thread's table with
# ``thread:get``. wrk's own ``errors.status`` counts only statuses above 399; this counts every
# status, so that a 3xx or a 1xx is no more throughput than a 429. The callback costs wrk about
# 1 µs of CPU per response (measured: 13-16 µs per request with it and without).
_DONE = """
threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local e = summary.errors
  local counted = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      table.insert(counted, string.format('"%d": %d', status, n))
    end
  end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f, '
    .. '"statuses": {%s}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, table.concat(counted, ', ')))
end
"""


def _lua_string(text: str | bytes) -> str:
    raw = text.decode() if isinstance(text, bytes) else text
    return json.dumps(raw)  # a JSON string literal is a valid Lua string literal here


def lua_script(method: str, body: bytes, headers: Mapping[str, str]) -> str:
    """wrk's script: the request, and a ``done`` that prints the percentiles as JSON."""
    lines = [f"wrk.method = {_lua_string(method)}", f"wrk.body = {_lua_string(body)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _DONE


@dataclass(frozen=True)
class Load:
    """What one wrk run measured; latencies in milliseconds. ``answers``: every status
    answered, and how many requests got no answer (socket errors, timeouts)."""

    requests: int
    seconds: float
    answers: Answers
    p50: float
    p90: float
    p99: float
    p999: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class Wrk:
    """wrk with one Lua script, reused for every run of a benchmark."""

    def __init__(self, method: str, body: bytes, headers: Mapping[str, str]) -> None:
        binary = shutil.which("wrk")
        if binary is None:
            sys.exit("wrk is not installed (apt-get install wrk)")
        self.binary = binary
        handle, name = tempfile.mkstemp(suffix=".lua", prefix="bench-")
        os.write(handle, lua_script(method, body, headers).encode())
        os.close(handle)
        self.script = Path(name)

    def run(self, url: str, *, connections: int, seconds: float) -> Load:
        command = [
            self.binary, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "5s", "-s", str(self.script), url,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{out}")
        data = json.loads(line.removeprefix("BENCH "))
        return Load(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            answers=Answers(
                {int(status): n for status, n in data["statuses"].items()},
                unanswered=data["socket_errors"],
            ),
            p50=data["p50"] / 1000,
            p90=data["p90"] / 1000,
            p99=data["p99"] / 1000,
            p999=data["p999"] / 1000,
        )

    def close(self) -> None:
        self.script.unlink(missing_ok=True)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


async def redis_info_async(url: str) -> tuple[dict[str, int], float]:
    """``redis_info`` from inside an event loop."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        cpu = await client.info("cpu")
    finally:
        await client.aclose()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def redis_info(url: str) -> tuple[dict[str, int], float]:
    """Redis' command counts (``INFO commandstats``) and the CPU seconds it has used."""
    return asyncio.run(redis_info_async(url))


def command_deltas(
    before: dict[str, int], after: dict[str, int], requests: int
) -> dict[str, float]:
    """Commands per request between two ``redis_info`` counts (the INFO calls left out)."""
    return {
        name: (after[name] - before.get(name, 0)) / max(1, requests)
        for name in after
        if name != "info" and after[name] != before.get(name, 0)
    }


def monitor_scripts(url: str, seconds: float, during: Any) -> Counter[str]:
    """Commands Redis receives while ``during()`` runs (``MONITOR``), scripts named by SHA.

    MONITOR slows Redis: use it to see *which* commands a request sends, never for timing.
    """
    import threading

    import redis

    seen: Counter[str] = Counter()
    client = redis.Redis.from_url(url, socket_timeout=0.5)
    stop = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            while not stop.is_set():
                try:
                    entry = monitor.next_command()
                except (redis.TimeoutError, TimeoutError):
                    continue
                words = entry["command"].split()
                if not words:
                    continue
                name = words[0].upper()
                if name in ("EVALSHA", "EVAL") and len(words) > 1:
                    name = f"{name} {words[1][:12]}"
                seen[name] += 1

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.2)
    try:
        during()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(2)
        client.close()
    return seen


@contextmanager
def servers(module: str, names: list[str], *args: str) -> Iterator[dict[str, Child]]:
    """``python -m <module> serve <name> --port P <args>`` for every name, started together.

    Like ``bench._common.child_server``, but every server starts at once (gatekeeper takes a
    second or two to start: one after the other, four of them would take as long as a round).
    """
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name in names:
            port = free_port()
            command = [sys.executable, "-m", module, "serve", name, "--port", str(port), *args]
            procs[name] = (spawn_server(command), port)
        for proc, port in procs.values():
            wait_for_port(port, proc)
        yield {
            name: Child(f"http://127.0.0.1:{port}", proc.pid)
            for name, (proc, port) in procs.items()
        }
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


#: uvicorn's ``loop``/``http`` settings by ``--server``: what the whole-stack scenarios serve with.
SERVERS: dict[str, dict[str, str]] = {
    "auto": {"loop": "auto", "http": "auto"},
    "asyncio": {"loop": "asyncio", "http": "h11"},
}


def server_description(server: str) -> str:
    """What ``--server`` serves with here: ``auto`` is uvloop + httptools when installed."""
    if server == "asyncio":
        return "uvicorn on asyncio + h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn on {loop} + {http}"


def serve_options(redis_url: str, directory: Path, args: argparse.Namespace) -> list[str]:
    """The options each contender's ``serve`` process gets (see ``contender_cli``)."""
    linger = getattr(args, "linger", None)
    return [
        "--redis", redis_url, "--dir", str(directory), "--server", args.server,
        "--quota-scale", str(args.quota_scale),
        *(["--linger", str(linger)] if linger is not None else []),
    ]  # fmt: skip


def contender_cli(
    prog: str,
    description: str | None,
    contenders: list[str] | None,
    *,
    seconds: float,
    linger: bool = False,
) -> argparse.ArgumentParser:
    """The command line the whole-stack scenarios share: the options of a run, and the
    internal ``serve CONTENDER --port --redis --dir`` each contender's process is started with.
    A scenario adds its own options and applies its own ``--quick``; ``linger``: it takes
    ``--linger`` (gatekeeper's ``audit.linger_seconds``) too."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="(internal) serve one contender")
    serve_cmd.add_argument("contender", choices=contenders)  # None: any name
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--redis", required=True)
    serve_cmd.add_argument("--dir", type=Path, required=True)
    for command in (parser, serve_cmd):
        command.add_argument(
            "--quota-scale",
            type=int,
            default=QUOTA_SCALE,
            help=f"every quota of the pack (and slowapi's limit) multiplied by this "
            f"({QUOTA_SCALE:,}: nothing refused; 1: the pack as shipped, which refuses most of "
            "a benchmark's requests, so the run reports refusals and no throughput)",
        )
        command.add_argument(
            "--server",
            choices=list(SERVERS),
            default="auto",
            help="uvicorn's loop and HTTP parser: auto (uvloop + httptools, as gatekeeper "
            "installs it) or asyncio (the standard library's loop and h11)",
        )
        if linger:
            command.add_argument(
                "--linger",
                type=float,
                default=None,
                help="gatekeeper's audit.linger_seconds: how long its decision log's writer "
                "waits to seal events together (default: the setting's default)",
            )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"seconds per wrk run ({seconds:g})"
    )
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke test")
    return parser
