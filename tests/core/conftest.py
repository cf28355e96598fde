"""The whole app on the real local stack: the development Functions host running function_app.py against
Azurite, the Cosmos emulator and the Service Bus emulator, with images served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from devstack.stack import LocalStack, StackPorts, provision_app_stores, start_functions_host, stop_pid
from shared.adapters.servicebus import OutgoingMessage
from shared.config import Lane, Settings
from shared.models import ChunkMessage, JobDocument, JobOptions, ManifestRange, utcnow
from shared.services.context import AppContext
from shared.services.tenants import create_tenant
from tests.core.image_server import ImageServer, running_image_server

# The operator view's key (the host is given its SHA-256 only, as in Azure).
OPERATOR_KEY = "test-operator-key"

# Small chunks and a fast timer so a test sees many chunks and quick roll-ups; a free-tier job may hold only one
# session at a time, so the concurrency cap is below what the host could give it (and the test can fail).
TEST_SETTINGS = {
    "CHUNK_SIZE": "100",
    "FETCH_ALLOW_LOOPBACK_FOR_TESTS": "true",
    "FETCH_CONNECT_TIMEOUT_SECONDS": "2",
    "FETCH_READ_TIMEOUT_SECONDS": "5",
    "STATUS_TIMER_SCHEDULE": "*/1 * * * * *",
    "TIER_JOB_CONCURRENCY": "new=2,enterprise=2,free=1",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "2",
    "CALLBACK_MAX_ATTEMPTS": "3",
    # Small caps, so the tests of refusals send megabytes, not the defaults' tens of megabytes.
    "IMAGE_MAX_BYTES": "8000000",
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "16000000",
    "ADMIN_API_KEY_SHA256": hashlib.sha256(OPERATOR_KEY.encode()).hexdigest(),
    # Limits generous enough never to touch other tests (tests/core/test_limits.py starts a host with tight ones).
    "TIER_API_RATE": "new=1000,enterprise=1000,free=1000",
    "TIER_API_BURST": "new=1000,enterprise=1000,free=1000",
    "TIER_MAX_ACTIVE_JOBS": "new=0,enterprise=0,free=0",
    "TIER_MAX_IMAGES_PER_DAY": "new=0,enterprise=0,free=0",
    "FETCH_HOST_CONCURRENCY": "16",
    "FETCH_HOST_RATE_PER_SECOND": "0",
    "FETCH_RETRY_BASE_SECONDS": "0.2",
}


@dataclass
class Api:
    base_url: str

    def call(
        self, method: str, path: str, key: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"{self.base_url}/api{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"null")

    def wait_for_state(self, key: str, job_id: str, timeout: float = 120.0, terminal: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, _, body = self.call("GET", f"/jobs/{job_id}", key)
            if code >= 500:  # the worker serving the request was killed by the test: ask again
                time.sleep(0.5)
                continue
            assert code == 200, body
            status = body
            if status["state"] not in ("accepted", "running"):
                return status
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {status}")

    def all_images(self, key: str, job_id: str, page_size: int = 500) -> list[dict[str, Any]]:
        """Every image result of the job, page after page, in image order."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = f"?page_size={page_size}" + (f"&continuation={quote(token, safe='')}" if token else "")
            code, _, page = self.call("GET", f"/jobs/{job_id}/images{query}", key)
            assert code == 200, page
            items += page["items"]
            token = page["continuation"]
            if not token:
                return sorted(items, key=lambda item: item["index"])

    def duplicate_groups(self, key: str, job_id: str, timeout: float = 60.0) -> list[list[str]]:
        """The job's duplicate groups (sorted member lists), once reconciled: paged, parts of a group merged."""
        deadline = time.monotonic() + timeout
        while True:
            code, _, status = self.call("GET", f"/jobs/{job_id}", key)
            assert code == 200, status
            if status["duplicates"]["state"] == "ready":
                break
            assert time.monotonic() < deadline, f"job {job_id}: duplicates not reconciled in {timeout} s: {status}"
            time.sleep(0.3)
        groups: dict[int, list[str]] = {}
        token: str | None = None
        while True:
            query = "?page_size=50" + (f"&continuation={quote(token, safe='')}" if token else "")
            code, _, page = self.call("GET", f"/jobs/{job_id}/duplicates{query}", key)
            assert code == 200, page
            for item in page["items"]:
                groups.setdefault(item["group"], []).extend(item["members"])
            token = page["continuation"]
            if not token:
                break
        assert len(groups) == status["duplicates"]["groups"], (groups, status["duplicates"])
        return sorted(sorted(members) for members in groups.values())

    def workers(self) -> list[int]:
        with urllib.request.urlopen(f"{self.base_url}/admin/host/workers", timeout=10) as response:
            payload = json.loads(response.read())
        entries = payload.get("workers", payload) if isinstance(payload, dict) else payload
        return [int(w["pid"]) for w in entries if w.get("pid")]


@pytest.fixture(scope="session")
def app_settings(local_stack: LocalStack) -> dict[str, str]:
    values = {**local_stack.settings_env(), **TEST_SETTINGS}
    provision_app_stores(values)
    return values


@pytest.fixture(scope="session")
def app_context(app_settings: dict[str, str]) -> AppContext:
    return AppContext.from_settings(Settings.from_env(app_settings))


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    with running_image_server() as server:
        yield server


@pytest.fixture(scope="session")
def app_host(app_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    port = StackPorts.free().blob
    log = Path(tmp_path_factory.mktemp("host")) / "host.log"
    process = start_functions_host(app_settings, port, log, extra_args=("--shutdown-grace", "3"))
    try:
        yield Api(f"http://127.0.0.1:{port}")
    finally:
        stop_pid(process.pid, grace=15, popen=process)
        if os.environ.get("SHOW_HOST_LOG"):
            print(log.read_text(errors="replace")[-20000:])


@dataclass
class ApiTenant:
    tenant_id: str
    key: str
    callback_secret: str


def _tenant(ctx: AppContext, tier: str) -> ApiTenant:
    created = create_tenant(ctx.store, f"test-{tier}", tier)
    return ApiTenant(created.tenant.tenant_id, created.api_key, created.tenant.callback_secret)


@pytest.fixture(scope="session")
def tenant_new(app_context: AppContext) -> ApiTenant:
    return _tenant(app_context, "new")


@pytest.fixture(scope="session")
def tenant_enterprise(app_context: AppContext) -> ApiTenant:
    return _tenant(app_context, "enterprise")


@pytest.fixture(scope="session")
def tenant_free(app_context: AppContext) -> ApiTenant:
    return _tenant(app_context, "free")


@pytest.fixture()
def make_tenant(app_context: AppContext) -> Any:
    return lambda tier: _tenant(app_context, tier)


@pytest.fixture(scope="session")
def make_session_tenant(app_context: AppContext) -> Any:
    return lambda tier: _tenant(app_context, tier)


def poison_job(
    ctx: AppContext, tenant: ApiTenant, image_server: ImageServer, images: int = 3
) -> tuple[str, str, bytes]:
    """A one-chunk job whose chunk names a manifest blob that is not there yet: every delivery fails as an
    infrastructure error, so Service Bus dead-letters it . Writing the blob (`manifest`, `lines`) makes it
    replayable."""
    job_id = f"jpoison{int(time.time() * 1000)}"
    manifest = f"{tenant.tenant_id}/poison-{job_id}.txt"
    lines = "".join(f"{image_server.url(f'/img/{i}.jpg')}\n" for i in range(images)).encode()
    options = JobOptions(analyses=["exif"])
    ctx.store.create_job(
        JobDocument(
            id=job_id,
            jobId=job_id,
            tenantId=tenant.tenant_id,
            lane=Lane.HIGH,
            concurrency=1,
            source="urls",
            options=options,
            total_images=images,
            total_chunks=1,
            created_at=utcnow(),
        )
    )
    chunk = ChunkMessage(
        job_id=job_id,
        tenant_id=tenant.tenant_id,
        chunk=0,
        lane=Lane.HIGH,
        options=options,
        manifest_range=ManifestRange(blob=manifest, start=0, end=len(lines), first_index=0),
    )
    ctx.bus.send(
        Lane.HIGH.queue_name,
        [OutgoingMessage(body=chunk.model_dump_json(), message_id=f"{job_id}.0", session_id=f"{job_id}.0")],
    )
    return job_id, manifest, lines
