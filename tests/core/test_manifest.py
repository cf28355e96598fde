"""A 1,000,000-line manifest: accepted over HTTP in well under 200 ms, then expanded in bounded steps.

This module runs its own stack and a host with every queue trigger disabled, and drives the expansion step by step
exactly as the `expand_job` trigger would (receive an expand message, call `expand_manifest`, complete it), so the
million images are planned and counted but never fetched.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient

from devstack.stack import LocalStack, StackPorts, provision_app_stores, start_functions_host, stop_pid
from shared.config import EXPAND_QUEUE, MANIFESTS_CONTAINER, Lane, Settings
from shared.manifests import manifest_lines
from shared.models import ChunkMessage, ExpandMessage
from shared.services.context import AppContext
from shared.services.expand import expand_manifest
from shared.services.tenants import create_tenant

LINES = 1_000_000
DISABLED = ["expand_job", "chunk_worker_high", "chunk_worker_standard", "chunk_worker_bulk", "status_timer"]


@pytest.fixture(scope="module")
def quiet_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, AppContext, LocalStack]]:
    work = Path(tmp_path_factory.mktemp("manifest"))
    stack = LocalStack(data_dir=work / "stack", ports=StackPorts.free())
    stack.start()
    host = None
    try:
        env = {**stack.settings_env(), "EXPAND_BATCH_CHUNKS": "200"}
        provision_app_stores(env)
        host_settings = {**env, "FUNCTIONS_WORKER_PROCESS_COUNT": "1"}
        host_settings.update({f"AzureWebJobs.{name}.Disabled": "true" for name in DISABLED})
        port = StackPorts.free().blob
        host = start_functions_host(host_settings, port, work / "host.log", timeout=60)
        settings = Settings.from_env(env)
        yield f"http://127.0.0.1:{port}", AppContext.from_settings(settings), stack
    finally:
        if host is not None:
            stop_pid(host.pid, grace=10, popen=host)
        stack.stop()


def _post(url: str, key: str, body: dict[str, object]) -> tuple[int, dict[str, object], float]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )  # fmt: skip
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
        return response.status, payload, time.perf_counter() - started


def test_a_million_line_manifest_is_accepted_fast_and_expanded(
    quiet_app: tuple[str, AppContext, LocalStack],
) -> None:
    base_url, ctx, stack = quiet_app
    created = create_tenant(ctx.store, "big", "enterprise")
    tenant_id = created.tenant.tenant_id
    manifest = "\n".join(f"https://images.example.com/set/{i:07d}.jpg" for i in range(LINES)) + "\n"
    ctx.blobs.write(MANIFESTS_CONTAINER, f"{tenant_id}/million.txt", manifest.encode(), "text/plain")

    latencies = []
    job_id = ""
    for _ in range(3):
        code, accepted, seconds = _post(f"{base_url}/api/jobs", created.api_key, {"manifest": "million.txt"})
        assert code == 202 and accepted["total_images"] is None
        latencies.append(seconds)
        job_id = str(accepted["job_id"])
    # The answer does no work proportional to the manifest: its latency is that of a tiny job.
    assert statistics.median(latencies) < 0.2, latencies

    # Expand the last job as the expand trigger would, one expand message (one bounded step) at a time.
    steps = 0
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client:
        receiver = client.get_queue_receiver(EXPAND_QUEUE, max_wait_time=5)
        with receiver:
            while True:
                messages = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                if not messages:
                    break
                message = ExpandMessage.model_validate_json(b"".join(messages[0].body))
                if message.job_id == job_id:
                    expand_manifest(ctx, message)
                    steps += 1
                receiver.complete_message(messages[0])
        expansion = ctx.store.get_expansion(job_id)
        assert expansion is not None and expansion.done and expansion.error is None
        assert expansion.images == LINES and expansion.chunks == LINES // 500 and steps == 10

        # The chunk messages cover every line exactly once, in order, with their byte ranges.
        depth = ctx.bus.queue_depths([Lane.STANDARD.queue_name])[Lane.STANDARD.queue_name]
        assert depth.active == LINES // 500
        seen = 0
        with client.get_queue_receiver(Lane.STANDARD.queue_name, session_id=f"{job_id}.0") as session:
            for sb_message in session.peek_messages(max_message_count=5):
                chunk = ChunkMessage.model_validate_json(b"".join(sb_message.body))
                assert chunk.manifest_range is not None
                span = chunk.manifest_range
                lines = manifest_lines(ctx.blobs.read_range(MANIFESTS_CONTAINER, span.blob, span.start, span.end))
                assert len(lines) == 500
                assert lines[0].endswith(f"{span.first_index:07d}.jpg")
                assert span.first_index == chunk.chunk * 500
                seen += 1
        assert seen == 5
