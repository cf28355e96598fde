"""The OpenTelemetry SDK with in-memory exporters, installed once per test process as the global providers (the
API allows setting them once), so the app's instruments and tracer report into them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass(frozen=True)
class Telemetry:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[Any]:
        """Every data point of the metric called `name` (cumulative since the process installed the SDK)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a counter's points (or of a histogram's counts) whose attributes include these."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def finished_spans(self, name: str, **attributes: Any) -> list[ReadableSpan]:
        """The finished spans called `name` whose attributes include these."""
        return [
            span
            for span in self.spans.get_finished_spans()
            if span.name == name and all(attribute(span, k) == v for k, v in attributes.items())
        ]


def attribute(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


@cache
def installed() -> Telemetry:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    assert isinstance(metrics.get_meter_provider(), MeterProvider), "another meter provider was installed first"
    assert trace.get_tracer_provider() is tracer_provider, "another tracer provider was installed first"
    return Telemetry(reader, spans)
