"""A finished job's follow-ups, one message each on the finish queue (never inside the status timer's tick):

- `reconcile`: the job's duplicate groups, made exact and whole (library members included), written as documents
  of their own, then a summary the timer folds in (shared/processing/reconcile.py; a job of one chunk has its
  groups reconciled by its chunk worker instead, so it gets no such message);
- `callback`: one signed delivery attempt; a retryable failure schedules the next attempt as a new message with
  back-off, so no consumer waits between attempts. The delivery state is a document the timer folds in;
- `export`: the job's results as a JSON-lines blob, asked for by `GET /api/jobs/{id}/results.jsonl`: a page of
  results a block, EXPORT_SECONDS of pages a message, so memory stays constant and any job size is exported.

Both are idempotent: their documents have deterministic ids, and a message for an older end of the job (a replay
reopened and ended it again) is dropped.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from shared.callbacks import deliver_callback, next_attempt_delay
from shared.config import EXPORTS_CONTAINER, FINISH_QUEUE
from shared.fetch import FetchPolicy
from shared.messages import (
    callback_document_id,
    export_blob_name,
    finish_message,
)
from shared.models import (
    CallbackDocument,
    CallbackStatus,
    FinishMessage,
    ImageResultDocument,
    JobDocument,
    utcnow,
)
from shared.processing.reconcile import reconcile_duplicates
from shared.services.context import AppContext
from shared.views import callback_payload, image_result_item

log = logging.getLogger(__name__)

# The timer sends a follow-up just before it records the job's end (so a crash in between cannot lose it): a
# follow-up that arrives first waits for the record, a second at a time, this many times.
MAX_WAITS = 30
EXPORT_PAGE_IMAGES = 1000  # results a block of the export blob (~1-2 MB)
EXPORT_SECONDS = 30.0  # pages exported by one message before it hands on to the next (well inside the lock)


def handle_finish(ctx: AppContext, message: FinishMessage) -> str:
    """Runs one follow-up. Returns what happened, for the log."""
    found = ctx.store.get_job(message.job_id)
    if found is None:
        return "no such job"
    job = found.job
    if message.end > job.ends:
        if message.waits >= MAX_WAITS:
            return f"given up: the job never recorded end {message.end}"
        again = finish_message(message.model_copy(update={"waits": message.waits + 1}))
        ctx.bus.schedule(FINISH_QUEUE, again, utcnow() + timedelta(seconds=1))
        return f"waiting for the job to record end {message.end}"
    if message.end < job.ends or not job.state.terminal:
        return f"stale (the job is at end {job.ends}, {job.state.value})"
    if message.action == "reconcile":
        return reconcile_duplicates(ctx.dedup, ctx.store, job, message.end)
    if message.action == "export":
        return export_results(ctx, job, message)
    return attempt_callback(ctx, job, message)


def attempt_callback(ctx: AppContext, job: JobDocument, message: FinishMessage) -> str:
    tenant = ctx.store.get_tenant(job.tenant_id)
    status = CallbackStatus(state="pending", attempts=message.attempt)
    if tenant is None or job.callback_url is None:
        status.state, status.last_error = "failed", "tenant or callback URL missing"
    else:
        outcome = deliver_callback(
            job.callback_url, callback_payload(job), tenant.callback_secret, FetchPolicy.from_settings(ctx.settings)
        )
        if outcome.delivered:
            status.state = "delivered"
        else:
            status.last_error = outcome.reason
            if message.attempt >= ctx.settings.callback_max_attempts or not outcome.retryable:
                status.state = "failed"
            else:
                status.next_attempt_at = utcnow() + timedelta(seconds=next_attempt_delay(message.attempt))
                retry = finish_message(message.model_copy(update={"attempt": message.attempt + 1}))
                ctx.bus.schedule(FINISH_QUEUE, retry, status.next_attempt_at)
            log.warning("job %s: callback attempt %d failed: %s", job.job_id, message.attempt, outcome.reason)
    ctx.store.upsert_documents(
        [CallbackDocument(id=callback_document_id(job.job_id), jobId=job.job_id, end=message.end, status=status)]
    )
    return f"callback {status.state} after attempt {message.attempt}"


def export_results(ctx: AppContext, job: JobDocument, message: FinishMessage) -> str:
    """Stages the job's results as blocks of JSON lines, in image order, and commits them once all are staged.
    A redelivered message stages the same blocks again (same numbers, same content): the export is idempotent."""
    name = export_blob_name(job.tenant_id, job.job_id, message.end)
    blocks, token = message.export_blocks, message.export_continuation
    started = time.monotonic()
    while True:
        rows, token = ctx.store.page_images(job.job_id, EXPORT_PAGE_IMAGES, token)
        if rows:
            lines = "".join(
                image_result_item(ImageResultDocument.model_validate(row), job.tenant_id, None).model_dump_json()
                + "\n"
                for row in rows
            )
            ctx.blobs.stage_block(EXPORTS_CONTAINER, name, blocks, lines.encode())
            blocks += 1
        if token is None:
            break
        if time.monotonic() - started > EXPORT_SECONDS:
            onward = message.model_copy(update={"export_blocks": blocks, "export_continuation": token})
            ctx.bus.send(FINISH_QUEUE, [finish_message(onward)])
            return f"export: {blocks} blocks staged, continuing"
    ctx.blobs.commit_blocks(EXPORTS_CONTAINER, name, blocks, "application/x-ndjson")
    return f"export: {blocks} blocks committed"
