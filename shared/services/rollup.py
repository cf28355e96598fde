"""The status timer's use case: fold what changed into job documents, at a cost that follows what changed.

A tick:
1. moves dead letters out of the dead-letter subqueues (only queues whose depth shows some) into Cosmos;
2. asks Cosmos once for every job-owned document written since the last tick (chunk records, dead letters,
   expansions, duplicate summaries, callback states: `CosmosJobStore.changes_since`), less those it has already
   folded (the cursor remembers their etags inside the overlap it re-reads);
3. for each job among them, one read and one etag-guarded replace of the job document, a few jobs at a time.

Ten thousand jobs with nothing new cost the change query and the cursor: a handful of requests. The timer is the
only writer of a job document's computed fields (the API only patches `cancel_requested`); a replace that loses to
such a patch leaves the job's changes unfolded, so the next tick takes them again. Timer triggers run one at a time
across all instances, so there is no lock to take.

When a job ends, its follow-ups go to the finish queue (duplicate reconciliation, then the callback) rather than
running inside the tick: a slow callback receiver or a large reconciliation never delays another job's status.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from shared import metrics
from shared.adapters.job_store import Change, RequestMeter
from shared.adapters.servicebus import DeadLetter
from shared.config import ALL_QUEUES, CHUNK_QUEUES, EXPAND_QUEUE, FINISH_QUEUE
from shared.messages import dead_letter_document_id, finish_message
from shared.models import (
    CallbackStatus,
    ChunkMessage,
    DeadLetterDocument,
    ExpandMessage,
    FinishMessage,
    JobDocument,
    RollUpCursor,
    utcnow,
)
from shared.progress import settle
from shared.services.context import AppContext
from shared.views import job_entry

log = logging.getLogger(__name__)

# The change query re-reads this many seconds before the newest change it saw: Cosmos stamps `_ts` when a write
# commits, in whole seconds, and a write committed in the same second (or seen late on another partition's clock)
# must not be missed. Changes already folded in the overlap are recognised by their etag.
CHANGE_OVERLAP_SECONDS = 10


@dataclass
class RollUpReport:
    changes: int = 0  # new changes this tick
    jobs_changed: int = 0
    jobs_updated: int = 0
    jobs_deferred: int = 0  # changed jobs left for the next tick (over STATUS_ROLLUP_MAX_JOBS)
    jobs_finished: list[str] = field(default_factory=list)
    conflicts: int = 0
    failures: int = 0
    dead_letters_moved: int = 0
    follow_ups_sent: int = 0
    cosmos_requests: int = 0
    duration_ms: float = 0.0
    lane_depths: dict[str, dict[str, int]] = field(default_factory=dict)


def roll_up_status(ctx: AppContext, now: datetime | None = None) -> RollUpReport:
    meter = RequestMeter()
    with ctx.store.metered(meter):
        return _roll_up(ctx, now, meter)


def _roll_up(ctx: AppContext, now: datetime | None, meter: RequestMeter) -> RollUpReport:
    started = time.monotonic()
    report = RollUpReport()
    _move_dead_letters(ctx, report)
    cursor = ctx.store.get_rollup_cursor() or RollUpCursor()
    changes = ctx.store.changes_since(max(0, cursor.since_ts - CHANGE_OVERLAP_SECONDS))
    fresh = [c for c in changes if cursor.seen.get(c.document_id) != c.etag]
    by_job: dict[str, list[Change]] = defaultdict(list)
    for change in fresh:  # oldest first, so the jobs waiting longest come first
        by_job[change.job_id].append(change)
    report.changes, report.jobs_changed = len(fresh), len(by_job)
    selected = list(by_job)[: ctx.settings.status_rollup_max_jobs]
    report.jobs_deferred = len(by_job) - len(selected)

    tick_time = now or utcnow()
    folded: set[str] = set()
    pool = _rollup_pool(ctx.settings.status_rollup_concurrency)
    outcomes = pool.map(lambda job_id: _roll_up_job_safely(ctx, job_id, by_job[job_id], tick_time, meter), selected)
    for job_id, outcome in zip(selected, outcomes, strict=True):
        if outcome.folded:
            folded.add(job_id)
        report.jobs_updated += outcome.updated
        report.conflicts += outcome.conflict
        report.failures += outcome.failed
        report.follow_ups_sent += outcome.follow_ups
        if outcome.finished:
            report.jobs_finished.append(job_id)

    ctx.store.put_rollup_cursor(_advance(cursor, changes, folded, tick_time))
    report.cosmos_requests = meter.count
    elapsed = time.monotonic() - started
    report.duration_ms = round(elapsed * 1000, 1)
    metrics.rollup_ticked(elapsed, report.jobs_changed)
    return report


@functools.cache
def _rollup_pool(workers: int) -> ThreadPoolExecutor:
    """The timer's workers, kept across ticks: each thread keeps its own Cosmos client (ThreadLocalDatabase), which
    a pool made anew every tick would build again every tick."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rollup")


def _advance(cursor: RollUpCursor, changes: list[Change], folded_jobs: set[str], now: datetime) -> RollUpCursor:
    """The next cursor: from the oldest change not folded yet (or the newest seen), remembering what was folded."""
    pending = [c.ts for c in changes if c.job_id not in folded_jobs and cursor.seen.get(c.document_id) != c.etag]
    newest = max((c.ts for c in changes), default=cursor.since_ts)
    since = min(pending) if pending else newest
    window_start = since - CHANGE_OVERLAP_SECONDS
    seen = {
        c.document_id: c.etag
        for c in changes
        if c.ts >= window_start and (c.job_id in folded_jobs or cursor.seen.get(c.document_id) == c.etag)
    }
    return RollUpCursor(since_ts=since, seen=seen, last_tick_at=now)


@dataclass
class _JobOutcome:
    folded: bool = False  # the job's changes are in its document (or there is no job to fold them into)
    updated: int = 0
    conflict: int = 0
    failed: int = 0
    follow_ups: int = 0
    finished: bool = False


def _roll_up_job_safely(
    ctx: AppContext, job_id: str, changes: list[Change], now: datetime, meter: RequestMeter
) -> _JobOutcome:
    try:
        with ctx.store.metered(meter):
            return _roll_up_job(ctx, job_id, changes, now)
    except Exception:
        # One broken job must not stop the others; its changes stay unfolded and come back next tick.
        log.exception("job %s: roll-up failed", job_id)
        return _JobOutcome(failed=1)


def _roll_up_job(ctx: AppContext, job_id: str, changes: list[Change], now: datetime) -> _JobOutcome:
    found = ctx.store.get_job(job_id)
    if found is None:
        log.warning("job %s: %d changed documents but no job document; ignored", job_id, len(changes))
        return _JobOutcome(folded=True)
    job, etag = found.job, found.etag
    state_before = job.state
    settled = settle(job, [c.document for c in changes], now)
    outcome = _JobOutcome()
    follow_ups: list[FinishMessage] = []
    if settled.ended:
        outcome.finished = True
        if job.duplicates.state == "pending":
            follow_ups.append(FinishMessage(job_id=job_id, action="reconcile", end=job.ends))
        elif job.callback_url:
            follow_ups.append(_callback_follow_up(job))
    elif settled.folded.duplicates_ready and job.callback_url and job.state.terminal:
        follow_ups.append(_callback_follow_up(job))
    if follow_ups:
        # Sent before the replace: their ids are deterministic, so if the replace loses and the next tick decides
        # the same again, duplicate detection drops the repeat; sent after, a crash in between would lose them.
        ctx.bus.send(FINISH_QUEUE, [finish_message(m) for m in follow_ups])
        outcome.follow_ups = len(follow_ups)
    job.rolled_up_at = now
    if ctx.store.replace_job(job, etag):
        outcome.folded, outcome.updated = True, 1
        if job.state != state_before:
            _update_job_entry(ctx, job)
    else:
        outcome.conflict = 1
    return outcome


def _update_job_entry(ctx: AppContext, job: JobDocument) -> None:
    """The tenant's job list filters by the entry's state; the listing re-checks each job's own state, so a failed
    write here only leaves the job out of a filtered list, never shows it wrongly."""
    try:
        ctx.store.upsert_job_entry(job_entry(job, ctx.settings.job_retention_seconds))
    except Exception:
        log.exception("job %s: its job-list entry could not be updated to %s", job.job_id, job.state.value)


def _callback_follow_up(job: JobDocument) -> FinishMessage:
    job.callback = CallbackStatus(state="pending", next_attempt_at=utcnow())
    return FinishMessage(job_id=job.job_id, action="callback", end=job.ends)


# --- dead letters ------------------------------------------------------------------------------------------------


def _move_dead_letters(ctx: AppContext, report: RollUpReport) -> None:
    try:
        depths = ctx.bus.queue_depths(ALL_QUEUES)
    except Exception as exc:  # depths are an optimisation and a report; without them every queue is drained
        log.warning("queue depths unavailable: %s", exc)
        depths = {}
    report.lane_depths = {q: vars(d) for q, d in depths.items() if q in CHUNK_QUEUES}
    if report.lane_depths:
        metrics.lane_depths_read(report.lane_depths)
    for queue in ALL_QUEUES:
        # Opening a dead-letter receiver costs a round trip or two: skip queues known to have no dead letters.
        if queue in depths and depths[queue].dead_letter == 0:
            continue
        report.dead_letters_moved += ctx.bus.drain_dead_letters(
            queue,
            lambda dead, q=queue: _record_dead_letter(ctx, q, dead),  # type: ignore[misc]
        )


def _record_dead_letter(ctx: AppContext, queue: str, dead: DeadLetter) -> None:
    if queue == EXPAND_QUEUE:
        try:
            expand = ExpandMessage.model_validate_json(dead.body)
        except ValidationError:
            log.error("unreadable dead-lettered expand message %s dropped: %s", dead.message_id, dead.reason)
            return
        expansion = ctx.store.get_expansion(expand.job_id)
        if expansion is not None:
            expansion.done = True
            expansion.error = f"manifest expansion failed at step {expand.step}: {dead.reason} {dead.description}"
            ctx.store.upsert_expansion(expansion)
        return
    if queue == FINISH_QUEUE:
        # A follow-up that kept failing: the job's status stays ended; its duplicates or callback show as pending.
        log.error("dead-lettered finish message %s: %s %s", dead.message_id, dead.reason, dead.description)
        return
    try:
        chunk = ChunkMessage.model_validate_json(dead.body)
    except ValidationError:
        log.error("unreadable dead-lettered message %s on %s dropped: %s", dead.message_id, queue, dead.reason)
        return
    ctx.store.upsert_dead_letter(
        DeadLetterDocument(
            id=dead_letter_document_id(chunk.job_id, chunk.chunk),
            jobId=chunk.job_id,
            chunk=chunk.chunk,
            lane=chunk.lane,
            reason=dead.reason or "unknown",
            description=dead.description,
            dead_lettered_at=dead.enqueued_time_utc or utcnow(),
            body=dead.body,
        )
    )


def report_json(report: RollUpReport) -> str:
    return json.dumps(vars(report), default=str)


