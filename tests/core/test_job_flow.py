"""Jobs end to end on the real local stack: counts, idempotence under worker crashes, cancel, replay, callbacks."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from shared.callbacks import verify
from shared.config import MANIFESTS_CONTAINER
from shared.services.context import AppContext
from tests.core.conftest import Api, ApiTenant, poison_job
from tests.core.image_server import ImageServer

LIGHT = {"analyses": ["exif", "hashes"]}


def _submit(api: Api, key: str, body: dict[str, Any]) -> str:
    code, _, accepted = api.call("POST", "/jobs", key, body)
    assert code == 202, accepted
    return str(accepted["job_id"])


def test_a_2000_image_job_ends_with_exactly_2000_results(
    app_host: Api, tenant_enterprise: ApiTenant, image_server: ImageServer
) -> None:
    def url(i: int) -> str:
        if i % 50 == 7:
            return image_server.url(f"/missing/{i}.jpg")
        if i % 50 == 13:
            return image_server.url(f"/corrupt/{i}.jpg")
        return image_server.url(f"/img/{i}.jpg")

    job_id = _submit(app_host, tenant_enterprise.key, {"urls": [url(i) for i in range(2000)], "options": LIGHT})
    status = app_host.wait_for_state(tenant_enterprise.key, job_id, timeout=300)
    assert status["state"] == "completed_with_errors", status
    assert status["counts"] == {"succeeded": 1920, "failed": 80, "skipped": 0}
    assert status["total_images"] == 2000 and status["total_chunks"] == 20 and status["percent"] == 100.0
    assert status["errors"] == {"fetch_http_error": 40, "unsupported_format": 40}, status["errors"]

    items = app_host.all_images(tenant_enterprise.key, job_id)
    indexes = [item["index"] for item in items]
    assert len(items) == 2000 and sorted(indexes) == list(range(2000))
    by_index = {item["index"]: item for item in items}
    assert by_index[7]["error"]["code"] == "fetch_http_error" and not by_index[7]["ok"]
    assert by_index[13]["error"]["code"] == "unsupported_format"
    assert by_index[0]["ok"] and len(by_index[0]["sha256"]) == 64


def test_killing_worker_processes_mid_chunk_loses_and_duplicates_nothing(
    app_host: Api, tenant_new: ApiTenant, image_server: ImageServer
) -> None:
    total = 800
    urls = [image_server.url(f"/slow/40/{i}.jpg") for i in range(total)]
    job_id = _submit(app_host, tenant_new.key, {"urls": urls, "options": LIGHT})
    killed = 0
    deadline = time.monotonic() + 60
    while killed < 3 and time.monotonic() < deadline:
        time.sleep(2.0)
        code, _, status = app_host.call("GET", f"/jobs/{job_id}", tenant_new.key)
        if code == 200 and status["state"] not in ("accepted", "running"):
            break
        pids = app_host.workers()
        assert pids, "the host reports no worker processes"
        os.kill(pids[killed % len(pids)], signal.SIGKILL)
        killed += 1
    assert killed >= 2, "the job finished before the workers could be killed: make it slower"

    status = app_host.wait_for_state(tenant_new.key, job_id, timeout=240)
    assert status["state"] == "succeeded", status
    assert status["counts"] == {"succeeded": total, "failed": 0, "skipped": 0}
    items = app_host.all_images(tenant_new.key, job_id)
    ids = [item["id"] for item in items]
    assert len(ids) == total and len(set(ids)) == total
    assert sorted(item["index"] for item in items) == list(range(total))


def test_cancel_skips_the_remaining_images(app_host: Api, tenant_free: ApiTenant, image_server: ImageServer) -> None:
    urls = [image_server.url(f"/slow/60/{i}.jpg") for i in range(400)]
    job_id = _submit(app_host, tenant_free.key, {"urls": urls, "options": LIGHT})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, _, status = app_host.call("GET", f"/jobs/{job_id}", tenant_free.key)
        if status["counts"]["succeeded"] > 0:
            break
        time.sleep(0.3)
    code, _, body = app_host.call("DELETE", f"/jobs/{job_id}", tenant_free.key)
    assert code == 202 and body["cancel_requested"] is True
    status = app_host.wait_for_state(tenant_free.key, job_id, timeout=120)
    assert status["state"] == "cancelled", status
    counts = status["counts"]
    assert counts["skipped"] > 0 and counts["succeeded"] < 400
    assert counts["succeeded"] + counts["failed"] + counts["skipped"] == 400
    assert len(app_host.all_images(tenant_free.key, job_id)) == counts["succeeded"] + counts["failed"]


def test_callback_is_signed_with_the_tenants_secret(
    app_host: Api, tenant_new: ApiTenant, image_server: ImageServer
) -> None:
    body = {
        "urls": [image_server.url(f"/img/{i}.jpg") for i in range(5)],
        "callback_url": image_server.url("/callback"),
    }
    job_id = _submit(app_host, tenant_new.key, body)
    app_host.wait_for_state(tenant_new.key, job_id, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        received = [(h, b) for h, b in image_server.callbacks if json.loads(b)["job"]["job_id"] == job_id]
        if received:
            break
        time.sleep(0.3)
    assert len(received) == 1, image_server.callbacks
    headers, raw = received[0]
    assert verify(raw, tenant_new.callback_secret, headers["x-imagepipe-timestamp"], headers["x-imagepipe-signature"])
    assert not verify(
        raw + b" ", tenant_new.callback_secret, headers["x-imagepipe-timestamp"], headers["x-imagepipe-signature"]
    )
    payload = json.loads(raw)
    assert payload["event"] == "job.finished" and payload["job"]["state"] == "succeeded"
    status = app_host.wait_for_state(tenant_new.key, job_id)
    deadline = time.monotonic() + 10
    while status["callback"]["state"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.5)
        _, _, status = app_host.call("GET", f"/jobs/{job_id}", tenant_new.key)
    assert status["callback"]["state"] == "delivered"


def test_a_dead_lettered_chunk_shows_on_the_job_and_replays(
    app_host: Api, app_context: AppContext, tenant_new: ApiTenant, image_server: ImageServer
) -> None:
    # A chunk whose manifest range names a blob that is not there yet fails as an infrastructure error on every
    # delivery, so Service Bus dead-letters it after maxDeliveryCount.
    job_id, manifest, lines = poison_job(app_context, tenant_new, image_server, images=2)
    status = app_host.wait_for_state(tenant_new.key, job_id, timeout=90)
    assert status["state"] == "failed", status
    [dead] = status["dead_lettered_chunks"]
    assert dead["chunk"] == 0 and dead["reason"] == "MaxDeliveryCountExceeded" and not dead["replayed"]

    app_context.blobs.write(MANIFESTS_CONTAINER, manifest, lines, "text/plain")
    code, _, replay = app_host.call("POST", f"/jobs/{job_id}/replay", tenant_new.key)
    assert code == 202 and replay["replayed_chunks"] == [0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, _, status = app_host.call("GET", f"/jobs/{job_id}", tenant_new.key)
        if status["state"] == "succeeded":
            break
        time.sleep(0.5)
    chunk_doc = app_context.store.get_chunk(job_id, 0)
    assert status["state"] == "succeeded", (status, app_context.store.dead_letters(job_id), chunk_doc)
    assert status["counts"] == {"succeeded": 2, "failed": 0, "skipped": 0}
    assert status["dead_lettered_chunks"][0]["replayed"] is True
    code, _, again = app_host.call("POST", f"/jobs/{job_id}/replay", tenant_new.key)
    assert code == 202 and again["replayed_chunks"] == []
