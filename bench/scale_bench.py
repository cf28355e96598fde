"""Scale of the whole app on the local stack: many small jobs at once, and one very large job.

    .venv/bin/python -m bench.scale_bench [--jobs 50,200,1000] [--big-job 100000] [--skip-big] [--clients 32]

It starts its own stack (Azurite, Cosmos and Service Bus emulators on free ports, temporary data) and the
development Functions host with the app's own settings from local.settings.example.json (so the 5 s status timer,
chunks of 500 and the tier caps users get), plus FETCH_ALLOW_LOOPBACK_FOR_TESTS=true and 2 worker processes. Images
are served from 127.0.0.1. Every process it starts is stopped by its PID at the end, also on Ctrl-C or SIGTERM.

Scenario A, for each N in --jobs: a new tenant (tier "new"), then N single-image jobs (`POST /api/jobs` with one URL
of a distinct ~1 MP photo, default analyses) submitted at once by --clients concurrent HTTP clients. While they are
submitted, --pollers clients poll the accepted jobs (`GET /api/jobs/{id}`) until each one's state is neither
accepted nor running: the --poll-window (50) oldest unfinished jobs in turn, at most --poll-rate (50) GETs a second in
all (see PollSchedule). Per job: submit latency (POST sent -> 202 read) and submit -> terminal (POST
sent -> the first GET showing a terminal state, so it includes up to one poll interval and one status-timer tick).
Printed: their p50/p99/max, the time until all N are terminal (first POST sent -> last terminal GET), the final
states (all must be `succeeded`), that every job has exactly one result (`GET /api/jobs/{id}/images`), and, side by
side, the pipeline alone on the same N URLs: 2 processes running fetch + process_image with nothing else
(bench.e2e_bench's baseline, but each process keeps one HTTP client as the chunk worker does; measured after a
warm-up, before the host starts). Targets: all-terminal / pipeline-alone <= 1.5, and p99 submit -> terminal <=
pipeline-alone + 10 s. A POST whose connection is refused or reset before an answer is sent again (at most 3 times;
counted and printed, with the machine's TCP listen-queue overflows: the development host's accept backlog is small),
and the tenant's job documents are counted against the 202s. One warm-up job runs before the first scenario.

Scenario B (unless --skip-big): one job of --big-job small JPEGs (64x64, --big-distinct different ones, each URL
distinct) with `{"analyses": ["exif"]}`, submitted as a manifest blob (one URL a line) in the tenant's folder of the
`manifests` container. Progress (percent, images/s, ETA) is printed about every 10 s; then the total time (POST sent
-> terminal GET), end-to-end images/s, the result count read from Cosmos (every index exactly once) and the pipeline
alone's images/s on a sample (--big-sample) of the same URLs.

For every scenario, from the host log written during it: the status timer's `status roll-up: {json}` lines (tick
duration `duration_ms` and Cosmos requests per tick `cosmos_requests`, "n/a" where the app does not report them);
the host's own `Executed 'Functions.…' (…, Duration=…ms)` lines (status timer and chunk invocation durations, and
any invocation that did not succeed); the count of ERROR / Traceback lines (the first few are printed). And the
largest job document in Cosmos (len(json.dumps(doc)) over the scenario tenant's `job` documents).

Prints figures and MISMATCH lines; asserts nothing; exits 0. Numbers from one run on a noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.e2e_bench import photos
from bench.limits_off import NO_TENANT_LIMITS
from devstack.stack import (
    LocalStack,
    StackPorts,
    example_app_settings,
    provision_app_stores,
    start_functions_host,
    stop_pid,
)
from shared.adapters.job_store import CosmosJobStore
from shared.config import MANIFESTS_CONTAINER, Settings
from shared.messages import manifest_blob_name
from shared.models import JobOptions
from shared.services.context import AppContext
from shared.services.tenants import create_tenant
from tests.core.image_server import make_jpeg, running_image_server

PIPELINE_PROCESSES = 2  # the baseline: as many processes as the machine has cores (and the host worker processes)
ACTIVE_STATES = ("accepted", "running")
BIG_OPTIONS = {"analyses": ["exif"]}
# Connection settings come from the stack; everything else is what users run with.
BENCH_OVERRIDES = {"FETCH_ALLOW_LOOPBACK_FOR_TESTS": "true", "FUNCTIONS_WORKER_PROCESS_COUNT": "2", **NO_TENANT_LIMITS}


def app_settings(stack: LocalStack) -> dict[str, str]:
    return {**example_app_settings(), **stack.settings_env(), **BENCH_OVERRIDES}


# --- HTTP -------------------------------------------------------------------------------------------------------


RETRYABLE = ("ConnectionResetError", "ConnectionRefusedError", "RemoteDisconnected", "BrokenPipeError")


@dataclass
class Api:
    base_url: str
    key: str

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        """(status, parsed body); status 0 and the error text when the request did not get an answer."""
        return self.call_retrying(method, path, body, timeout, attempts=1)[:2]

    def call_retrying(
        self, method: str, path: str, body: Any = None, timeout: float = 60.0, attempts: int = 3
    ) -> tuple[int, Any, int]:
        """Like `call`, but a connection refused or reset before any answer is tried again, up to `attempts` in
        all; also returns how many retries that took. (A reset may come after the server read the request, so the
        caller checks for extra jobs.)"""
        retries = 0
        while True:
            status, answer = self._once(method, path, body, timeout)
            if status != 0 or not str(answer).startswith(RETRYABLE) or retries + 1 >= attempts:
                return status, answer, retries
            retries += 1
            time.sleep(0.1 * retries)

    def _once(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}/api{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_or_text(error.read())
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            cause = error.reason if isinstance(error, urllib.error.URLError) else error
            return 0, f"{type(cause).__name__}: {error}"


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw[:200].decode(errors="replace")


# --- the pipeline alone ----------------------------------------------------------------------------------------

_pipeline_state: dict[str, Any] = {}


def _pipeline_init(env: dict[str, str], options: dict[str, Any]) -> None:
    from shared.fetch import FetchPolicy, guarded_client
    from shared.processing.imaging_step import imaging_options

    settings = Settings.from_env(env)
    policy = FetchPolicy.from_settings(settings)
    _pipeline_state.update(
        policy=policy,
        client=guarded_client(policy),
        options=imaging_options(JobOptions.model_validate(options), settings),
    )


def _pipeline_image(url: str) -> str | None:
    """Fetch + process one image in this pool process; the error code, if the pipeline refused it."""
    from shared.fetch import fetch_image
    from shared.imaging import process_image

    state = _pipeline_state
    data = fetch_image(url, state["policy"], client=state["client"]).content
    result = process_image(data, state["options"])
    return None if result.ok else str(result.error)


def pipeline_alone(urls: list[str], env: dict[str, str], options: JobOptions) -> tuple[float, int]:
    """Seconds for PIPELINE_PROCESSES processes to fetch and process `urls`, after a warm-up, and how many failed.

    Like bench.e2e_bench's baseline, but each process keeps one guarded HTTP client (and its TLS context) for all
    its images, as the chunk worker does: a client per image costs ~35 ms of CA loading, more than a small image's
    whole analysis, and would flatter the app."""
    initargs = (env, options.model_dump(mode="json"))
    with ProcessPoolExecutor(PIPELINE_PROCESSES, initializer=_pipeline_init, initargs=initargs) as pool:
        list(pool.map(_pipeline_image, urls[: 2 * PIPELINE_PROCESSES]))  # warm-up: imports, cascade, connections
        started = time.perf_counter()
        errors = [e for e in pool.map(_pipeline_image, urls, chunksize=4) if e is not None]
        return time.perf_counter() - started, len(errors)


# --- figures ----------------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {pct(values, 50):.{digits}f} {unit}, p99 {pct(values, 99):.{digits}f} {unit}, "
        f"max {max(values):.{digits}f} {unit}"
    )


@dataclass
class HostLog:
    """The part of the host log written since `mark()`: roll-up ticks and errors."""

    path: Path
    offset: int = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace").splitlines()


def listen_overflows() -> int | None:
    """TcpExt ListenOverflows from /proc/net/netstat (Linux, machine-wide): connections a full accept queue dropped.
    Each costs the client a SYN retransmit (~1 s) or a reset."""
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names and names[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return None


ROLL_UP = re.compile(r"status roll-up: (\{.*\})\s*$")
LANE_SUFFIX = re.compile(r"_(high|standard|bulk)$")
EXECUTED = re.compile(r"Executed 'Functions\.(\w+)' \((\w+),.*?Duration=(\d+)ms")


def report_host_log(lines: list[str]) -> None:
    ticks = []
    for line in lines:
        match = ROLL_UP.search(line)
        if match:
            with contextlib.suppress(ValueError):
                ticks.append(json.loads(match.group(1)))

    def field_spread(name: str, unit: str = "") -> str:
        values = [float(t[name]) for t in ticks if isinstance(t.get(name), int | float)]
        if not values:
            return f"{name} n/a"
        suffix = f" {unit}" if unit else ""
        return f"{name} p50 {pct(values, 50):.0f}{suffix}, max {max(values):.0f}{suffix} ({len(values)} ticks)"

    print(
        f"  status roll-up: {len(ticks)} logged ticks; {field_spread('duration_ms', 'ms')}; "
        f"{field_spread('cosmos_requests')}; {field_spread('jobs_changed')}; {field_spread('jobs_seen')}",
        flush=True,
    )
    # The host's own record of every invocation: status timer and chunk worker durations, and any that failed.
    durations: dict[str, list[float]] = {}
    outcomes: Counter[str] = Counter()
    for line in lines:
        match = EXECUTED.search(line)
        if match:
            name, outcome, duration = match.groups()
            durations.setdefault(LANE_SUFFIX.sub("", name), []).append(float(duration))
            if outcome != "Succeeded":
                outcomes[f"{name} {outcome}"] += 1
    timer = durations.pop("status_timer", [])
    print(f"  status timer invocations (host log): {len(timer)}, duration {spread(timer, 'ms', 0)}")
    for kind, values in sorted(durations.items()):
        trend = ""
        if kind.endswith("_worker") and len(values) >= 8:  # chunk invocations: do they slow down as data grows?
            quarter = len(values) // 4
            trend = (
                f"; mean of the first quarter {statistics.mean(values[:quarter]):.0f} ms, "
                f"of the last {statistics.mean(values[-quarter:]):.0f} ms"
            )
        print(f"  {kind} invocations (host log): {len(values):,}, duration {spread(values, 'ms', 0)}{trend}")
    if outcomes:
        print(f"  MISMATCH: invocations that did not succeed: {dict(outcomes)}")
    errors = [line for line in lines if " ERROR " in line or "Traceback" in line or " CRITICAL " in line]
    warnings = [line for line in lines if " WARNING " in line]
    print(f"  host log: {len(lines)} lines, {len(errors)} ERROR/Traceback lines, {len(warnings)} WARNING lines")
    for line in (errors or warnings)[:5]:
        print(f"    {line[:300]}")


def _jobs_container(ctx: AppContext) -> Any:
    """The `jobs` container itself, for the read-only queries the store has no method for (the context holds the
    store as a port; here it is the Cosmos one)."""
    assert isinstance(ctx.store, CosmosJobStore)
    return ctx.store._jobs


def report_job_documents(ctx: AppContext, tenant_id: str, accepted: int) -> None:
    """The tenant's job documents, read-only straight from the container (the store has no query for this): the
    largest, and whether there is one per accepted POST (a POST sent again could have made a second job)."""
    try:
        docs = list(
            _jobs_container(ctx).query_items(
                "SELECT * FROM c WHERE c.type = 'job' AND c.tenantId = @tenant",
                parameters=[{"name": "@tenant", "value": tenant_id}],
                enable_cross_partition_query=True,
            )
        )
    except Exception as exc:  # a report, not a check that stops the run
        print(f"  job documents: could not be read: {type(exc).__name__}: {exc}", flush=True)
        return
    if len(docs) != accepted:
        print(f"  MISMATCH: {len(docs)} job documents for the tenant, {accepted} POSTs answered 202")
    if not docs:
        return
    sizes = sorted((len(json.dumps(doc)), str(doc.get("jobId"))) for doc in docs)
    size, job_id = sizes[-1]
    median = statistics.median(s for s, _ in sizes)
    print(f"  largest job document: {size:,} bytes ({job_id}; {len(docs)} job documents, median {median:,.0f})",
          flush=True)  # fmt: skip


# --- scenario A: many single-image jobs -------------------------------------------------------------------------


@dataclass
class Track:
    index: int
    url: str
    job_id: str | None = None
    sent_at: float = 0.0
    submit_s: float | None = None
    submit_error: str | None = None
    terminal_at: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    submit_retries: int = 0
    polls: int = 0
    poll_errors: int = 0
    results: int | None = None
    results_error: str | None = None
    result_pages: list[str] = field(default_factory=list)  # per page: item ids and the continuation, to diagnose

    @property
    def state(self) -> str:
        return str(self.status.get("state", "never seen"))


class PollSchedule:
    """Which job to GET next: the --poll-window oldest jobs not yet seen terminal, in turn, at no more than
    --poll-rate GETs a second in all. Polling every job of a thousand every half second would be ~2,000 GETs/s: on
    this machine the pollers then take the CPU the app needs (a first run made 89,217 GETs, ~290/s). Jobs are
    processed about first in, first out, so the oldest unfinished ones are where a job turns terminal next; one that
    finishes out of order is seen when it enters the window, which only makes submit -> terminal longer."""

    def __init__(self, expected: int, deadline: float, window: int, rate: float) -> None:
        self._pending: list[Track] = []  # submitted, not yet seen terminal, in submission order
        self._turn = 0
        self._cond = threading.Condition()
        self._open = expected  # jobs neither terminal nor failed to submit
        self._window, self._interval = window, 1.0 / rate
        self._next_slot = time.monotonic()
        self.deadline = deadline
        self._aborted = False

    def add(self, track: Track) -> None:
        with self._cond:
            self._pending.append(track)
            self._cond.notify()

    def settle(self, track: Track | None = None) -> None:
        with self._cond:
            if track is not None:
                self._pending.remove(track)
            self._open -= 1
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def next_due(self) -> Track | None:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._aborted or self._open <= 0 or now > self.deadline:
                    self._cond.notify_all()
                    return None
                if self._pending and self._next_slot <= now:
                    self._next_slot = max(self._next_slot + self._interval, now)
                    window = self._pending[: self._window]
                    self._turn = (self._turn + 1) % len(window)
                    return window[self._turn]
                self._cond.wait(min(max(self._next_slot - now, 0.001), 0.5))


def run_many_jobs(
    api: Api, urls: list[str], clients: int, pollers: int, poll: tuple[int, float], timeout: float
) -> tuple[list[Track], float, float]:
    """Submits one job per URL with `clients` threads while `pollers` threads poll them; returns the tracks, the
    time the first POST was sent and the time the waiting ended."""
    tracks = [Track(i, url) for i, url in enumerate(urls)]
    started = time.monotonic()
    schedule = PollSchedule(len(tracks), started + timeout, *poll)

    def submit(track: Track) -> None:
        track.sent_at = time.monotonic()
        status, body, track.submit_retries = api.call_retrying("POST", "/jobs", {"urls": [track.url]})
        track.submit_s = time.monotonic() - track.sent_at
        if status == 202 and isinstance(body, dict) and "job_id" in body:
            track.job_id = body["job_id"]
            schedule.add(track)
        else:
            track.submit_error = f"{status} {str(body)[:200]}"
            schedule.settle()

    def poll_loop() -> None:
        while (track := schedule.next_due()) is not None:
            status, body = api.call("GET", f"/jobs/{track.job_id}", timeout=30)
            track.polls += 1
            if status == 200 and isinstance(body, dict):
                track.status = body
                if body.get("state") not in ACTIVE_STATES and track.terminal_at is None:
                    track.terminal_at = time.monotonic()
                    schedule.settle(track)
            else:
                track.poll_errors += 1

    poll_pool, submit_pool = ThreadPoolExecutor(pollers), ThreadPoolExecutor(clients)
    try:
        polling = [poll_pool.submit(poll_loop) for _ in range(pollers)]
        list(submit_pool.map(submit, tracks))
        for future in polling:
            future.result()
        return tracks, started, time.monotonic()
    finally:  # on Ctrl-C / SIGTERM too: no new request starts, the ones in flight end within their timeout
        schedule.abort()
        submit_pool.shutdown(wait=True, cancel_futures=True)
        poll_pool.shutdown(wait=True)


def server_duration(status: dict[str, Any]) -> float | None:
    """The job's own created_at -> finished_at, in seconds (the status timer's clock, without the polling lag)."""
    try:
        created = datetime.fromisoformat(str(status["created_at"]))
        finished = datetime.fromisoformat(str(status["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return (finished - created).total_seconds()


def count_results(api: Api, track: Track) -> None:
    total, continuation = 0, None
    for _ in range(100):
        path = f"/jobs/{track.job_id}/images?page_size=100"
        if continuation:
            path += "&continuation=" + urllib.parse.quote(continuation, safe="")
        status, body = api.call("GET", path)
        if status != 200 or not isinstance(body, dict):
            track.results_error = f"{status} {str(body)[:200]}"
            return
        items = body.get("items") or []
        total += len(items)
        continuation = body.get("continuation")
        described = [f"{i.get('id')} (job_id {i.get('job_id')}, index {i.get('index')})" for i in items[:3]]
        track.result_pages.append(f"{len(items)} items {described}, continuation {str(continuation)[:80]!r}")
        if not continuation:
            break
    track.results = total


def scenario_many(
    ctx: AppContext, base_url: str, urls: list[str], baseline_s: float, args: argparse.Namespace, log: HostLog
) -> None:
    n = len(urls)
    tenant = create_tenant(ctx.store, f"scale-{n}", "new")
    api = Api(base_url, tenant.api_key)
    print(f"\n== Scenario A: {n} single-image jobs, {args.clients} submitting clients, {args.pollers} pollers ==")
    log.mark()
    cpu_before = cpu_snapshot()
    overflows_before = listen_overflows()
    poll = (args.poll_window, args.poll_rate)
    tracks, started, ended = run_many_jobs(api, urls, args.clients, args.pollers, poll, args.timeout)
    overflows_after = listen_overflows()
    report_cpu(cpu_before, ended - started)
    submitted = [t for t in tracks if t.job_id]
    terminal = [t for t in submitted if t.terminal_at is not None]
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(lambda t: count_results(api, t), terminal))

    submit_s = [t.submit_s for t in tracks if t.submit_s is not None]
    to_terminal = [t.terminal_at - t.sent_at for t in terminal if t.terminal_at is not None]
    all_done = len(terminal) == n
    # Not all terminal: the wait so far is a lower bound.
    all_terminal_s = (max(t.terminal_at for t in terminal if t.terminal_at) if all_done else ended) - started
    created_to_finished = [seconds for t in terminal if (seconds := server_duration(t.status)) is not None]
    submit_window = max(t.sent_at + (t.submit_s or 0) for t in tracks) - started
    intervals = [
        (t.terminal_at - t.sent_at) / t.polls for t in terminal if t.terminal_at is not None and t.polls
    ]  # fmt: skip
    print(f"  submit (POST sent -> 202 read): {spread([1000 * s for s in submit_s], 'ms', 0)}; all {n} POSTs "
          f"answered in {submit_window:.1f} s ({n / submit_window:.0f}/s)")  # fmt: skip
    of = "" if all_done else f" (the {len(terminal)} terminal jobs only)"
    print(f"  submit -> terminal (POST sent -> first terminal GET): {spread(to_terminal)}{of}")
    print(f"  the jobs' own created_at -> finished_at: {spread(created_to_finished)}{of}")
    retried = sum(t.submit_retries for t in tracks)
    if retried:
        print(f"  submit: {retried} POST(s) sent again after the connection was refused or reset before an answer "
              f"({sum(1 for t in tracks if t.submit_retries)} jobs)")  # fmt: skip
    if overflows_before is not None and overflows_after is not None:
        print(f"  TCP listen-queue overflows during the run (machine-wide; each costs a client a ~1 s SYN retransmit "
              f"or a reset): {overflows_after - overflows_before}")  # fmt: skip
    polls = sum(t.polls for t in tracks)
    print(
        f"  polls: {polls:,} GETs ({polls / (ended - started):.0f}/s), mean interval per job "
        f"{statistics.mean(intervals) if intervals else float('nan'):.2f} s, "
        f"{sum(t.poll_errors for t in tracks)} non-200 answers"
    )
    states = Counter(t.state if t.job_id else "not submitted" for t in tracks)
    print(f"  final states: {dict(states)}")
    if len(terminal) < n:
        print(f"  all terminal: NOT REACHED: {n - len(terminal)} of {n} jobs not terminal after "
              f"{ended - started:.0f} s (--timeout {args.timeout:.0f} s)")  # fmt: skip
        waiting = [t for t in tracks if t.terminal_at is None]
        for t in waiting[:10]:
            print(f"    {t.job_id or '(not submitted)'}: {t.submit_error or t.state} {json.dumps(t.status)[:300]}")
    else:
        print(f"  all {n} terminal after {all_terminal_s:.1f} s")
    if states.get("succeeded", 0) != n:
        print(f"  MISMATCH: {states.get('succeeded', 0)} of {n} jobs succeeded: {dict(states)}")
        for t in [t for t in tracks if t.state != "succeeded"][:5]:
            print(f"    {t.job_id}: {t.submit_error or ''} {json.dumps(t.status)[:300]}")
    wrong_counts = [t for t in terminal if (t.status.get("counts") or {}).get("succeeded") != 1]
    if wrong_counts:
        print(f"  MISMATCH: {len(wrong_counts)} terminal jobs do not count exactly 1 succeeded image, e.g. "
              f"{wrong_counts[0].job_id}: {wrong_counts[0].status.get('counts')}")  # fmt: skip
    one_result = sum(1 for t in terminal if t.results == 1)
    print(f"  results: {one_result} of {n} jobs have exactly one result")
    if one_result != n:
        odd = Counter(
            "not submitted" if t.job_id is None
            else "not terminal" if t.terminal_at is None
            else "error" if t.results_error
            else str(t.results)
            for t in tracks if t.results != 1
        )  # fmt: skip
        print(f"  MISMATCH: jobs without exactly one result, by result count: {dict(odd)}")
        errors = [t.results_error for t in tracks if t.results_error]
        if errors:
            print(f"    e.g. {errors[0]}")
        for t in [t for t in terminal if t.results is not None and t.results != 1][:5]:
            print(f"    {t.job_id}: {t.results} results in {len(t.result_pages)} page(s): {'; '.join(t.result_pages)}")
            with contextlib.suppress(Exception):
                print(f"      image documents in Cosmos: indexes {stored_result_indexes(ctx, str(t.job_id))}")
    ratio = all_terminal_s / baseline_s if baseline_s else float("inf")
    print(
        f"  pipeline alone ({PIPELINE_PROCESSES} processes, same {n} URLs): {baseline_s:.1f} s; "
        f"all-terminal / pipeline-alone = {'' if all_done else '>= '}{ratio:.2f} "
        f"(target <= 1.5: {'met' if all_done and ratio <= 1.5 else 'NOT met'})"
    )
    if to_terminal:
        p99 = pct(to_terminal, 99)
        met = p99 <= baseline_s + 10 and len(terminal) == n
        print(
            f"  p99 submit->terminal {p99:.1f} s <= pipeline-alone + 10 s ({baseline_s + 10:.1f} s): "
            f"{'met' if met else 'NOT met'}"
        )
    report_host_log(log.since_mark())
    report_job_documents(ctx, tenant.tenant.tenant_id, len(submitted))


# --- scenario B: one large manifest job -------------------------------------------------------------------------


def stored_result_indexes(ctx: AppContext, job_id: str) -> list[int]:
    items: Iterable[dict[str, Any]] = _jobs_container(ctx).query_items(
        "SELECT c.index FROM c WHERE c.jobId = @job AND c.type = 'image'",
        parameters=[{"name": "@job", "value": job_id}],
        enable_cross_partition_query=True,  # the filter routes it; the partition key may be (jobId, bucket)
    )
    return [int(item["index"]) for item in items]


def scenario_big(
    ctx: AppContext, base_url: str, urls: list[str], sample_rate: float, args: argparse.Namespace, log: HostLog
) -> None:
    n = len(urls)
    print(f"\n== Scenario B: one manifest job of {n:,} 64x64 JPEGs, analyses {BIG_OPTIONS['analyses']} ==")
    tenant = create_tenant(ctx.store, f"scale-big-{n}", "new")
    api = Api(base_url, tenant.api_key)
    name = f"scale-{n}.txt"
    ctx.blobs.write(
        MANIFESTS_CONTAINER, manifest_blob_name(tenant.tenant.tenant_id, name), "\n".join(urls).encode(), "text/plain"
    )
    log.mark()
    sent_at = time.monotonic()
    status, body = api.call("POST", "/jobs", {"manifest": name, "options": BIG_OPTIONS})
    submit_s = time.monotonic() - sent_at
    if status != 202 or not isinstance(body, dict):
        print(f"  MISMATCH: POST answered {status} {str(body)[:300]}")
        report_host_log(log.since_mark())
        return
    job_id = body["job_id"]
    print(f"  POST {{manifest}} -> 202 in {submit_s * 1000:.0f} ms: job {job_id}", flush=True)
    deadline = sent_at + args.big_timeout
    job: dict[str, Any] = {}
    next_print = sent_at + 10
    terminal_at = None
    while time.monotonic() < deadline:
        status, got = api.call("GET", f"/jobs/{job_id}", timeout=30)
        now = time.monotonic()
        if status == 200 and isinstance(got, dict):
            job = got
            if job.get("state") not in ACTIVE_STATES:
                terminal_at = now
                break
        if now >= next_print:
            next_print += 10
            counts = job.get("counts") or {}
            done = sum(int(counts.get(k, 0)) for k in ("succeeded", "failed", "skipped"))
            eta = job.get("eta_seconds")
            rate = job.get("images_per_second")
            print(
                f"  {now - sent_at:6.0f} s: {job.get('state')} {float(job.get('percent') or 0):5.1f} % "
                f"({done:,}/{job.get('total_images') or '?'}), {done / (now - sent_at):.1f} img/s since POST, "
                f"job's rate {rate if rate is not None else 'n/a'}, eta {f'{eta:.0f} s' if eta is not None else 'n/a'}",
                flush=True,
            )
        time.sleep(1.0)
    if terminal_at is None:
        print(f"  NOT TERMINAL after {args.big_timeout:.0f} s: {json.dumps(job)[:400]}")
    else:
        total_s = terminal_at - sent_at
        counts = job.get("counts") or {}
        print(f"  terminal: {job.get('state')} after {total_s:.1f} s (POST sent -> first terminal GET); "
              f"counts {counts}")  # fmt: skip
        print(f"  end to end {n / total_s:.1f} images/s; pipeline alone ({PIPELINE_PROCESSES} processes, "
              f"{min(n, args.big_sample):,} of the same URLs) {sample_rate:.1f} images/s; "
              f"ratio {n / total_s / sample_rate:.0%}")  # fmt: skip
        if job.get("state") != "succeeded" or counts.get("succeeded") != n:
            print(f"  MISMATCH: expected succeeded with {n} succeeded images: {json.dumps(job)[:400]}")
    try:
        started = time.monotonic()
        indexes = stored_result_indexes(ctx, job_id)
        distinct = set(indexes)
        complete = distinct == set(range(n)) and len(indexes) == n
        verdict = "" if complete else "  MISMATCH: expected every index once"
        print(f"  stored results: {len(indexes):,} ({len(distinct):,} distinct indexes; read in "
              f"{time.monotonic() - started:.1f} s){verdict}")  # fmt: skip
    except Exception as exc:  # a report, not a check that stops the run
        print(f"  stored results: could not be read: {exc}")
    report_host_log(log.since_mark())
    report_job_documents(ctx, tenant.tenant.tenant_id, 1)


# --- main -------------------------------------------------------------------------------------------------------


def timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    value = action()
    print(f"{label}: {time.monotonic() - started:.1f} s", flush=True)
    return value


def warm_up(ctx: AppContext, base_url: str, url: str) -> None:
    """One single-image job of its own tenant, waited for: the first scenario should not pay for imports in the
    worker processes, the pipeline's child process and the first connections."""
    api = Api(base_url, create_tenant(ctx.store, "scale-warm-up", "new").api_key)
    started = time.monotonic()
    status, body, _ = api.call_retrying("POST", "/jobs", {"urls": [url]})
    if status != 202 or not isinstance(body, dict):
        print(f"warm-up job: POST answered {status} {str(body)[:300]}", flush=True)
        return
    state = "accepted"
    while state in ACTIVE_STATES and time.monotonic() < started + 300:
        time.sleep(0.5)
        with ThreadPoolExecutor(4) as pool:  # a few at once, so every worker process serves one
            answers = list(pool.map(lambda _: api.call("GET", f"/jobs/{body['job_id']}"), range(4)))
        state = next((str(b.get("state")) for c, b in answers if c == 200 and isinstance(b, dict)), state)
    print(f"warm-up job: {state} after {time.monotonic() - started:.1f} s", flush=True)


def measure_baseline(label: str, urls: list[str], env: dict[str, str], options: JobOptions) -> float:
    try:
        seconds, errors = pipeline_alone(urls, env, options)
    except Exception as exc:  # report, compare with nothing
        print(f"pipeline alone, {label}: ERROR {type(exc).__name__}: {exc}", flush=True)
        return math.nan
    failed = f"; MISMATCH: {errors} images failed" if errors else ""
    print(f"pipeline alone, {label}: {seconds:.1f} s ({len(urls) / seconds:.1f} img/s){failed}", flush=True)
    return seconds


@contextlib.contextmanager
def functions_host(env: dict[str, str], log_path: Path) -> Iterator[str]:
    port = StackPorts.free().blob
    host = start_functions_host(env, port, log_path)
    CPU_ROOTS[APP] = host.pid
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_pid(host.pid, grace=15, popen=host)


# Process trees whose CPU time each scenario reports: the emulators, the app, and this process (its submitting and
# polling clients and the image servers).
CPU_ROOTS: dict[str, int] = {}
APP = "app (host, workers, pipeline children)"
APP_LEVELS = ("of which the host", "workers", "pipeline children")


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its children already reaped), from /proc (Linux)."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    return table


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far of each root's whole process tree (live descendants included), and the machine's idle."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)

    roots = set(CPU_ROOTS.values())

    def tree(root: int) -> list[float]:
        """The CPU of the root, of its children, of their children...: its whole tree level by level, but not
        another root's tree (this process started them all)."""
        levels: list[float] = []
        todo = [root]
        while todo:
            levels.append(sum(table.get(pid, (0, 0.0))[1] for pid in todo))
            todo = [child for pid in todo for child in children.get(pid, ()) if child not in roots]
        return levels

    snapshot = {}
    for name, pid in CPU_ROOTS.items():
        levels = tree(pid)
        snapshot[name] = sum(levels)
        if name == APP:  # split as it runs: the host, its worker processes, their pipeline children
            host, workers, *pipeline = [*levels, 0.0, 0.0]
            snapshot.update(zip(APP_LEVELS, (host, workers, sum(pipeline)), strict=True))
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    snapshot["idle"] = (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")  # idle + iowait
    return snapshot


def report_cpu(before: dict[str, float], wall: float) -> None:
    after = cpu_snapshot()
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items())
    cores = os.cpu_count() or 1
    print(f"  CPU seconds in the scenario ({cores} cores x {wall:.1f} s = {cores * wall:.0f}): {parts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="50,200,1000", help="comma-separated job counts for scenario A")
    parser.add_argument("--big-job", type=int, default=100_000, help="images in the scenario B job")
    parser.add_argument("--skip-big", action="store_true", help="skip scenario B")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients submitting")
    parser.add_argument("--pollers", type=int, default=4, help="concurrent HTTP clients polling")
    parser.add_argument("--poll-window", type=int, default=50, help="how many of the oldest unfinished jobs to poll")
    parser.add_argument("--poll-rate", type=float, default=50.0, help="GETs a second at most, all pollers together")
    parser.add_argument("--megapixels", type=float, default=1.0, help="size of scenario A's photos")
    parser.add_argument("--big-distinct", type=int, default=300, help="distinct 64x64 JPEGs in scenario B")
    parser.add_argument("--big-sample", type=int, default=2000, help="images in scenario B's pipeline-alone sample")
    parser.add_argument("--timeout", type=float, default=1800, help="give up waiting on a scenario A run (s)")
    parser.add_argument("--big-timeout", type=float, default=4 * 3600, help="give up waiting on scenario B (s)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the host log here (default: temporary)")
    args = parser.parse_args()
    job_counts = [int(j) for j in args.jobs.split(",") if j.strip()]
    # SIGTERM unwinds like Ctrl-C, so the emulators and the host started below are stopped by their PIDs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        logs = args.log_dir or tmp
        logs.mkdir(parents=True, exist_ok=True)
        photo_server = cleanup.enter_context(running_image_server())
        small_server = cleanup.enter_context(running_image_server())
        # Scenario A: distinct photos, and distinct ones again for each N (thumbnails are stored by content hash,
        # so a photo seen in an earlier run would be cheaper).
        photo_server.images = timed(
            f"generated {sum(job_counts) + 1} distinct {args.megapixels} MP photos",
            lambda: photos(sum(job_counts) + 1, args.megapixels),  # the last one for the warm-up job
        )
        size_kb = statistics.mean(len(p) for p in photo_server.images) / 1024
        print(f"photos: mean {size_kb:.0f} KB", flush=True)
        offsets = [sum(job_counts[:i]) for i in range(len(job_counts))]
        runs = [
            (n, [photo_server.url(f"/img/{o + i}.jpg") for i in range(n)])
            for n, o in zip(job_counts, offsets, strict=True)
        ]
        big_urls: list[str] = []
        if not args.skip_big:
            small_server.images = [make_jpeg(seed, 64) for seed in range(args.big_distinct)]
            big_urls = [small_server.url(f"/img/{i}.jpg") for i in range(args.big_job)]

        stack = LocalStack(data_dir=tmp / "stack", ports=StackPorts.free())
        stack.start()
        cleanup.callback(stack.stop)
        CPU_ROOTS.update({f"{p.name} emulator": p.pid for p in stack.processes})
        CPU_ROOTS["bench (clients, image servers)"] = os.getpid()
        env = app_settings(stack)
        provision_app_stores(env)
        print(
            f"stack up; app settings: CHUNK_SIZE={env['CHUNK_SIZE']} "
            f"STATUS_TIMER_SCHEDULE={env['STATUS_TIMER_SCHEDULE']} "
            f"TIER_JOB_CONCURRENCY={env['TIER_JOB_CONCURRENCY']} FUNCTIONS_WORKER_PROCESS_COUNT=2",
            flush=True,
        )

        # The pipeline alone, before the host runs (nothing else on the machine but the idle emulators).
        baselines: dict[int, float] = {}
        for n, urls in runs:
            baselines[n] = measure_baseline(f"{n} photos, default analyses", urls, env, JobOptions())
        sample_rate = math.nan
        if big_urls:
            sample = big_urls[: args.big_sample]
            sample_s = measure_baseline(
                f"{len(sample)} 64x64 JPEGs, exif", sample, env, JobOptions.model_validate(BIG_OPTIONS)
            )
            sample_rate = len(sample) / sample_s

        host_log = HostLog(logs / "host.log")
        base_url = cleanup.enter_context(functions_host(env, host_log.path))
        print(f"host up at {base_url}; log {host_log.path}", flush=True)
        ctx = AppContext.from_settings(Settings.from_env(env))
        warm_up(ctx, base_url, photo_server.url(f"/img/{sum(job_counts)}.jpg"))
        for n, urls in runs:
            try:
                scenario_many(ctx, base_url, urls, baselines[n], args, host_log)
            except Exception as exc:  # report and go on with the next scenario
                print(f"  ERROR: scenario A with {n} jobs stopped: {type(exc).__name__}: {exc}", flush=True)
        if big_urls:
            try:
                scenario_big(ctx, base_url, big_urls, sample_rate, args, host_log)
            except Exception as exc:
                print(f"  ERROR: scenario B stopped: {type(exc).__name__}: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
