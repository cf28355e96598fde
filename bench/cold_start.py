"""Cold start: how long each API route takes the first time after the Functions host says it is ready, and after.

    PYTHONPATH=. .venv/bin/python -m bench.cold_start [--runs 2] [--workers 2]

Each run starts a fresh local stack (free ports, temporary data) and a fresh development host with the example app
settings, creates a tenant and a manifest blob, then calls every route twice in a row and prints both times. With
several worker processes the host spreads requests over them, so a route's first call may reach a worker that
nothing has warmed yet: that is what users meet after a deploy or a scale-out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devstack.stack import (
    LocalStack,
    StackPorts,
    example_app_settings,
    provision_app_stores,
    start_functions_host,
    stop_pid,
)
from shared.config import MANIFESTS_CONTAINER, Settings
from shared.services.context import AppContext
from shared.services.tenants import create_tenant


def call(base: str, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, float]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, (time.perf_counter() - started) * 1000


def one_run(workers: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        stack = LocalStack(data_dir=Path(tmp) / "stack", ports=StackPorts.free())
        stack.start()
        host = None
        try:
            settings_env = {
                **example_app_settings(),
                **stack.settings_env(),
                "FUNCTIONS_WORKER_PROCESS_COUNT": str(workers),
            }
            provision_app_stores(settings_env)
            ctx = AppContext.from_settings(Settings.from_env(settings_env))
            tenant = create_tenant(ctx.store, "cold-start", "new")
            key, tenant_id = tenant.api_key, tenant.tenant.tenant_id
            manifest = "\n".join(f"http://127.0.0.1:9/{i}.jpg" for i in range(20)).encode()
            ctx.blobs.write(MANIFESTS_CONTAINER, f"{tenant_id}/m.txt", manifest, "text/plain")
            port = StackPorts.free().blob
            host = start_functions_host(settings_env, port, Path(tmp) / "host.log")
            base = f"http://127.0.0.1:{port}"
            times: dict[str, list[float]] = {}
            job_id = ""

            def timed(label: str, method: str, path: str, body: Any = None, auth: bool = True) -> None:
                for _ in range(2):
                    status, ms = call(base, method, path, key if auth else None, body)
                    assert status < 500, (label, status)
                    times.setdefault(label, []).append(ms)

            # The manifest submit first: it is the route users reported (~480-500 ms the first time).
            status, ms = call(base, "POST", "/jobs", key, {"manifest": "m.txt"})
            assert status == 202, status
            times["POST /jobs (manifest)"] = [ms]
            status, ms = call(base, "POST", "/jobs", key, {"manifest": "m.txt"})
            times["POST /jobs (manifest)"].append(ms)
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{base}/api/jobs",
                    data=json.dumps({"urls": ["http://127.0.0.1:9/a.jpg"]}).encode(),
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                    method="POST",
                ),
                timeout=30,
            ) as response:
                job_id = json.loads(response.read())["job_id"]
            timed("GET /health", "GET", "/health", auth=False)
            timed("GET /openapi.json", "GET", "/openapi.json", auth=False)
            timed("GET /jobs/{id}", "GET", f"/jobs/{job_id}")
            timed("GET /jobs/{id}/images", "GET", f"/jobs/{job_id}/images")
            timed("GET /jobs/{id}/duplicates", "GET", f"/jobs/{job_id}/duplicates")
            timed("POST /jobs/{id}/replay", "POST", f"/jobs/{job_id}/replay")
            timed("DELETE /jobs/{id}", "DELETE", f"/jobs/{job_id}")
            return times
        finally:
            if host is not None:
                stop_pid(host.pid, grace=15, popen=host)
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = [one_run(args.workers) for _ in range(args.runs)]
    print(f"{args.runs} fresh stack+host runs, {args.workers} worker process(es); ms, median over runs")
    print(f"{'route':<28} {'1st call':>9} {'2nd call':>9} {'worst 1st':>10}")
    for label in runs[0]:
        first = [run[label][0] for run in runs]
        second = [run[label][1] for run in runs]
        print(f"{label:<28} {statistics.median(first):9.1f} {statistics.median(second):9.1f} {max(first):10.1f}")


if __name__ == "__main__":
    main()
