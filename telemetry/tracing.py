"""OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it.

On (``OTEL_TRACES_EXPORTER=otlp`` or an ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``; OTLP
over HTTP, so Jaeger, Tempo or any collector can receive it): Django requests and
database calls are traced, and an execution's life is one trace: ``execution.enqueue``
(inside the request or schedule firing that queued it), then ``execution.claim`` and
``execution.run`` in the agent, parented through the W3C ``traceparent`` stored on the
execution. The trace id is stored on the execution and shown in the admin."""

import os
from contextlib import contextmanager

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_configured = False
tracer = trace.get_tracer("hodei")


def tracing_requested() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        exporter
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_tracing(service: str, *, exporter=None, instrument_django: bool = True) -> bool:
    """Install the SDK for this process if asked to (or given an ``exporter``, as tests
    do with the in-memory one). Returns whether tracing is on. ``instrument_django``
    False: no Django or database instrumentation (the HTTP agent, which has neither)."""
    global _configured
    if _configured:
        return True
    if exporter is None and not tracing_requested():
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"hodei-{service}")}
    )
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if instrument_django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

        DjangoInstrumentor().instrument()
        PsycopgInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
        # The embedded SQLite database of `make run` is traced the same way.
        SQLite3Instrumentor().instrument()
    _configured = True
    return True


def current_ids() -> tuple[str, str]:
    """(trace id, traceparent) of the current span, or ("", "") when not tracing."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return "", ""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return format(span_context.trace_id, "032x"), carrier.get("traceparent", "")


@contextmanager
def continue_trace(traceparent: str, name: str, **attributes):
    """A span in the trace that ``traceparent`` names (an execution's), or a no-op."""
    if not traceparent:
        yield None
        return
    parent = _propagator.extract({"traceparent": traceparent})
    token = context.attach(parent)
    try:
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        context.detach(token)


def start_span_in(traceparent: str, name: str, **attributes):
    """Start (and return, unended) a span in an execution's trace: the agent's
    ``execution.run`` lasts from claim to settle across loop steps."""
    if not traceparent:
        return None
    parent = _propagator.extract({"traceparent": traceparent})
    return tracer.start_span(name, context=parent, attributes=attributes)


def record_span(traceparent: str, name: str, *, start, end, **attributes) -> None:
    """A span of the past (``start`` to ``end``, aware datetimes) in the trace that
    ``traceparent`` names, or nothing when not tracing: a pipeline run's whole life,
    recorded when it ends."""
    if not traceparent or end is None:
        return
    parent = _propagator.extract({"traceparent": traceparent})
    span = tracer.start_span(
        name, context=parent, attributes=attributes, start_time=int(start.timestamp() * 1e9)
    )
    span.end(end_time=int(end.timestamp() * 1e9))
