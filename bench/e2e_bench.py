"""End-to-end throughput of the whole app on the local stack, against the image pipeline's own throughput.

    .venv/bin/python -m bench.e2e_bench [--images 2000] [--megapixels 2] [--workers 1,2]

For each worker-process count it starts the stack and the development Functions host, submits one job of
`--images` JPEGs served from 127.0.0.1 (`--distinct` different photos, each under images/distinct URLs: the
pipeline still fetches, decodes, thumbnails, hashes and registers every one), and reads, from the chunk records:

- end-to-end images/s (first chunk start to last chunk end), against the pipeline alone (fetch + process_image in
  as many processes as the app has images in flight, no queue, no Cosmos, no Blob) — the target is >= 80 %. In
  flight: host.json's maxConcurrentSessions (host-wide, as in Azure Functions) capped by the job's concurrency; with
  one worker process the concurrent invocations run on its threads, each with its own pipeline child process;
- enqueue -> chunk start: for the first chunk of each session (the others wait behind the job's concurrency cap);
- the share of chunk time spent on queue work: on each session, the gaps between one chunk's end and the next
  one's start (receive, settle, lock and session hand-over) over the session's busy time.

Prints figures; asserts nothing. Numbers from one run on a noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.limits_off import NO_TENANT_LIMITS
from devstack.samples import photo_jpeg
from devstack.stack import (
    LocalStack,
    StackPorts,
    example_app_settings,
    provision_app_stores,
    start_functions_host,
    stop_pid,
)
from shared.config import Settings
from shared.models import DEFAULT_ANALYSES, ChunkDocument, JobOptions
from shared.services.context import AppContext
from shared.services.tenants import create_tenant
from tests.core.image_server import running_image_server

# Chunks of 100 and a per-job cap equal to host.json's maxConcurrentSessions (2): the job fills every consumer,
# each session carries a run of chunks (so the gaps between them show the queue's own cost), and the tail where
# fewer chunks than consumers remain stays short.
JOB_CAP = 2
BENCH_SETTINGS = {
    "FETCH_ALLOW_LOOPBACK_FOR_TESTS": "true",
    "CHUNK_SIZE": "100",
    "TIER_JOB_CONCURRENCY": f"new={JOB_CAP},enterprise={JOB_CAP},free={JOB_CAP}",
    **NO_TENANT_LIMITS,
}


def images_in_flight() -> int:
    """Chunks (so images) processed at once end to end: sessions the host runs at once, capped by the job's cap."""
    host = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())
    return min(int(host["extensions"]["serviceBus"]["maxConcurrentSessions"]), JOB_CAP)


def photos(distinct: int, megapixels: float) -> list[bytes]:
    with ProcessPoolExecutor(2) as pool:
        return list(pool.map(photo_jpeg, range(distinct), [megapixels] * distinct, chunksize=16))


_baseline_clients: dict[Any, Any] = {}


def _pipeline_one(args: tuple[str, dict[str, Any], dict[str, str]]) -> float:
    from shared.fetch import FetchPolicy, fetch_image, guarded_client
    from shared.imaging import process_image
    from shared.processing.imaging_step import imaging_options

    url, options, env = args
    settings = Settings.from_env(env)
    policy = FetchPolicy.from_settings(settings)
    # One HTTP client per process, kept, as the chunk worker keeps one per thread: building one costs ~35-65 ms (it
    # loads the CA bundle), which a baseline paying it for every image would add to the pipeline's own time.
    client = _baseline_clients.get(policy) or _baseline_clients.setdefault(policy, guarded_client(policy))
    started = time.perf_counter()
    data = fetch_image(url, policy, client=client).content
    result = process_image(data, imaging_options(JobOptions.model_validate(options), settings))
    assert result.ok, result.error
    return time.perf_counter() - started


def pipeline_images_per_second(urls: list[str], processes: int, env: dict[str, str], options: JobOptions) -> float:
    as_json = options.model_dump(mode="json")
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_pipeline_one, [(urls[0], as_json, env)] * processes))  # warm-up: imports, cascade
        started = time.perf_counter()
        list(pool.map(_pipeline_one, [(u, as_json, env) for u in urls], chunksize=4))
        return len(urls) / (time.perf_counter() - started)


def run_job(env: dict[str, str], urls: list[str], workers: int, work: Path, options: JobOptions) -> dict[str, Any]:
    port = StackPorts.free().blob
    host = start_functions_host(
        {**env, "FUNCTIONS_WORKER_PROCESS_COUNT": str(workers)}, port, work / f"host-{workers}.log"
    )
    try:
        ctx = AppContext.from_settings(Settings.from_env(env))
        key = create_tenant(ctx.store, "bench", "enterprise").api_key
        body = {"urls": urls, "options": options.model_dump(mode="json", exclude_none=True)}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/jobs", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )  # fmt: skip
        posted_at = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as response:
            job_id = json.loads(response.read())["job_id"]
        while True:
            job = ctx.store.get_job(job_id)
            if job and job[0].state.terminal:
                done_at = time.monotonic()
                break
            time.sleep(1)
        chunks = ctx.store.finished_chunks_since(job_id, 0.0)
        result = summarise(job[0].counts.succeeded, chunks, job[0].concurrency)
        # What the user sees: from the POST to a GET showing the terminal state (status timer ticks, reconciliation
        # of duplicate groups included; polled every second) — longer than the chunk window above.
        result["submit_to_done_s"] = round(done_at - posted_at, 1)
        return result
    finally:
        stop_pid(host.pid, grace=15, popen=host)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def summarise(succeeded: int, chunks: list[ChunkDocument], sessions: int) -> dict[str, Any]:
    first_start = min(c.started_at for c in chunks)
    last_end = max(c.finished_at for c in chunks if c.finished_at)
    wall = (last_end - first_start).total_seconds()
    gaps, busy = 0.0, 0.0
    first_waits = []
    for shard in range(sessions):
        on_session = sorted((c for c in chunks if c.chunk % sessions == shard), key=lambda c: c.started_at)
        if not on_session:
            continue
        first_waits.append(on_session[0].queue_seconds)
        for previous, following in itertools.pairwise(on_session):
            assert previous.finished_at is not None
            gaps += max(0.0, (following.started_at - previous.finished_at).total_seconds())
        assert on_session[-1].finished_at is not None
        busy += (on_session[-1].finished_at - on_session[0].started_at).total_seconds()
    return {
        "images": succeeded,
        "wall_s": round(wall, 2),
        "images_per_s": round(succeeded / wall, 2),
        "enqueue_to_start_ms_median": round(1000 * statistics.median(first_waits), 1),
        "queue_work_share": round(gaps / busy, 4) if busy else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--megapixels", type=float, default=2.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--distinct", type=int, default=8,
        help="distinct photos, each served under images/distinct URLs (exact duplicates of each other); "
        "set it to --images for a job of unrelated images",
    )  # fmt: skip
    parser.add_argument(
        "--analyses", default=",".join(DEFAULT_ANALYSES),
        help="comma-separated analyses for the job and the baseline (default: the job default)",
    )  # fmt: skip
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the emulators and the host started below are stopped by their PIDs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    distinct = max(1, min(args.distinct, args.images))
    options = JobOptions.model_validate({"analyses": [a for a in args.analyses.split(",") if a]})
    in_flight = images_in_flight()
    with tempfile.TemporaryDirectory() as tmp, running_image_server() as server:
        server.images = photos(distinct, args.megapixels)
        urls = [server.url(f"/img/{i}.jpg") for i in range(args.images)]
        size_kb = statistics.mean(len(p) for p in server.images) / 1024
        print(
            f"{args.images} JPEGs of {args.megapixels} MP (mean {size_kb:.0f} KB), {distinct} distinct "
            f"({args.images - distinct} exact duplicates), analyses {','.join(options.analyses)}",
            flush=True,
        )
        for workers in [int(w) for w in args.workers.split(",")]:
            stack = LocalStack(data_dir=Path(tmp) / f"stack-{workers}", ports=StackPorts.free())
            stack.start()
            try:
                env = {**example_app_settings(), **stack.settings_env(), **BENCH_SETTINGS}
                provision_app_stores(env)
                baseline = pipeline_images_per_second(urls[: max(100, args.images // 10)], in_flight, env, options)
                before = {p.name: cpu_seconds(p.pid) for p in stack.processes}
                result = run_job(env, urls, workers, Path(tmp), options)
                emulator_cpu = {p.name: round(cpu_seconds(p.pid) - before[p.name], 1) for p in stack.processes}
            finally:
                stack.stop()
            ratio = result["images_per_s"] / baseline
            print(
                f"workers={workers}: end-to-end {result['images_per_s']} img/s over {result['wall_s']} s "
                f"(submitted -> job finished: {result['submit_to_done_s']} s); "
                f"pipeline alone ({in_flight} processes) {baseline:.2f} img/s; ratio {ratio:.0%}; "
                f"enqueue->chunk start (first chunk a session) {result['enqueue_to_start_ms_median']} ms median; "
                f"queue work {result['queue_work_share']:.1%} of session time; "
                f"emulator CPU seconds during the job (same 2 cores) {emulator_cpu}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
