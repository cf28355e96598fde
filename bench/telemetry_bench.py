"""What the instrumentation costs a chunk worker: the per-image and per-chunk telemetry calls, timed with
OpenTelemetry off (the API's no-op proxies, OTEL_ENABLED=false) and on (the SDK with a metric reader and a span
processor, as the Azure Monitor distro installs them, minus the network export), next to what one image costs.

    .venv/bin/python -m bench.telemetry_bench
"""

from __future__ import annotations

import time
from collections.abc import Callable

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import metrics as pipeline_metrics
from shared.config import Lane
from shared.messages import chunk_message
from shared.models import ChunkMessage, ImageRef, JobOptions
from shared.tracing import chunk_span, submit_span

CALLS = 200_000
CHUNKS = 20_000


def _per_call_us(fn: Callable[[], None], calls: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def _image() -> None:
    pipeline_metrics.image_recorded("standard", None)


def _failed_image() -> None:
    pipeline_metrics.image_recorded("standard", "fetch_http_error")


def _chunk(traceparent: str | None) -> Callable[[], None]:
    def run() -> None:
        pipeline_metrics.chunk_waited("standard", False, 0.5)
        with chunk_span("jbench", 1, "standard", 1, traceparent):
            pass
        pipeline_metrics.chunk_delivery_ended("standard", False, "finished", 1.0)

    return run


def _measure(label: str) -> None:
    message = ChunkMessage(
        job_id="jbench",
        tenant_id="tbench",
        chunk=0,
        lane=Lane.STANDARD,
        options=JobOptions(),
        images=[ImageRef(index=0, kind="url", ref="https://example.com/a.jpg")],
    )
    with submit_span("tbench"):
        traceparent = ChunkMessage.model_validate_json(chunk_message(message, 1).body).traceparent
    print(f"{label}:")
    print(f"  per image (succeeded)        {_per_call_us(_image, CALLS):7.2f} µs")
    print(f"  per image (failed, 2 counts) {_per_call_us(_failed_image, CALLS):7.2f} µs")
    print(f"  per chunk delivery (span, 2 histograms) {_per_call_us(_chunk(traceparent), CHUNKS):7.2f} µs")
    print(f"  chunk message carries a traceparent: {traceparent is not None}")


def main() -> None:
    _measure("OpenTelemetry off (API no-op proxies)")
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    _measure("OpenTelemetry SDK on (in-memory reader and exporter)")
    print("for scale: bench/imaging_bench.py times the image work itself (milliseconds an image)")


if __name__ == "__main__":
    main()
