"""Processing one chunk message: fetch, analyse and record each of its images, idempotently.

Delivery is at-least-once, so everything here is safe to repeat: image results have deterministic ids
(`{job}.{index}`) and are upserted; thumbnails have content-addressed names; images already recorded by an earlier
delivery are skipped; the chunk's final counts are recomputed from the stored image results, never incremented.

A bad image (unreachable URL, missing blob, corrupt bytes) becomes an error result. Only infrastructure failures
(Cosmos, Blob or Service Bus unavailable) raise, so the host abandons the message and Service Bus redelivers it,
dead-lettering it after maxDeliveryCount. A chunk whose time budget runs out hands its remainder to a continuation
message on the same session and returns normally, so no delivery is spent and the lock is never at risk.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from shared import metrics
from shared.adapters.blobs import BlobNotFound, BlobTooLarge
from shared.config import MANIFESTS_CONTAINER, ORIGINALS_CONTAINER, THUMBNAILS_CONTAINER
from shared.fetch import FetchPolicy, guarded_client
from shared.image_errors import ImageErrorCode, fetch_error_code, imaging_error_code
from shared.imaging import ImageResult
from shared.manifests import manifest_lines
from shared.messages import (
    chunk_document_id,
    chunk_queue,
    continuation_message,
    image_result_id,
    original_blob_name,
    thumbnail_blob_name,
)
from shared.models import (
    ChunkDocument,
    ChunkMessage,
    ImageCounts,
    ImageRef,
    ImageResultDocument,
    JobDocument,
    StoredImageError,
    classify_manifest_line,
    image_bucket,
    ref_problem,
    utcnow,
)
from shared.polite_fetch import PolitePolicy, polite_fetch, process_gate
from shared.processing.imaging_step import analyse, register_duplicates, stored_facts
from shared.processing.reconcile import reconcile_duplicates
from shared.processing.write_behind import ImageOutcome, WriteBehind
from shared.services.context import AppContext
from shared.thread_resources import PerThread
from shared.tracing import chunk_span

log = logging.getLogger(__name__)

CANCEL_CHECK_EVERY_SECONDS = 2.0
PROGRESS_EVERY_SECONDS = 2.0


class ChunkEnd(StrEnum):
    """How one delivery of a chunk ended."""

    FINISHED = "finished"  # every image has its result; the chunk record is final
    CONTINUED = "continued"  # the time budget ran out: the rest went to a continuation message
    CANCELLED = "cancelled"  # the job was cancelled: the rest are counted as skipped


@dataclass(frozen=True)
class ChunkOutcome:
    job_id: str
    chunk: int
    end: ChunkEnd
    processed: int  # images worked on in this delivery
    skipped_as_done: int  # images an earlier delivery had already recorded
    counts: ImageCounts

    @property
    def finished(self) -> bool:
        return self.end is not ChunkEnd.CONTINUED

    @property
    def cancelled(self) -> bool:
        return self.end is ChunkEnd.CANCELLED


def chunk_images(ctx: AppContext, message: ChunkMessage) -> list[ImageRef]:
    if message.images is not None:
        return message.images
    assert message.manifest_range is not None
    span = message.manifest_range
    data = ctx.blobs.read_range(MANIFESTS_CONTAINER, span.blob, span.start, span.end)
    return [
        ImageRef(index=span.first_index + i, kind=classify_manifest_line(line), ref=line)
        for i, line in enumerate(manifest_lines(data))
    ]


def process_chunk(
    ctx: AppContext, body: str, delivery_count: int = 1, enqueued_at: datetime | None = None
) -> ChunkOutcome:
    """One delivery of a chunk message, as its own trace (linked to the job's submit), measured."""
    started = time.monotonic()
    message = ChunkMessage.model_validate_json(body)  # a malformed message raises: it can never succeed
    lane = message.lane.value
    if enqueued_at is not None and delivery_count == 1:
        metrics.chunk_waited(lane, message.express, max(0.0, (utcnow() - enqueued_at).total_seconds()))
    with chunk_span(message.job_id, message.chunk, lane, delivery_count, message.traceparent) as span:
        outcome_name = "error"
        try:
            outcome = _process_chunk(ctx, message, delivery_count, enqueued_at, started)
            outcome_name = outcome.end.value
            span.set_attributes({"imagepipe.outcome": outcome_name, "imagepipe.images_processed": outcome.processed})
            return outcome
        finally:
            metrics.chunk_delivery_ended(lane, message.express, outcome_name, time.monotonic() - started)


def _process_chunk(
    ctx: AppContext, message: ChunkMessage, delivery_count: int, enqueued_at: datetime | None, started: float
) -> ChunkOutcome:
    single = _single_image_first_delivery(message, delivery_count)
    existing = None if single else ctx.store.get_chunk(message.job_id, message.chunk)
    if existing is not None and existing.state == "done":  # a redelivery of a finished chunk
        return ChunkOutcome(message.job_id, message.chunk, ChunkEnd.FINISHED, 0, existing.images, existing.counts)
    found = ctx.store.get_job(message.job_id)
    run = _ChunkRun(ctx, message, started)
    run.record = _new_record(message, len(run.images), existing, delivery_count, enqueued_at)
    if found is None or found.job.cancel_requested:
        # A cancelled (or vanished) job: complete the chunk without work, counting its images as skipped.
        return run.finish(ChunkEnd.CANCELLED)
    # The chunk record is written before any image result, so without one no earlier delivery recorded an image.
    if existing is not None:
        run.outcomes = ctx.store.image_outcomes(message.job_id, message.chunk)
    if not single:
        ctx.store.upsert_chunk(run.counted())
    end = run.process([ref for ref in run.images if ref.index not in run.outcomes])
    if end is ChunkEnd.CONTINUED:
        _continue_later(ctx, message, found.job.concurrency, delivery_count)
        ctx.store.upsert_chunk(run.counted())
        return run.outcome(end)
    if end is ChunkEnd.FINISHED and not single and (existing is not None or _overlapped(ctx, run.record)):
        # Another delivery worked on this chunk too: recount from the store, the truth whatever either wrote.
        run.outcomes = ctx.store.image_outcomes(message.job_id, message.chunk)
    if end is ChunkEnd.FINISHED and _reconciles_inline(found.job):
        # Before the chunk's final record, which ends the job: the timer then folds the groups with the end.
        reconcile_duplicates(ctx.dedup, ctx.store, found.job, found.job.ends + 1)
    return run.finish(end)


def _reconciles_inline(job: JobDocument) -> bool:
    """Whether this chunk's end is its job's end, so it reconciles the job's duplicate groups itself: an inline job
    of one chunk, running (a replayed job is reopened by the timer before it counts as such), not cancelled."""
    return (
        job.total_chunks == 1
        and job.manifest_blob is None
        and "dedup" in job.options.analyses
        and not job.state.terminal
        and not job.cancel_requested
    )


def _single_image_first_delivery(message: ChunkMessage, delivery_count: int) -> bool:
    """A chunk of one image on its first delivery (most one-image jobs) records itself once, at its end: three of
    the job's requests fewer (the look for an earlier record, the running record, the overlap check). Nothing can
    have been recorded before a first delivery, and the redelivery after a crash or a lost lock takes the full path
    (its delivery count is higher), which recounts from the stored result. The cost: such a chunk never shows as
    running, for the fraction of a second its one image takes, and a crash redoes that one image."""
    return delivery_count == 1 and message.images is not None and len(message.images) == 1


def _new_record(
    message: ChunkMessage,
    images: int,
    existing: ChunkDocument | None,
    delivery_count: int,
    enqueued_at: datetime | None,
) -> ChunkDocument:
    """This delivery's chunk record (not written yet): running, no counts, a delivery token of its own."""
    now = utcnow()
    return ChunkDocument(
        id=chunk_document_id(message.job_id, message.chunk),
        jobId=message.job_id,
        chunk=message.chunk,
        state="running",
        images=images,
        counts=ImageCounts(),
        attempts=delivery_count,
        started_at=existing.started_at if existing else now,
        queue_seconds=max(0.0, (now - enqueued_at).total_seconds()) if enqueued_at else 0.0,
        delivery=uuid.uuid4().hex,
    )


@dataclass
class _ChunkRun:
    """One delivery's work on a chunk: its record, the outcomes known so far (index -> error code, None when the
    image succeeded) and how many images this delivery processed."""

    ctx: AppContext
    message: ChunkMessage
    started: float
    record: ChunkDocument = field(init=False)
    outcomes: dict[int, str | None] = field(default_factory=dict)
    processed: int = 0

    @functools.cached_property
    def images(self) -> list[ImageRef]:
        return chunk_images(self.ctx, self.message)

    def process(self, remaining: list[ImageRef]) -> ChunkEnd:
        """Analyses and records the remaining images (each one's writes behind the next one's analysis) until they
        are done, the time budget runs out, or the job is cancelled."""
        budget = self.ctx.settings.chunk_time_budget_seconds
        last_cancel_check = last_progress = time.monotonic()
        writes = WriteBehind()
        try:
            for position, ref in enumerate(remaining):
                now = time.monotonic()
                if now - self.started > budget:
                    self.outcomes.update(writes.drain())
                    return ChunkEnd.CONTINUED
                if now - last_cancel_check > CANCEL_CHECK_EVERY_SECONDS:
                    last_cancel_check = now
                    if self._job_cancelled():
                        log.info("job %s chunk %d: cancelled after %d images", self.message.job_id,
                                 self.message.chunk, position)  # fmt: skip
                        self.outcomes.update(writes.drain())
                        return ChunkEnd.CANCELLED
                analysed, attempts = _analyse_image(self.ctx, self.message, ref, self.started + budget)
                record = partial(_record_image, self.ctx, self.message, ref, analysed, attempts)
                self.outcomes.update(writes.submit(record))
                self.processed += 1
                if now - last_progress > PROGRESS_EVERY_SECONDS:
                    last_progress = now
                    self.ctx.store.upsert_chunk(self.counted())
            self.outcomes.update(writes.drain())
        except BaseException:
            writes.abandon()
            raise
        return ChunkEnd.FINISHED

    def _job_cancelled(self) -> bool:
        current = self.ctx.store.get_job(self.message.job_id)
        return current is None or current.job.cancel_requested

    def counted(self, skipped: int = 0) -> ChunkDocument:
        """The record with the counts of the outcomes known so far."""
        codes = Counter(code for code in self.outcomes.values() if code is not None)
        failed = sum(codes.values())
        self.record.counts = ImageCounts(succeeded=len(self.outcomes) - failed, failed=failed, skipped=skipped)
        self.record.error_codes = dict(codes)
        return self.record

    def finish(self, end: ChunkEnd) -> ChunkOutcome:
        """Writes the final record: done, counted (a cancelled chunk's unprocessed images as skipped), timed."""
        skipped = self.record.images - len(self.outcomes) if end is ChunkEnd.CANCELLED else 0
        record = self.counted(skipped)
        now = utcnow()
        record.state, record.finished_at, record.finished_epoch = "done", now, now.timestamp()
        record.processing_seconds = round(time.monotonic() - self.started, 4)
        self.ctx.store.upsert_chunk(record)
        return self.outcome(end)

    def outcome(self, end: ChunkEnd) -> ChunkOutcome:
        # Images recorded by earlier deliveries: on a continuation, those known before this one's; otherwise the
        # rest of the chunk.
        total = len(self.outcomes) if end is ChunkEnd.CONTINUED else self.record.images
        return ChunkOutcome(
            self.message.job_id, self.message.chunk, end, self.processed, total - self.processed, self.record.counts
        )


def _overlapped(ctx: AppContext, doc: ChunkDocument) -> bool:
    """Whether another delivery has written the chunk's record since this one did (a lost lock redelivered it)."""
    current = ctx.store.get_chunk(doc.job_id, doc.chunk)
    return current is None or current.delivery != doc.delivery


def _continue_later(ctx: AppContext, message: ChunkMessage, concurrency: int, delivery_count: int) -> None:
    """Re-enqueues the same chunk (done images are skipped on pickup) where it came from, with a fresh id."""
    ctx.bus.send(chunk_queue(message), [continuation_message(message, concurrency, delivery_count)])


def _image_result(message: ChunkMessage, ref: ImageRef, **fields: Any) -> ImageResultDocument:
    """The result document of one image; its id makes a rewrite by a redelivery an overwrite, never a second one."""
    return ImageResultDocument(
        id=image_result_id(message.job_id, ref.index),
        bucket=image_bucket(ref.index),
        jobId=message.job_id,
        index=ref.index,
        chunk=message.chunk,
        kind=ref.kind,
        ref=ref.ref,
        processed_at=utcnow(),
        **fields,
    )


def _image_error(
    message: ChunkMessage, ref: ImageRef, code: ImageErrorCode, text: str, extra: dict[str, Any] | None = None
) -> ImageResultDocument:
    return _image_result(message, ref, ok=False, error=StoredImageError(code=code.value, message=text), result=extra)


def _close_clients(clients: dict[FetchPolicy, Any]) -> None:
    for client in clients.values():
        client.close()
    clients.clear()


# One guarded HTTP client per worker thread, reused across images and chunks: building one costs ~65 ms (it loads
# the CA bundle), more than fetching and processing a typical image. Kept under the policy it was built for.
fetch_clients: PerThread[dict[FetchPolicy, Any]] = PerThread("fetch client", dict, _close_clients)


def _fetch_client(policy: FetchPolicy) -> Any:
    clients = fetch_clients.get()
    client = clients.get(policy)
    if client is None:
        _close_clients(clients)  # built for other settings (tests change them): one client a thread
        client = clients[policy] = guarded_client(policy)
    return client


def _fetch(
    ctx: AppContext, message: ChunkMessage, ref: ImageRef, chunk_deadline: float
) -> tuple[bytes | ImageResultDocument, int]:
    """The image's bytes, or an error result naming why they could not be had; and the fetch attempts made."""
    problem = ref_problem(ref.ref, ref.kind)
    if problem:
        return _image_error(message, ref, ImageErrorCode.INVALID_REFERENCE, problem), 0
    if ref.kind == "blob":
        try:
            blob = original_blob_name(message.tenant_id, ref.ref)
            return ctx.blobs.read(ORIGINALS_CONTAINER, blob, ctx.settings.image_max_bytes), 1
        except BlobNotFound:
            return _image_error(message, ref, ImageErrorCode.NOT_FOUND, "no such blob in your originals folder"), 1
        except BlobTooLarge as exc:
            return _image_error(message, ref, ImageErrorCode.TOO_LARGE, str(exc)), 1
    policy = FetchPolicy.from_settings(ctx.settings)
    polite = PolitePolicy.from_settings(ctx.settings)
    gate = process_gate(polite, ctx.limits)
    got = polite_fetch(ref.ref, policy, polite, gate, client=_fetch_client(policy), retry_deadline=chunk_deadline)
    if got.error is not None:
        return _image_error(message, ref, fetch_error_code(got.error.code), str(got.error)), got.attempts
    assert got.result is not None
    return got.result.content, got.attempts


def _analyse_image(
    ctx: AppContext, message: ChunkMessage, ref: ImageRef, chunk_deadline: float
) -> tuple[ImageResultDocument | ImageResult, int]:
    """Fetch and analysis (no writes): an error result, or the successful analysis `_record_image` stores; and the
    fetch attempts it took."""
    fetched, attempts = _fetch(ctx, message, ref, chunk_deadline)
    if isinstance(fetched, ImageResultDocument):
        return fetched, attempts
    result = analyse(fetched, message.options, ctx.settings)
    if not result.ok:
        error = result.error
        code, text = (
            (imaging_error_code(error.code), error.message)
            if error
            else (ImageErrorCode.PROCESSING_FAILED, "no result")
        )
        return _image_error(message, ref, code, text, stored_facts(result)), attempts
    return result, attempts


def _record_image(
    ctx: AppContext,
    message: ChunkMessage,
    ref: ImageRef,
    analysed: ImageResultDocument | ImageResult,
    attempts: int = 1,
) -> ImageOutcome:
    """Writes the image's thumbnails, duplicate-index entry and result document (the result last: once it exists,
    everything it points to does); returns the image's outcome."""
    document = analysed if isinstance(analysed, ImageResultDocument) else _stored_result(ctx, message, ref, analysed)
    document.attempts = attempts
    ctx.store.upsert_image(document)
    code = None if document.ok else (document.error.code if document.error else "error")
    metrics.image_recorded(message.lane.value, code)
    return ref.index, code


def _stored_result(ctx: AppContext, message: ChunkMessage, ref: ImageRef, result: ImageResult) -> ImageResultDocument:
    """Writes the image's thumbnails and registers it in the duplicate index, all at once (they are independent:
    done one after another they were most of a one-image job's time), and returns its result document."""
    pool = _image_writes_pool()
    assert result.sha256 is not None  # a successful result always has its checksum
    names = [thumbnail_blob_name(message.tenant_id, result.sha256, t.size, t.format.value) for t in result.thumbnails]
    uploads = [
        pool.submit(ctx.blobs.write, THUMBNAILS_CONTAINER, name, thumb.data, thumb.format.content_type)
        for name, thumb in zip(names, result.thumbnails, strict=True)
    ]
    registration = (
        pool.submit(
            register_duplicates,
            ctx.dedup,
            message.tenant_id,
            message.job_id,
            image_result_id(message.job_id, ref.index),
            result,
        )
        if "dedup" in message.options.analyses
        else None
    )
    for upload in uploads:
        upload.result()  # a failed write fails the chunk (it is redelivered), as it did in sequence
    duplicate_of = registration.result() if registration is not None else []
    thumbnails = [
        {"size": t.size, "format": t.format.value, "blob": name, "width": t.width, "height": t.height}
        for name, t in zip(names, result.thumbnails, strict=True)
    ]
    return _image_result(
        message,
        ref,
        ok=True,
        sha256=result.sha256,
        result=stored_facts(result),
        thumbnails=thumbnails,
        duplicate_of=duplicate_of,
    )


@functools.cache
def _image_writes_pool() -> ThreadPoolExecutor:
    """Threads for one image's independent writes, shared by the process's invocations and kept (each keeps its
    connections and its Cosmos client)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="image-parts")
