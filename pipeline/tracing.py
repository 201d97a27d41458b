"""OpenTelemetry tracing of a sample: edge POST -> live agent -> socket send.

Off by default, and then nearly free: :func:`tracer` is None and the hot paths test
that once. On when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and ``OTEL_SDK_DISABLED`` is not
``true``: :func:`configure` (called once at start by ``livecoach web`` and
``livecoach worker``) installs an SDK tracer provider with a batching OTLP/HTTP
exporter that reads the other standard ``OTEL_*`` variables (headers, timeout,
``OTEL_SERVICE_NAME``). Tests install a provider with an in-memory exporter
(:func:`use`).

The context crosses the streams as a W3C ``traceparent`` record header
(:data:`TRACEPARENT`): the edge writes it on the ``samples`` record, the live agent
continues the trace and writes its own span's on the ``live`` events it publishes, the
edge's socket writer continues it when it sends the event. A record without the header
(older producers, tracing off) simply starts no span.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: Record header carrying the W3C trace context (``00-<trace>-<span>-<flags>``).
TRACEPARENT = "traceparent"
#: Instrumentation scope of livecoach's spans.
SCOPE = "livecoach"

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: Any = None


def tracer() -> trace.Tracer | None:
    """The tracer while tracing is on, else None (the check the hot paths make)."""
    return _tracer


def use(provider: trace.TracerProvider | None) -> None:
    """Trace with ``provider`` from now on (None: tracing off). Tests pass an SDK
    provider with an in-memory exporter."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None


def configured() -> bool:
    """Whether the environment asks for OTLP export (see the module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(service: str) -> bool:
    """Turn tracing on with the OTLP/HTTP exporter if the environment asks for it.

    ``service`` names the process (``livecoach-web``, ``livecoach-live``) unless
    ``OTEL_SERVICE_NAME`` does. Returns whether tracing is now on.
    """
    if not configured():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)
    return True


def shutdown() -> None:
    """Export what is buffered and stop (at process exit)."""
    provider = _provider
    use(None)
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()


def traceparent(span: trace.Span) -> bytes:
    """The ``traceparent`` header value naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier[TRACEPARENT].encode()


def parent_context(header: bytes | str | None) -> Context | None:
    """The context a ``traceparent`` header names; None without a (valid) one."""
    if not header:
        return None
    text = header.decode() if isinstance(header, bytes) else header
    context = _propagator.extract({TRACEPARENT: text})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def log_fields() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span, for log lines (none if off)."""
    if _tracer is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
