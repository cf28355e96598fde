"""The cost of the limits on the local Cosmos emulator: what the API rate limiter adds to every call, what contention
on one tenant's bucket does to it, and what the shared per-host fetch rate costs per image.

    .venv/bin/python -m bench.limits_bench [--calls 500] [--threads 4]

Starts its own Azurite and Cosmos emulator on free ports and times, in this process:
- `check_api_rate` for one tenant, one call after another (a granted call: one point read and one etag-guarded
  replace; a refused call: one read), in milliseconds and Cosmos requests per call;
- the same from `--threads` threads at once on one tenant's bucket (threads of a process take turns), and from as
  many processes at once (each its own client, as instances are: etag conflicts re-read and retry);
- a host's shared rate bucket taken a lease at a time (FETCH_HOST_RATE_LEASE), in Cosmos requests per fetch;
- the active-jobs quota at its cap: a tenant whose list holds `--active` unfinished one-image jobs submits from
  `--threads` processes at once; each submission looks the listed jobs up and is refused (job-store requests and
  milliseconds per submission).
Prints figures, asserts nothing; one run on a noisy 2-core machine (the emulator's CPU is in the figures).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from devstack.stack import LocalStack, StackPorts, provision_app_stores
from shared.adapters.job_store import CosmosJobStore
from shared.adapters.limits_store import CosmosLimitsStore
from shared.config import Settings
from shared.errors import QuotaExceeded, RateLimited
from shared.limits.api_rate import check_api_rate
from shared.limits.quotas import day, reserve
from shared.messages import usage_key
from shared.models import JobDocument, JobOptions, Lane, TenantDocument, utcnow
from shared.polite_fetch import HostGate, PolitePolicy
from shared.services.context import AppContext


def _tenant(tenant_id: str, tier: str) -> TenantDocument:
    return TenantDocument(
        id=tenant_id, tenantId=tenant_id, name="bench", tier=tier, keyHash="x", callbackSecret="y", created_at=utcnow()
    )


CONTENDED: list[int] = []


def _limits_requests(ctx: AppContext) -> int:
    """Cosmos requests the limits store has made (the context holds it as a port; here it is the Cosmos one)."""
    assert isinstance(ctx.limits, CosmosLimitsStore)
    return ctx.limits.requests


def _timed_calls(ctx: AppContext, tenant: TenantDocument, calls: int) -> tuple[list[float], int, int]:
    """Milliseconds per call, calls refused, Cosmos requests made."""
    before = _limits_requests(ctx)
    times, refused = [], 0
    for _ in range(calls):
        started = time.perf_counter()
        try:
            if check_api_rate(ctx.limits, ctx.settings, tenant) is None:
                CONTENDED.append(1)  # let through after losing every etag race (no RateLimit headers)
        except RateLimited:
            refused += 1
        times.append((time.perf_counter() - started) * 1000)
    return times, refused, _limits_requests(ctx) - before


def _process_calls(env: dict[str, str], tenant_id: str, calls: int) -> tuple[list[float], int, int, int]:
    """One process of the multi-process case: its own context and client, warmed up, then timed."""
    ctx = AppContext.from_settings(Settings.from_env(env))
    check_api_rate(ctx.limits, ctx.settings, _tenant("twarm", "new"))
    return (*_timed_calls(ctx, _tenant(tenant_id, "new"), calls), len(CONTENDED))


def _quota_calls(env: dict[str, str], tenant_id: str, active: int, calls: int) -> tuple[list[float], int, int]:
    """One process submitting to a tenant at its active-jobs cap: ms per submission, refusals, job-store requests."""
    ctx = AppContext.from_settings(Settings.from_env(env))
    store = ctx.store
    assert isinstance(store, CosmosJobStore)
    before, times, refused = 0, [], 0
    for index in range(calls + 1):  # the first is not timed: a process's first connection and first query plan
        if index == 1:
            before = store.requests
        started = time.perf_counter()
        try:
            reserve(ctx.limits, store, (active, 0), tenant_id, f"jnew{index}", 1)
        except QuotaExceeded:
            refused += 1 if index else 0
        if index:
            times.append((time.perf_counter() - started) * 1000)
    return times, refused, store.requests - before


def _fill_active_jobs(ctx: AppContext, tenant_id: str, active: int) -> None:
    """`active` one-image jobs of the tenant, submitted and not processed yet, listed as its active jobs."""
    ids = [f"jq{tenant_id}{index:05d}" for index in range(active)]
    for job_id in ids:
        ctx.store.create_job(
            JobDocument(
                id=job_id, jobId=job_id, tenantId=tenant_id, lane=Lane("standard"), concurrency=1, source="upload",
                options=JobOptions(), created_at=utcnow(), total_images=1, total_chunks=1,
            )
        )  # fmt: skip
    usage = {"type": "usage", "active_jobs": ids, "day": day(utcnow()), "images_today": 0}
    assert ctx.limits.create(usage_key(tenant_id), usage)


def _summary(label: str, times: list[float], refused: int, requests: int) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return (
        f"{label:<52} median {statistics.median(times):6.2f} ms  p95 {p95:6.2f} ms  "
        f"{requests / len(times):4.2f} Cosmos requests/call  refused {refused}/{len(times)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--active", type=int, default=100, help="the quota's cap (enterprise's default: 100)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data:
        stack = LocalStack(Path(data), StackPorts.free())
        stack.start(services=("azurite", "cosmos"))
        try:
            _measure(stack, args.calls, args.threads, args.active)
        finally:
            stack.stop()


def _measure(stack: LocalStack, calls: int, threads: int, active: int) -> None:
    env = {
        **stack.settings_env(),
        "TIER_API_RATE": "new=100000,enterprise=100000,free=5",
        "TIER_API_BURST": "new=100000,enterprise=100000,free=5",
    }
    provision_app_stores(env)
    ctx = AppContext.from_settings(Settings.from_env(env))
    # The client's first connection is not the limiter's cost.
    check_api_rate(ctx.limits, ctx.settings, _tenant("twarm", "new"))

    print(_summary("API limiter, granted calls, one after another", *_timed_calls(ctx, _tenant("tseq", "new"), calls)))
    print(_summary("API limiter, refused calls (empty bucket)", *_timed_calls(ctx, _tenant("tfree", "free"), calls)))

    hot = _tenant("thot", "new")
    before = _limits_requests(ctx)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda _: _timed_calls(ctx, hot, calls // threads), range(threads)))
    wall = time.perf_counter() - started
    times = [t for r in results for t in r[0]]
    refused = sum(r[1] for r in results)
    label = f"API limiter, one tenant from {threads} threads at once"
    print(_summary(label, times, refused, _limits_requests(ctx) - before), f" {len(times) / wall:.0f} calls/s")

    with ProcessPoolExecutor(max_workers=threads, mp_context=multiprocessing.get_context("spawn")) as processes:
        list(processes.map(int, range(threads)))  # started before the clock runs
        started = time.perf_counter()
        per_process = list(
            processes.map(_process_calls, [env] * threads, ["tproc"] * threads, [calls // threads] * threads)
        )
        wall = time.perf_counter() - started
    times = [t for r in per_process for t in r[0]]
    label = f"API limiter, one tenant from {threads} processes at once"
    requests = sum(r[2] for r in per_process)
    contended = sum(r[3] for r in per_process)
    print(
        _summary(label, times, sum(r[1] for r in per_process), requests),
        f" {len(times) / wall:.0f} calls/s, {contended} let through after losing every etag race",
    )

    polite = PolitePolicy(host_rate=1_000_000, host_burst=1_000_000, rate_lease=10)
    gate = HostGate(polite, ctx.limits)
    before = _limits_requests(ctx)
    started = time.perf_counter()
    for _ in range(calls):
        with gate.turn("images.example.com:443", time.monotonic() + 10):
            pass
    per_fetch = (time.perf_counter() - started) * 1000 / calls
    print(
        f"{'host rate, lease of 10, one process':<52} {per_fetch:6.2f} ms/fetch  "
        f"{(_limits_requests(ctx) - before) / calls:4.2f} Cosmos requests/fetch"
    )

    _fill_active_jobs(ctx, "tcap", active)
    each = [max(1, calls // 10 // threads)] * threads  # slow when each one reads the whole list: keep the run short
    with ProcessPoolExecutor(max_workers=threads, mp_context=multiprocessing.get_context("spawn")) as processes:
        list(processes.map(int, range(threads)))
        quota_runs = list(processes.map(_quota_calls, [env] * threads, ["tcap"] * threads, [active] * threads, each))
    times = [t for r in quota_runs for t in r[0]]
    label = f"active-jobs quota at its cap of {active}, {threads} processes"
    summary = _summary(label, times, sum(r[1] for r in quota_runs), sum(r[2] for r in quota_runs))
    print(summary.replace("Cosmos requests/call", "job-store requests/call"))


if __name__ == "__main__":
    main()
