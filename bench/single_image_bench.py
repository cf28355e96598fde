"""One image in one call: the latency of `POST /api/images` with a 5 MB body, and how soon after its processing
ends a tenant polling `GET /api/jobs/{id}` sees the job done.

    .venv/bin/python -m bench.single_image_bench [--posts 100] [--megabytes 5] [--jobs 20]

Starts the local stack and the development Functions host (local.settings.example.json's values), then:
1. POSTs `--posts` images of `--megabytes`, each once the previous one's job is done (a user's photo at a time, the
   app otherwise idle), and prints the answer's p50/p95/p99 (stored in Blob, job document and list entry written,
   chunk message sent), and the same inside the function (from the host's log);
2. for each, polls `GET /api/jobs/{id}` every 20 ms until it shows `succeeded`, and prints how long after the image's
   processing ended (its chunk record's finish time) that was;
3. then POSTs `--burst` more back to back, without waiting: the answer's latency while the same two cores decode
   and thumbnail the earlier images (on Azure the processing scales out on other instances).

Prints figures; asserts nothing. Numbers from one run on a noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.limits_off import NO_TENANT_LIMITS
from devstack.stack import (
    LocalStack,
    StackPorts,
    example_app_settings,
    provision_app_stores,
    start_functions_host,
    stop_pid,
)
from shared.config import Settings
from shared.services.context import AppContext
from shared.services.tenants import create_tenant


def noisy_jpeg(megabytes: float, seed: int) -> bytes:
    """A JPEG of about `megabytes` (noise compresses badly, as a camera's high-ISO photo does)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    side = int((megabytes * 1024 * 1024 / 0.79) ** 0.5)  # bytes a pixel of noise at quality 85, measured
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def post_image(port: int, key: str, data: bytes) -> tuple[float, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        started = time.perf_counter()
        connection.request(
            "POST", "/api/images", data, {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
        )
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 202:
            raise RuntimeError(f"POST /api/images answered {response.status}: {body[:300]!r}")
        return elapsed, json.loads(body)["job_id"]
    finally:
        connection.close()


def seen_done_at(port: int, key: str, job_id: str, timeout: float = 60.0) -> float:
    """Wall-clock time at which a GET first showed the job succeeded."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            connection.request("GET", f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
            status = json.loads(connection.getresponse().read())
            if status["state"] == "succeeded":
                return time.time()
            if status["state"] not in ("accepted", "running"):
                raise RuntimeError(f"job {job_id} ended {status['state']}: {status}")
            time.sleep(0.02)
    finally:
        connection.close()
    raise TimeoutError(f"job {job_id} not done in {timeout} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--megabytes", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=20, help="posts sent back to back after the paced ones")
    args = parser.parse_args()
    images = [noisy_jpeg(args.megabytes, seed) for seed in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(data_dir=Path(tmp) / "stack", ports=StackPorts.free())
        stack.start()
        port = StackPorts.free().blob
        env = {**example_app_settings(), **stack.settings_env(), **NO_TENANT_LIMITS}
        provision_app_stores(env)
        host = start_functions_host(env, port, Path(tmp) / "host.log")
        try:
            ctx = AppContext.from_settings(Settings.from_env(env))
            key = create_tenant(ctx.store, "bench", "new").api_key
            post_image(port, key, images[0])  # the first call after start-up warms the worker
            time.sleep(2)
            latencies: list[float] = []
            lags: list[float] = []
            for _ in range(args.posts):
                elapsed, job_id = post_image(port, key, random.choice(images))
                latencies.append(elapsed * 1000)
                done = seen_done_at(port, key, job_id)
                chunk = ctx.store.get_chunk(job_id, 0)
                assert chunk is not None and chunk.finished_at is not None
                lags.append((done - chunk.finished_at.timestamp()) * 1000)
            burst = [post_image(port, key, random.choice(images))[0] * 1000 for _ in range(args.burst)]
        finally:
            stop_pid(host.pid, grace=15, popen=host)
            stack.stop()
        # The host logs each invocation's own duration: the rest of a POST's latency is the host's (reading the
        # body, handing it to the worker process, answering).
        log = (Path(tmp) / "host.log").read_text(errors="replace")
        durations = [
            float(m) for m in re.findall(r"Functions\.submit_image' \(Succeeded, [^)]*Duration=([0-9.]+)ms", log)
        ][1 : 1 + args.posts]
    size_mb = statistics.mean(len(i) for i in images) / 1e6
    print(
        f"POST /api/images, {size_mb:.1f} MB bodies, {len(latencies)} posts, one at a time: "
        f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms; "
        f"inside the function p50 {percentile(durations, 50):.1f} ms, p99 {percentile(durations, 99):.1f} ms",
        flush=True,
    )
    print(
        f"{len(burst)} posts back to back while the earlier ones are processed: p50 {percentile(burst, 50):.1f} ms, "
        f"p99 {percentile(burst, 99):.1f} ms",
        flush=True,
    )
    print(
        f"processing ended -> GET /api/jobs/{{id}} shows succeeded (polled every 20 ms), {len(lags)} jobs: "
        f"p50 {percentile(lags, 50):.0f} ms, max {max(lags):.0f} ms "
        f"(at {datetime.now():%Y-%m-%d %H:%M})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
