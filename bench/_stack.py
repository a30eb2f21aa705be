"""The whole stack the stack, scale, memory, streaming and profile benchmarks serve.

One hello-world model API (Starlette; ``POST /v1/chat/completions`` answering a short chat
completion with its usage, in JSON, or as an SSE stream when asked) and gatekeeper in front of
it as a user would deploy it: the embedded engine with the default policy pack, the file
subject store, GeoIP from the demo's database, signals, continuity, observability and the
chained, signed JSONL decision log, all at their defaults.

The pack is the default one, copied with one change: every quota's capacity and rate are
multiplied by a million (``QUOTA_SCALE``), so that a benchmark's thousands of requests per
second from one subject measure checking quotas, not being refused by them. Rules, data lookups
and the number of quotas are unchanged, so evaluation costs what it costs in production. The
whole-stack scenarios' ``--quota-scale 1`` serves the pack's quotas as shipped instead: most
requests are then refused, and the scenario reports refusals, not throughput.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PATH = "/v1/chat/completions"
API_KEY = "gk-bench-pro"
#: A German residential address in the demo's GeoIP data, forwarded by a trusted local proxy.
FORWARDED_FOR = "192.0.2.7"
HEADERS = {
    "content-type": "application/json",
    "authorization": f"Bearer {API_KEY}",
    "x-forwarded-for": FORWARDED_FOR,
    "user-agent": "OpenAI/Python 1.50.0",
}
REQUEST = {
    "model": "demo-reasoner",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello to the world."},
    ],
    "max_tokens": 16,
}
BODY = orjson.dumps(REQUEST)
SUBJECTS = f"""[[subjects]]
key = "{API_KEY}"
id = "bench-pro"
org = "bench-org"
tier = "pro"
kyc_level = "government_id"
account_created = "2025-06-01"

[[subjects]]
key = "gk-bench-enterprise"
id = "bench-enterprise"
org = "bench-org-enterprise"
tier = "enterprise"
kyc_level = "business"
account_created = "2024-03-15"

[[subjects]]
key = "gk-bench-free"
id = "bench-free"
org = "bench-org-free"
tier = "free"
kyc_level = "email"
account_created = "2025-01-10"
"""
#: The reasoning mode the default pack gives each bench subject's tier.
KEYS_BY_MODE = {"full": "gk-bench-enterprise", "summary": API_KEY, "drop": "gk-bench-free"}
QUOTA_SCALE = 1_000_000
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "demo-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 4, "total_tokens": 18},
    }
)


def _scale_quotas(node: Any, scale: int) -> None:
    """Multiply every quota's capacity and rate, wherever the data holds one."""
    if isinstance(node, dict):
        if "capacity" in node and "unit" in node:
            node["capacity"] = int(node["capacity"]) * scale
            if "rate" in node:
                node["rate"] = node["rate"] * scale
        for value in node.values():
            _scale_quotas(value, scale)
    elif isinstance(node, list):
        for value in node:
            _scale_quotas(value, scale)


def bench_pack(directory: Path, quota_scale: int = QUOTA_SCALE) -> Path:
    """The default pack copied into ``directory`` with quotas no benchmark exhausts (every
    quota multiplied by ``quota_scale``)."""
    target = directory / "policies"
    shutil.copytree(ROOT / "policies", target, dirs_exist_ok=True)
    for data in (target / "gatekeeper" / "config").rglob("data.json"):
        document = json.loads(data.read_text())
        _scale_quotas(document, quota_scale)
        data.write_text(json.dumps(document, indent=1))
    return target


def bench_settings(
    directory: Path,
    storage: str = "memory://",
    quota_scale: int = QUOTA_SCALE,
    audit: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """gatekeeper's settings for the benchmark, everything kept under ``directory``;
    ``audit``: more settings of the decision log (e.g. ``{"sealer": "process"}``)."""
    from gatekeeper import Settings

    directory.mkdir(parents=True, exist_ok=True)
    pack = directory / "policies"
    if not pack.exists():
        bench_pack(directory, quota_scale)
    subjects = directory / "subjects.toml"
    subjects.write_text(SUBJECTS)
    demo = ROOT / "examples" / "demo"
    return Settings(
        identity={"store": "file", "subjects_file": subjects},
        network={
            "trusted_proxies": ["127.0.0.1"],
            "geoip_source": demo / "geo" / "demo-geo.yaml",
            "geoip_database": directory / "demo-geo.mmdb",
        },
        # The pack's tests ran in `make test`; running them again at every start of every
        # contender would only make the benchmark slower to start.
        policy={"path": pack, "check": False},
        quota={"storage": storage, "timeout": 0.5},
        audit={
            "path": directory / "log" / "decisions.jsonl",
            "labels": {"app": "bench"},
            **(audit or {}),
        },
        **overrides,
    )


async def chat(request: Any) -> Any:
    """The hello-world model: reads the request, answers a fixed completion (or a stream)."""
    from starlette.responses import Response, StreamingResponse

    body = orjson.loads(await request.body())
    if body.get("stream"):
        events = int(request.headers.get("x-bench-events", "200"))
        pause = float(request.headers.get("x-bench-pause-ms", "0")) / 1000
        return StreamingResponse(sse_events(events, pause), media_type="text/event-stream")
    return Response(ANSWER, media_type="application/json")


async def sse_events(count: int, pause: float) -> Any:
    """A reasoning model's stream: role, ``count`` reasoning deltas, an answer, usage, done.

    ``pause`` seconds between events stand for the model's time per token.
    """

    def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}
        document = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1767225600,
            "model": "demo-reasoner",
            "choices": [choice] if delta is not None else [],
            **extra,
        }
        return b"data: " + orjson.dumps(document) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for i in range(count):
        if pause:
            await asyncio.sleep(pause)
        yield chunk({"reasoning_content": f" step {i} of the reasoning,"})
    yield chunk({"content": "Hello, world!"}, finish="stop")
    usage = {"prompt_tokens": 14, "completion_tokens": count * 6 + 4}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    yield chunk(None, usage=usage)  # type: ignore[arg-type]
    yield b"data: [DONE]\n\n"


def hello_app() -> Any:
    """The bare model API: a Starlette app with one route."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    return Starlette(routes=[Route(PATH, chat, methods=["POST"])])


def protected_app(settings: Any) -> Any:
    """The same app behind ``GatekeeperMiddleware``."""
    from starlette.middleware import Middleware

    from gatekeeper import GatekeeperMiddleware

    app = hello_app()
    app.user_middleware.insert(0, Middleware(GatekeeperMiddleware, settings=settings))
    return app


#: The floor's Redis call: one script, one key, one reply (gatekeeper's own check runs more).
FLOOR_SCRIPT = "return redis.call('INCR', KEYS[1])"


def floor_app(redis_url: str, directory: Path, quota_scale: int = QUOTA_SCALE) -> Any:
    """The same app behind the least any policy-enforcing rate limiter must do per request: one
    Redis script call through redis-py (with hiredis, as gatekeeper uses it) and one verdict of
    the default pack by the embedded engine (a fixed input document: nothing built, nothing
    logged, no identity, no address, no shaping). What the issue calls the floor; a bound on
    how close to the bare app any gatekeeper in Python can get."""
    import redis.asyncio as redis_asyncio

    from gatekeeper.policy.conformance import sample_input
    from gatekeeper.policy.embedded import EmbeddedEngine
    from gatekeeper.policy.repo import load_policy

    directory.mkdir(parents=True, exist_ok=True)
    engine = EmbeddedEngine(load_policy(bench_pack(directory, quota_scale)), check=False)
    document = sample_input()
    app = hello_app()
    # EVALSHA, loading the script on the first NOSCRIPT (redis-py's Script does that). One
    # connection per request in flight: redis-py 8's pool refuses past 100 by default
    # (MaxConnectionsError), which at wrk -c128 answered the floor's requests 500.
    client = redis_asyncio.from_url(redis_url, max_connections=1024)
    script = client.register_script(FLOOR_SCRIPT)

    async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await script(keys=["bench:floor"])
            verdict = await engine.verdict(document)
            if not verdict.decision.allow:
                raise RuntimeError("the floor's fixed input must be allowed")
        await app(scope, receive, send)

    return floor


def slowapi_app(redis_url: str, quota_scale: int = QUOTA_SCALE) -> Any:
    """The same app behind slowapi: ``limits`` on Redis, one limit (1,000 a minute, times
    ``quota_scale``), keyed by the API key."""
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from starlette.applications import Starlette
    from starlette.routing import Route

    limiter = Limiter(
        key_func=lambda request: request.headers.get("authorization", "anonymous"),
        storage_uri=redis_url,
        key_prefix="slowapi",
    )

    limited = limiter.limit(f"{quota_scale * 1000}/minute")(chat)
    app = Starlette(routes=[Route(PATH, limited, methods=["POST"])])
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    return app


# --- driving an ASGI app in-process (memory and profile benchmarks) ----------------------------


def http_scope(headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The scope of one ``POST /v1/chat/completions`` from a local client."""
    sent = {**HEADERS, **(headers or {})}
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()]
        + [(b"content-length", str(len(BODY)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any, template: dict[str, Any], body: bytes = BODY) -> int:
    """One request through ``app`` without a server; its status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app({**template, "headers": list(template["headers"])}, receive, send)
    # A server runs each request as a task: between two of them the event loop runs what is
    # due (the decision log's hand-off to its writer thread, signal flushes). A loop of awaits
    # that never suspends would starve those, and the log would drop events.
    await asyncio.sleep(0)
    return status


def gatekeeper_of(app: Any) -> Any:
    """The ``Gatekeeper`` of an app built by ``protected_app`` (after its first request)."""
    layer = app.middleware_stack
    while layer is not None and not hasattr(layer, "gk"):
        layer = getattr(layer, "app", None)
    if layer is None:
        raise LookupError("no GatekeeperMiddleware in this app (has it served a request?)")
    return layer.gk


class Lifespan:
    """Runs an app's ASGI lifespan (start-up on enter, shutdown on exit) in-process."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(
            self.app(scope, self._inbox.get, self._outbox.put)  # type: ignore[arg-type]
        )
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"start-up failed: {message}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        if self._task is not None:
            await self._task
