"""Traces: the submit of a job, and one trace per chunk delivery linked to that submit.

A chunk runs long after, and elsewhere than, the request that submitted its job, and a job has thousands of chunks:
as children of the submit they would make one enormous trace. Each chunk delivery is therefore a trace of its own
whose root span carries a Link to the submit span; the submit's context travels in the chunk message as a W3C
`traceparent`. Without a tracer provider installed these calls are the OpenTelemetry API's no-ops, and no
`traceparent` is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "imagepipe"
SUBMIT_SPAN = "imagepipe.submit_job"
CHUNK_SPAN = "imagepipe.chunk"

_tracer = trace.get_tracer(TRACER_NAME)
_propagator = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None when nothing is being traced."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def submit_span(tenant_id: str) -> Iterator[Span]:
    with _tracer.start_as_current_span(
        SUBMIT_SPAN, kind=SpanKind.INTERNAL, attributes={"imagepipe.tenant_id": tenant_id}
    ) as span:
        yield span


@contextmanager
def chunk_span(job_id: str, chunk: int, lane: str, delivery_count: int, traceparent: str | None) -> Iterator[Span]:
    """The root span of a chunk delivery's own trace, linked to the job's submit when the message names it."""
    links = []
    if traceparent:
        submitted = trace.get_current_span(_propagator.extract({"traceparent": traceparent})).get_span_context()
        if submitted.is_valid:
            links.append(Link(submitted, {"imagepipe.link": "submit"}))
    with _tracer.start_as_current_span(
        CHUNK_SPAN,
        context=otel_context.Context(),  # a new trace, not a child of whatever invoked the worker
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "imagepipe.job_id": job_id,
            "imagepipe.chunk": chunk,
            "imagepipe.lane": lane,
            "messaging.message.delivery_count": delivery_count,
        },
    ) as span:
        yield span
