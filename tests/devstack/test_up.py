"""`./devstack/up`: one settings precedence (the environment wins), documented options, and data that survives a
restart of the whole stack (every emulator, Cosmos included) until --reset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import ROOT, LocalStack, StackPorts, port_answers
from devstack.up import STACK_SETTING_NAMES, app_settings
from shared.adapters.blobs import BlobNotFound
from shared.adapters.servicebus import OutgoingMessage
from shared.config import FINISH_QUEUE, MANIFESTS_CONTAINER, Settings
from shared.models import utcnow
from shared.services.context import AppContext
from shared.services.tenants import create_tenant


def test_the_environment_wins_over_the_stack_and_the_file() -> None:
    file_values = {"CHUNK_SIZE": "500", "COSMOS_ENDPOINT": "https://stale:1/", "ONLY_IN_FILE": "f"}
    stack_values = {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/", "AzureWebJobsStorage": "stack"}
    environ = {"CHUNK_SIZE": "100", "AzureWebJobsStorage": "from-env", "PATH": "/bin"}

    merged, overridden = app_settings(file_values, stack_values, environ)

    assert merged["CHUNK_SIZE"] == "100"  # environment over the file
    assert merged["AzureWebJobsStorage"] == "from-env"  # environment over the stack
    assert merged["COSMOS_ENDPOINT"] == "https://127.0.0.1:8081/"  # the stack over a stale file
    assert merged["ONLY_IN_FILE"] == "f" and merged["PATH"] == "/bin"
    assert overridden == ["AzureWebJobsStorage", "CHUNK_SIZE"]
    assert set(stack_values) <= set(STACK_SETTING_NAMES)


def test_help_prints_the_documented_options() -> None:
    done = subprocess.run(
        ["./devstack/up", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    for option in ("--data-dir", "--port", "--reset", "--free-ports"):
        assert option in done.stdout
    assert "the environment of ./devstack/up" in done.stdout  # the precedence
    assert "kill -9" in done.stdout  # what a hard kill of the Cosmos emulator can lose
    readme = (ROOT / "README.md").read_text()
    for option in ("--data-dir", "--port", "--reset", "--free-ports"):
        assert f"`{option}" in readme, f"README does not document {option}"


# --- the whole stack restarted ---------------------------------------------------------------------------------


def _api(port: int, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@contextmanager
def devstack_up(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[tuple[int, AppContext]]:
    """Runs `python -m devstack.up --free-ports` until the host answers; yields its port and a context on the
    stack's endpoints; stops it with SIGTERM (Ctrl-C's path) and waits for everything to exit."""
    port = StackPorts.free().blob
    log = data_dir.parent / f"up-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.up", "--data-dir", str(data_dir), "--port", str(port), "--free-ports",
             *extra],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (port_answers(port) and (data_dir / "stack.pids").exists()):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        record = json.loads((data_dir / "stack.pids").read_text())
        stack = LocalStack(data_dir=data_dir, ports=StackPorts(**record["ports"]))
        yield port, AppContext.from_settings(Settings.from_env(stack.settings_env()))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert process.returncode == 0, log.read_text()


@pytest.mark.slow
@pytest.mark.stack
def test_data_survives_a_restart_of_the_whole_stack_until_reset(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with devstack_up(data_dir, env={"MAX_INLINE_IMAGES": "2"}) as (port, ctx):
        tenant = create_tenant(ctx.store, "survivor", "new")
        key = tenant.api_key
        # The environment's MAX_INLINE_IMAGES=2 wins over local.settings.json's 10000.
        status, body = _api(port, "POST", "/jobs", key, {"urls": [f"https://example.test/{i}.jpg" for i in range(3)]})
        assert status in (400, 413) and body["error"]["details"]["limit"] == 2, body
        status, body = _api(port, "POST", "/jobs", key, {"urls": ["https://example.test/a.jpg"]})
        assert status == 202, body
        job_id = body["job_id"]
        manifest = f"{tenant.tenant.tenant_id}/kept.txt"
        ctx.blobs.write(MANIFESTS_CONTAINER, manifest, b"https://example.test/a.jpg\n", "text/plain")
        far = OutgoingMessage(body="{}", message_id="kept-across-restarts")
        ctx.bus.schedule(FINISH_QUEUE, far, utcnow() + timedelta(hours=1))
        assert ctx.bus.queue_depths([FINISH_QUEUE])[FINISH_QUEUE].scheduled == 1

    with devstack_up(data_dir) as (port, ctx):
        status, body = _api(port, "GET", f"/jobs/{job_id}", key)  # Cosmos: the tenant (its key) and the job
        assert status == 200 and body["job_id"] == job_id, body
        assert ctx.blobs.size(MANIFESTS_CONTAINER, manifest) > 0  # Azurite
        assert ctx.bus.queue_depths([FINISH_QUEUE])[FINISH_QUEUE].scheduled == 1  # the Service Bus emulator

    with devstack_up(data_dir, "--reset") as (port, ctx):
        status, body = _api(port, "GET", f"/jobs/{job_id}", key)
        assert status == 401, body  # no such tenant any more
        with pytest.raises(BlobNotFound):
            ctx.blobs.size(MANIFESTS_CONTAINER, manifest)
        assert ctx.bus.queue_depths([FINISH_QUEUE])[FINISH_QUEUE].scheduled == 0
