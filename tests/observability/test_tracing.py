"""OpenTelemetry spans per stage, recorded with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Receive, Scope, Send

from gatekeeper.observability import Tracing
from gatekeeper.offline.demo.model_server import create_model_app
from tests.observability.conftest import Factory, Protected
from tests.servers import DEMO_CONFIG, ROOT

STAGES = {"identify", "inspect", "locate", "policy", "quota", "app", "log"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def traced(p: Protected, exporter: InMemorySpanExporter) -> None:
    # A provider of the test's own: the global one is left alone (it can only be set once).
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    p.gk.observability.tracing.use_provider(provider)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_one_span_per_stage_under_the_request_span(
    protected: Factory, exporter: InMemorySpanExporter
) -> None:
    async with protected() as p:
        traced(p, exporter)
        response = await p.chat("gk-demo-pro")
    decision_id = response.headers["x-gatekeeper-decision-id"]
    spans = by_name(exporter.get_finished_spans())
    root = spans.pop("gatekeeper POST")
    assert {name.removeprefix("gatekeeper.") for name in spans} >= STAGES
    assert root.attributes is not None
    assert root.attributes["gatekeeper.decision_id"] == decision_id
    assert root.attributes["gatekeeper.outcome"] == "allow"
    assert root.attributes["http.response.status_code"] == 200
    assert root.kind == trace.SpanKind.SERVER
    for span in spans.values():
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.attributes is not None
        assert span.attributes["gatekeeper.decision_id"] == decision_id
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time


async def test_a_refusal_has_only_the_stages_it_went_through(
    protected: Factory, exporter: InMemorySpanExporter
) -> None:
    async with protected() as p:
        traced(p, exporter)
        await p.chat(None)
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"gatekeeper POST", "gatekeeper.identify", "gatekeeper.log"}
    attributes = spans["gatekeeper POST"].attributes
    assert attributes is not None
    assert (attributes["gatekeeper.outcome"], attributes["gatekeeper.reason"]) == (
        "reject",
        "missing_api_key",
    )


async def test_the_callers_trace_context_is_the_parent(
    protected: Factory, exporter: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_id = "00f067aa0ba902b7"
    headers = {
        "Authorization": "Bearer gk-demo-pro",
        "traceparent": f"00-{trace_id}-{parent_id}-01",
    }
    async with protected() as p:
        traced(p, exporter)
        await p.client.get("/v1/models", headers=headers)
    root = by_name(exporter.get_finished_spans())["gatekeeper GET"]
    assert format(root.context.trace_id, "032x") == trace_id
    assert root.parent is not None and format(root.parent.span_id, "016x") == parent_id


async def test_the_app_runs_inside_the_request_span(
    protected: Factory, exporter: InMemorySpanExporter
) -> None:
    seen: list[Any] = []
    model = create_model_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(trace.get_current_span().get_span_context())
        await model(scope, receive, send)

    async with protected(app=app) as p:
        traced(p, exporter)
        await p.chat("gk-demo-pro")
    root = by_name(exporter.get_finished_spans())["gatekeeper POST"]
    assert seen == [root.context]


async def test_tracing_can_be_turned_off(
    protected: Factory, exporter: InMemorySpanExporter
) -> None:
    async with protected(observability={"tracing": False}) as p:
        traced(p, exporter)
        await p.chat("gk-demo-pro")
    assert exporter.get_finished_spans() == ()


def test_without_an_sdk_nothing_is_traced() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert Tracing().active is False


GLOBAL_SDK = """
import asyncio, httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from gatekeeper.offline.demo.app import create_demo_app

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

async def main():
    app = create_demo_app(CONFIG, audit={"path": LOG}, policy={"check": False})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/models", headers={"Authorization": "Bearer gk-demo-pro"})
    decision_id = response.headers["x-gatekeeper-decision-id"]
    for span in exporter.get_finished_spans():
        assert span.attributes["gatekeeper.decision_id"] == decision_id
        print(span.name)

asyncio.run(main())
"""


def test_an_sdk_installed_globally_is_used(tmp_path: Path) -> None:
    """The usual set-up: the app installs the SDK's provider; gatekeeper finds it."""
    script = GLOBAL_SDK.replace("CONFIG", repr(str(DEMO_CONFIG))).replace(
        "LOG", repr(str(tmp_path / "decisions.jsonl"))
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = set(result.stdout.splitlines())
    assert {"gatekeeper GET", "gatekeeper.identify", "gatekeeper.policy", "gatekeeper.app"} <= names
