"""The status timer's use case: gather dead letters, chunk records and expansion progress into job documents.

The timer is the only writer of a job document's computed fields (the API only sets request flags with a patch);
its read-modify-write is guarded by the etag, so a concurrent flag patch makes it retry on the next tick rather
than lose the flag. Timer triggers run one at a time across all instances, so there is no lock to take.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from shared.adapters.servicebus import DeadLetter
from shared.config import ALL_QUEUES, EXPAND_QUEUE, LANE_QUEUES
from shared.models import CallbackStatus, ChunkMessage, DeadLetterDocument, ExpandMessage, JobDocument, JobState, utcnow
from shared.services.context import AppContext
from shared.services.imaging_step import job_duplicate_groups
from shared.services.jobs import job_status
from shared.status import apply_progress, fold_finished

log = logging.getLogger(__name__)

# Finished chunks are re-read for this long after the last roll-up: worker and timer clocks may disagree.
CLOCK_SKEW_ALLOWANCE = timedelta(seconds=120)


@dataclass
class RollUpReport:
    jobs_seen: int = 0
    jobs_updated: int = 0
    jobs_finished: list[str] = field(default_factory=list)
    conflicts: int = 0
    dead_letters_moved: int = 0
    callbacks_sent: int = 0
    lane_depths: dict[str, dict[str, int]] = field(default_factory=dict)


def roll_up_status(ctx: AppContext, now: datetime | None = None) -> RollUpReport:
    report = RollUpReport()
    try:
        depths = ctx.bus.queue_depths(ALL_QUEUES)
    except Exception as exc:  # depths are an optimisation and a report; without them every queue is drained
        log.warning("queue depths unavailable: %s", exc)
        depths = {}
    report.lane_depths = {q: vars(d) for q, d in depths.items() if q in LANE_QUEUES}
    for queue in ALL_QUEUES:
        # Opening a dead-letter receiver costs a round trip or two: skip queues known to have no dead letters.
        if queue in depths and depths[queue].dead_letter == 0:
            continue
        report.dead_letters_moved += ctx.bus.drain_dead_letters(
            queue,
            lambda dead, q=queue: _record_dead_letter(ctx, q, dead),  # type: ignore[misc]
        )
    for job_id in ctx.store.active_job_ids():
        report.jobs_seen += 1
        try:
            _roll_up_job(ctx, job_id, now or utcnow(), report)
        except Exception:
            # One broken job must not stop the others; it is retried on the next tick.
            log.exception("job %s: roll-up failed", job_id)
    return report


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
    try:
        chunk = ChunkMessage.model_validate_json(dead.body)
    except ValidationError:
        log.error("unreadable dead-lettered message %s on %s dropped: %s", dead.message_id, queue, dead.reason)
        return
    ctx.store.upsert_dead_letter(
        DeadLetterDocument(
            id=f"{chunk.job_id}.deadletter.{chunk.chunk}",
            jobId=chunk.job_id,
            chunk=chunk.chunk,
            lane=chunk.lane,
            reason=dead.reason or "unknown",
            description=dead.description,
            dead_lettered_at=dead.enqueued_time_utc or utcnow(),
            body=dead.body,
        )
    )
    ctx.store.patch_job(chunk.job_id, {"active": True})


def _roll_up_job(ctx: AppContext, job_id: str, now: datetime, report: RollUpReport) -> None:
    found = ctx.store.get_job(job_id)
    if found is None:
        return
    job, etag = found
    expansion_done = True
    if job.manifest_blob is not None:
        expansion = ctx.store.get_expansion(job_id)
        expansion_done = bool(expansion and expansion.done)
        if expansion is not None and expansion_done:
            job.total_images, job.total_chunks = expansion.images, expansion.chunks
            if expansion.error and "expansion" not in job.error_codes:
                job.finished_error_codes["expansion"] = 1
    since = (job.rolled_up_at - CLOCK_SKEW_ALLOWANCE).timestamp() if job.rolled_up_at else 0.0
    added = fold_finished(job, ctx.store.finished_chunks_since(job_id, since))
    just_finished = apply_progress(
        job, ctx.store.running_chunks(job_id), ctx.store.dead_letters(job_id), now, expansion_done, added
    )
    if just_finished:
        report.jobs_finished.append(job_id)
        if "dedup" in job.options.analyses and job.state != JobState.CANCELLED:
            job.duplicate_groups = job_duplicate_groups(ctx.dedup, job)
        if job.callback_url:  # a job that ends again after a replay calls back again
            job.callback = CallbackStatus(state="pending", next_attempt_at=now)
    if job.callback.state == "pending" and job.callback.next_attempt_at and job.callback.next_attempt_at <= now:
        report.callbacks_sent += _attempt_callback(ctx, job, now)
    job.active = not job.state.terminal or job.callback.state == "pending"
    job.rolled_up_at = now
    if ctx.store.replace_job(job, etag):
        report.jobs_updated += 1
    else:
        report.conflicts += 1


def callback_payload(job: JobDocument) -> dict[str, Any]:
    status = job_status(job).model_dump(mode="json")
    status.pop("callback", None)
    return {"event": "job.finished", "job": status}


def _attempt_callback(ctx: AppContext, job: JobDocument, now: datetime) -> int:
    from shared.callbacks import deliver_callback, next_attempt_delay
    from shared.fetch import FetchPolicy

    tenant = ctx.store.get_tenant(job.tenant_id)
    if tenant is None or job.callback_url is None:
        job.callback.state, job.callback.last_error = "failed", "tenant or callback URL missing"
        return 0
    outcome = deliver_callback(
        job.callback_url, callback_payload(job), tenant.callback_secret, FetchPolicy.from_settings(ctx.settings)
    )
    job.callback.attempts += 1
    if outcome.delivered:
        job.callback.state, job.callback.last_error, job.callback.next_attempt_at = "delivered", None, None
        return 1
    job.callback.last_error = outcome.reason
    if job.callback.attempts >= ctx.settings.callback_max_attempts or not outcome.retryable:
        job.callback.state, job.callback.next_attempt_at = "failed", None
    else:
        job.callback.next_attempt_at = now + timedelta(seconds=next_attempt_delay(job.callback.attempts))
    log.warning("job %s: callback attempt %d failed: %s", job.job_id, job.callback.attempts, outcome.reason)
    return 0


def report_json(report: RollUpReport) -> str:
    return json.dumps(vars(report), default=str)
