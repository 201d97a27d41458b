"""One sample's trace: the edge's POST, the live agent's processing, the socket send.

The edge runs in this process and traces into an in-memory exporter; the live worker
is the real ``livecoach worker --app live`` process, configured as in production by
``OTEL_EXPORTER_OTLP_ENDPOINT``: its OTLP/HTTP exporter posts to a collector this test
runs on loopback, which decodes the protobuf export requests. The W3C context crosses
``samples`` and ``live`` as record headers; the three spans must form one trace with
POST -> live process -> ws send as parent links.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pipeline import tracing
from pipeline.embedded import free_port
from tests.test_agents_e2e import Workers
from tests.web.conftest import ATHLETE, Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Exported:
    """A span as the worker's OTLP exporter sent it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str


@pytest.fixture
def in_memory_spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[Exported]]]:
    """An OTLP/HTTP trace collector on loopback: (endpoint, spans received)."""
    received: list[Exported] = []

    async def export(request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in body.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes
                 if a.key == "service.name"), "",
            )  # fmt: skip
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Exported(
                            service, span.name, span.trace_id.hex(), span.span_id.hex(),
                            span.parent_span_id.hex(),
                        )
                    )  # fmt: skip
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}", received
    await runner.cleanup()


@pytest.fixture
def traced_worker(
    redis_url: str, database_url: str, collector: tuple[str, list[Exported]]
) -> Iterator[Workers]:
    workers = Workers(redis_url, database_url)  # 4 partitions, as the edge settings here
    workers.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector[0]
    workers.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # export within 0.1 s
    workers.start("live")
    yield workers
    workers.stop_all()


def _ids(span: ReadableSpan) -> tuple[str, str, str]:
    context = span.get_span_context()
    parent = span.parent.span_id if span.parent is not None else 0
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{parent:016x}"


async def _until(find: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def test_one_sample_is_one_trace_from_post_through_the_agent_to_the_socket(
    in_memory_spans: InMemorySpanExporter,
    collector: tuple[str, list[Exported]],
    traced_worker: Workers,
    edge_factory: Any,
) -> None:
    edge: Running = await edge_factory()  # after tracing.use(): the edge traces
    sid = await edge.start_session()
    ws = await edge.ws()
    await ws.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    samples = [{"t": time.time() - 3 + i, "heart_rate": 120.0 + i} for i in range(3)]
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{sid}/update"),
        headers=edge.headers(ATHLETE),
        json={"samples": samples},
    ) as resp:
        assert resp.status == 202, await resp.text()
    deadline = time.monotonic() + 60
    while True:
        frame = await ws.receive_json(timeout=deadline - time.monotonic())
        if frame["type"] == "metrics_update":
            break
    await ws.close()

    def named(name: str) -> list[ReadableSpan]:
        return [s for s in in_memory_spans.get_finished_spans() if s.name == name]

    assert not named("GET /api/v1/live/ws")  # a socket is no span: it lasts for hours
    (post,) = named("POST /api/v1/live/sessions/{id}/update")
    assert post.kind is SpanKind.SERVER
    assert post.attributes is not None
    assert post.attributes["http.response.status_code"] == 202
    trace_id, post_id, _ = _ids(post)

    spans = collector[1]
    (process,) = await _until(
        lambda: [s for s in spans if s.name == "live process" and s.trace_id == trace_id],
        15, "the live agent's span at the collector",
    )  # fmt: skip
    assert process.service == "livecoach-live"
    assert process.parent_span_id == post_id

    (send,) = await _until(lambda: named("ws send"), 5, "the socket send span")
    send_trace, _, send_parent = _ids(send)
    assert send_trace == trace_id
    assert send_parent == process.span_id
    print(f"trace {trace_id}: POST {post_id} -> live process {process.span_id} -> ws send")
