"""The pure wiring of metrics and traces: instruments report under their documented names, a chunk message sent
inside a submit carries its trace context, and a chunk's span starts a new trace linked to that submit."""

from __future__ import annotations

import pytest

from shared import metrics
from shared.config import Lane
from shared.messages import chunk_message, expand_message
from shared.models import ChunkMessage, ExpandMessage, ImageRef, JobOptions
from shared.tracing import CHUNK_SPAN, SUBMIT_SPAN, chunk_span, submit_span
from tests.telemetry.capture import Telemetry, attribute, installed


@pytest.fixture()
def telemetry() -> Telemetry:
    found = installed()
    found.spans.clear()
    return found


def _chunk(traceparent: str | None = None) -> ChunkMessage:
    return ChunkMessage(
        job_id="jwiring",
        tenant_id="twiring",
        chunk=0,
        lane=Lane.HIGH,
        options=JobOptions(),
        images=[ImageRef(index=0, kind="url", ref="https://example.com/a.jpg")],
        traceparent=traceparent,
    )


def test_a_chunk_sent_inside_a_submit_carries_its_trace_context(telemetry: Telemetry) -> None:
    outside = ChunkMessage.model_validate_json(chunk_message(_chunk(), 1).body)
    assert outside.traceparent is None  # nothing traced: the message is as it was

    with submit_span("twiring") as span:
        inside = ChunkMessage.model_validate_json(chunk_message(_chunk(), 1).body)
        expand = ExpandMessage.model_validate_json(
            expand_message(ExpandMessage(job_id="j", tenant_id="t", manifest_blob="t/m.txt")).body
        )
    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert inside.traceparent == expected and expand.traceparent == expected
    # A message that already names its submit (a manifest's chunks) keeps it.
    kept = ChunkMessage.model_validate_json(chunk_message(_chunk(traceparent=expected), 1).body)
    assert kept.traceparent == expected


def test_a_chunk_span_is_a_new_trace_linked_to_the_submit(telemetry: Telemetry) -> None:
    with submit_span("twiring"):
        traceparent = ChunkMessage.model_validate_json(chunk_message(_chunk(), 1).body).traceparent
        with chunk_span("jwiring", 0, "high", 1, traceparent):
            pass  # even started inside the submit, the chunk is not its child
    [submit] = telemetry.finished_spans(SUBMIT_SPAN)
    [chunk] = telemetry.finished_spans(CHUNK_SPAN)
    assert chunk.parent is None and chunk.context.trace_id != submit.context.trace_id
    [link] = chunk.links
    assert link.context.trace_id == submit.context.trace_id and link.context.span_id == submit.context.span_id
    assert attribute(chunk, "imagepipe.job_id") == "jwiring"


def test_instruments_report_under_their_documented_names(telemetry: Telemetry) -> None:
    before = telemetry.total(metrics.IMAGES_FAILED, lane="bulk", error_code="wiring_test")
    metrics.image_recorded("bulk", "wiring_test")
    metrics.image_recorded("bulk", None)
    assert telemetry.total(metrics.IMAGES_FAILED, lane="bulk", error_code="wiring_test") == before + 1
    assert telemetry.total(metrics.IMAGES_PROCESSED, lane="bulk", outcome="succeeded") >= 1

    metrics.lane_depths_read({"chunks-bulk": {"active": 7, "scheduled": 0, "dead_letter": 2}})
    depth = {
        (p.attributes["queue"], p.attributes["state"]): p.value
        for p in telemetry.points(metrics.LANE_DEPTH)
        if p.attributes["queue"] == "chunks-bulk"
    }
    assert depth == {("chunks-bulk", "active"): 7, ("chunks-bulk", "scheduled"): 0, ("chunks-bulk", "dead_letter"): 2}


def test_stale_lane_depths_are_not_reported(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics.lane_depths_read({"chunks-high": {"active": 3}})
    monkeypatch.setattr(metrics, "LANE_DEPTH_MAX_AGE_SECONDS", -1.0)
    assert telemetry.points(metrics.LANE_DEPTH) == []
