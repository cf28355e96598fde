"""Metrics and traces from the real services on the local stack, read back through the OpenTelemetry SDK's
in-memory exporters: a job submitted, its chunk messages taken off the Service Bus emulator and processed, and a
status roll-up tick.

The module runs its own stack with no Functions host, so no other worker takes these chunk messages: the test
hands each one to `process_chunk` itself, as the chunk worker would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient

from devstack.stack import LocalStack, StackPorts, provision_app_stores
from shared import metrics
from shared.config import Settings
from shared.services.chunks import process_chunk
from shared.services.context import AppContext
from shared.services.jobs import submit_job
from shared.services.rollup import roll_up_status
from shared.services.tenants import create_tenant
from shared.tracing import CHUNK_SPAN, SUBMIT_SPAN
from tests.core.image_server import ImageServer, running_image_server
from tests.telemetry.capture import Telemetry, attribute, installed

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(data_dir=Path(tmp_path_factory.mktemp("otel-stack")), ports=StackPorts.free())
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def settings_env(stack: LocalStack) -> dict[str, str]:
    values = {**stack.settings_env(), "CHUNK_SIZE": "3", "FETCH_ALLOW_LOOPBACK_FOR_TESTS": "true"}
    provision_app_stores(values)
    return values


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with running_image_server() as server:
        yield server


def _process_session(ctx: AppContext, env: dict[str, str], queue: str, session: str) -> int:
    """Takes every message of one session off the queue and processes it as the chunk worker would."""
    handled = 0
    with (
        ServiceBusClient.from_connection_string(env["ServiceBusConnection"]) as client,
        client.get_queue_receiver(queue, session_id=session, max_wait_time=5) as receiver,
    ):
        for message in receiver:
            process_chunk(ctx, str(message), (message.delivery_count or 0) + 1, message.enqueued_time_utc)
            receiver.complete_message(message)
            handled += 1
    return handled


def test_a_job_reports_its_images_chunks_traces_and_the_roll_up(
    settings_env: dict[str, str], images: ImageServer
) -> None:
    telemetry: Telemetry = installed()
    telemetry.spans.clear()
    ctx = AppContext.from_settings(Settings.from_env(settings_env))
    tenant = create_tenant(ctx.store, "otel", "new").tenant  # tier new: lane high, up to 4 sessions a job
    before = {
        "processed": telemetry.total(metrics.IMAGES_PROCESSED, lane="high"),
        "missing": telemetry.total(metrics.IMAGES_FAILED, lane="high", error_code="fetch_http_error"),
        "corrupt": telemetry.total(metrics.IMAGES_FAILED, lane="high", error_code="unsupported_format"),
        "chunks": telemetry.total(metrics.CHUNK_DURATION, lane="high", outcome="finished"),
        "waits": telemetry.total(metrics.CHUNK_QUEUE_WAIT, lane="high"),
        "ticks": telemetry.total(metrics.ROLLUP_DURATION),
    }

    urls = [images.url(f"/img/{i}.jpg") for i in range(4)] + [
        images.url("/missing/1.jpg"),
        images.url("/corrupt/2.jpg"),
    ]
    body = json.dumps({"urls": urls, "options": {"analyses": ["exif", "hashes"]}}).encode()
    accepted = submit_job(ctx, tenant, body)
    assert accepted.total_chunks == 2
    handled = sum(_process_session(ctx, settings_env, "chunks-high", f"{accepted.job_id}.{s}") for s in (0, 1))
    assert handled == 2

    # One more job, left in its queue, for the lane depth gauge to see.
    waiting = submit_job(ctx, tenant, json.dumps({"urls": [images.url("/img/9.jpg")]}).encode())
    assert waiting.total_chunks == 1
    report = roll_up_status(ctx)
    assert accepted.job_id in report.jobs_finished

    assert telemetry.total(metrics.IMAGES_PROCESSED, lane="high") == before["processed"] + 6
    assert telemetry.total(metrics.IMAGES_FAILED, lane="high", error_code="fetch_http_error") == before["missing"] + 1
    assert telemetry.total(metrics.IMAGES_FAILED, lane="high", error_code="unsupported_format") == before["corrupt"] + 1
    assert telemetry.total(metrics.CHUNK_DURATION, lane="high", outcome="finished") == before["chunks"] + 2
    assert telemetry.total(metrics.CHUNK_QUEUE_WAIT, lane="high") == before["waits"] + 2
    assert telemetry.total(metrics.ROLLUP_DURATION) == before["ticks"] + 1
    depths = {(p.attributes["queue"], p.attributes["state"]): p.value for p in telemetry.points(metrics.LANE_DEPTH)}
    assert depths[("express-high", "active")] == 1 and depths[("chunks-high", "active")] == 0, depths

    [submit] = telemetry.finished_spans(SUBMIT_SPAN, **{"imagepipe.job_id": accepted.job_id})
    chunks = telemetry.finished_spans(CHUNK_SPAN, **{"imagepipe.job_id": accepted.job_id})
    assert sorted(attribute(s, "imagepipe.chunk") for s in chunks) == [0, 1]
    trace_ids = {s.context.trace_id for s in chunks}
    assert len(trace_ids) == 2 and submit.context.trace_id not in trace_ids  # one trace per chunk
    for span in chunks:
        [link] = span.links
        assert (link.context.trace_id, link.context.span_id) == (submit.context.trace_id, submit.context.span_id)
        assert attribute(span, "imagepipe.outcome") == "finished"
