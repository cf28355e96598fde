"""Faults of the local stack mid-job: the Service Bus emulator killed (kill -9) and restarted, Azurite and the
Cosmos emulator restarted, each on the same port with the same data. Every job still ends with exactly one result
per image.

These tests restart emulators, so they run on a stack of their own (Cosmos snapshots on), not the session's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack, StackPorts, provision_app_stores, start_functions_host, stop_pid
from shared.config import Settings
from shared.services.context import AppContext
from shared.services.tenants import create_tenant
from tests.core.conftest import TEST_SETTINGS, Api
from tests.core.image_server import ImageServer

pytestmark = [pytest.mark.slow, pytest.mark.stack]

IMAGES = 300  # three chunks of CHUNK_SIZE 100
LIGHT = {"analyses": ["exif", "hashes"]}


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(data_dir=Path(tmp_path_factory.mktemp("fault-stack")), ports=StackPorts.free())
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def fault_host(fault_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    settings = {**fault_stack.settings_env(), **TEST_SETTINGS}
    provision_app_stores(settings)
    ctx = AppContext.from_settings(Settings.from_env(settings))
    key = create_tenant(ctx.store, "faults", "new").api_key
    port = StackPorts.free().blob
    log = Path(tmp_path_factory.mktemp("fault-host")) / "host.log"
    process = start_functions_host(settings, port, log, extra_args=("--shutdown-grace", "3"))
    try:
        yield Api(f"http://127.0.0.1:{port}"), key
    finally:
        stop_pid(process.pid, grace=15, popen=process)
        if os.environ.get("SHOW_HOST_LOG"):
            print(log.read_text(errors="replace")[-30000:])


def _run_job_through(api: Api, key: str, image_server: ImageServer, fault: Any) -> None:
    urls = [image_server.url(f"/slow/30/{i}.jpg") for i in range(IMAGES)]
    code, _, accepted = api.call("POST", "/jobs", key, {"urls": urls, "options": LIGHT})
    assert code == 202, accepted
    job_id = accepted["job_id"]
    deadline = time.monotonic() + 60
    while True:  # the fault strikes once the job is under way, not before it started
        code, _, status = api.call("GET", f"/jobs/{job_id}", key)
        assert code == 200, status
        if status["counts"]["succeeded"] + status["counts"]["failed"] > 0:
            break
        assert time.monotonic() < deadline, f"the job never started: {status}"
        time.sleep(0.2)
    assert status["state"] in ("accepted", "running"), f"the job ended before the fault: {status}"
    fault()

    status = api.wait_for_state(key, job_id, timeout=150)
    items = api.all_images(key, job_id)
    indexes = sorted(item["index"] for item in items)
    assert indexes == list(range(IMAGES)), (
        f"{len(items)} results, {len(set(indexes))} distinct; missing "
        f"{sorted(set(range(IMAGES)) - set(indexes))[:10]}; duplicated {len(indexes) - len(set(indexes))}"
    )
    succeeded = sum(1 for item in items if item["ok"])
    errors = [item["error"] for item in items if not item["ok"]]
    assert status["counts"] == {"succeeded": succeeded, "failed": IMAGES - succeeded, "skipped": 0}, status
    assert status["state"] == "succeeded", (status, errors[:5])


def test_the_service_bus_emulator_killed_and_restarted_mid_job(
    fault_stack: LocalStack, fault_host: tuple[Api, str], image_server: ImageServer
) -> None:
    api, key = fault_host
    _run_job_through(api, key, image_server, lambda: fault_stack.restart("servicebus", kill=True, down_seconds=1.0))


def test_azurite_restarted_mid_job(
    fault_stack: LocalStack, fault_host: tuple[Api, str], image_server: ImageServer
) -> None:
    api, key = fault_host
    _run_job_through(api, key, image_server, lambda: fault_stack.restart("azurite", down_seconds=1.0))


def test_the_cosmos_emulator_restarted_mid_job(
    fault_stack: LocalStack, fault_host: tuple[Api, str], image_server: ImageServer
) -> None:
    api, key = fault_host
    _run_job_through(api, key, image_server, lambda: fault_stack.restart("cosmos", down_seconds=1.0))
