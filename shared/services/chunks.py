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
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
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
    ImageError,
    ImageRef,
    ImageResultDocument,
    classify_manifest_line,
    image_bucket,
    ref_problem,
    utcnow,
)
from shared.polite_fetch import PolitePolicy, polite_fetch, process_gate
from shared.processing.imaging_step import analyse, register_duplicates, stored_facts
from shared.processing.write_behind import ImageOutcome, WriteBehind
from shared.services.context import AppContext
from shared.tracing import chunk_span

log = logging.getLogger(__name__)
_thread_state = threading.local()

CANCEL_CHECK_EVERY_SECONDS = 2.0
PROGRESS_EVERY_SECONDS = 2.0


@dataclass(frozen=True)
class ChunkOutcome:
    job_id: str
    chunk: int
    processed: int  # images worked on in this delivery
    skipped_as_done: int  # images an earlier delivery had already recorded
    counts: ImageCounts
    finished: bool  # False when the remainder went to a continuation message
    cancelled: bool


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
            outcome_name = "cancelled" if outcome.cancelled else "finished" if outcome.finished else "continued"
            span.set_attributes({"imagepipe.outcome": outcome_name, "imagepipe.images_processed": outcome.processed})
            return outcome
        finally:
            metrics.chunk_delivery_ended(lane, message.express, outcome_name, time.monotonic() - started)


def _process_chunk(
    ctx: AppContext, message: ChunkMessage, delivery_count: int, enqueued_at: datetime | None, started: float
) -> ChunkOutcome:
    store = ctx.store
    chunk_id = chunk_document_id(message.job_id, message.chunk)
    existing = store.get_chunk(message.job_id, message.chunk)
    if existing is not None and existing.state == "done":
        return ChunkOutcome(message.job_id, message.chunk, 0, existing.images, existing.counts, True, False)

    job = store.get_job(message.job_id)
    images = chunk_images(ctx, message)
    now = utcnow()
    queue_seconds = max(0.0, (now - enqueued_at).total_seconds()) if enqueued_at else 0.0
    doc = ChunkDocument(
        id=chunk_id,
        jobId=message.job_id,
        chunk=message.chunk,
        state="running",
        images=len(images),
        counts=ImageCounts(),
        attempts=delivery_count,
        started_at=existing.started_at if existing else now,
        queue_seconds=queue_seconds,
        delivery=uuid.uuid4().hex,
    )
    if job is None or job[0].cancel_requested:
        # A cancelled (or vanished) job: complete the chunk without work, counting its images as skipped.
        return _finish(ctx, doc, {}, cancelled=True, processed=0, started=started)

    # The chunk record is written before any image result, so without one no earlier delivery recorded an image.
    done = {} if existing is None else store.image_outcomes(message.job_id, message.chunk)
    remaining = [ref for ref in images if ref.index not in done]
    store.upsert_chunk(_with_counts(doc, done))

    budget = ctx.settings.chunk_time_budget_seconds
    last_cancel_check = last_progress = time.monotonic()
    processed = 0
    writes = WriteBehind()
    try:
        for position, ref in enumerate(remaining):
            now_mono = time.monotonic()
            if now_mono - started > budget:
                done.update(writes.drain())
                _continue_later(ctx, message, job[0].shards, delivery_count)
                store.upsert_chunk(_with_counts(doc, done))
                return ChunkOutcome(
                    message.job_id,
                    message.chunk,
                    processed,
                    len(images) - len(remaining),
                    doc.counts,
                    finished=False,
                    cancelled=False,
                )
            if now_mono - last_cancel_check > CANCEL_CHECK_EVERY_SECONDS:
                last_cancel_check = now_mono
                current = store.get_job(message.job_id)
                if current is None or current[0].cancel_requested:
                    log.info("job %s chunk %d: cancelled after %d images", message.job_id, message.chunk, position)
                    done.update(writes.drain())
                    return _finish(ctx, doc, done, cancelled=True, processed=processed, started=started)
            analysed, attempts = _analyse_image(ctx, message, ref, started + budget)
            done.update(writes.submit(partial(_record_image, ctx, message, ref, analysed, attempts)))
            processed += 1
            if now_mono - last_progress > PROGRESS_EVERY_SECONDS:
                last_progress = now_mono
                store.upsert_chunk(_with_counts(doc, done))
        done.update(writes.drain())
    except BaseException:
        writes.abandon()
        raise

    if existing is not None or _overlapped(ctx, doc):
        # Another delivery worked on this chunk too: recount from the store, the truth whatever either wrote.
        done = store.image_outcomes(message.job_id, message.chunk)
    return _finish(ctx, doc, done, cancelled=False, processed=processed, started=started)


def _overlapped(ctx: AppContext, doc: ChunkDocument) -> bool:
    """Whether another delivery has written the chunk's record since this one did (a lost lock redelivered it)."""
    current = ctx.store.get_chunk(doc.job_id, doc.chunk)
    return current is None or current.delivery != doc.delivery


def _with_counts(doc: ChunkDocument, outcomes: dict[int, str | None], skipped: int = 0) -> ChunkDocument:
    codes = Counter(code for code in outcomes.values() if code is not None)
    failed = sum(codes.values())
    doc.counts = ImageCounts(succeeded=len(outcomes) - failed, failed=failed, skipped=skipped)
    doc.error_codes = dict(codes)
    return doc


def _finish(
    ctx: AppContext,
    doc: ChunkDocument,
    outcomes: dict[int, str | None],
    *,
    cancelled: bool,
    processed: int,
    started: float,
) -> ChunkOutcome:
    skipped = doc.images - len(outcomes) if cancelled else 0
    _with_counts(doc, outcomes, skipped=skipped)
    now = utcnow()
    doc.state = "done"
    doc.finished_at = now
    doc.finished_epoch = now.timestamp()
    doc.processing_seconds = round(time.monotonic() - started, 4)
    ctx.store.upsert_chunk(doc)
    return ChunkOutcome(doc.job_id, doc.chunk, processed, doc.images - processed, doc.counts, True, cancelled)


def _continue_later(ctx: AppContext, message: ChunkMessage, shards: int, delivery_count: int) -> None:
    """Re-enqueues the same chunk (done images are skipped on pickup) where it came from, with a fresh id."""
    ctx.bus.send(chunk_queue(message), [continuation_message(message, shards, delivery_count)])


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
    return _image_result(message, ref, ok=False, error=ImageError(code=code.value, message=text), result=extra)


def _fetch_client(policy: FetchPolicy) -> Any:
    """One guarded HTTP client per worker thread, reused across images and chunks: building one costs ~65 ms
    (it loads the CA bundle), more than fetching and processing a typical image."""
    cached = getattr(_thread_state, "fetch_client", None)
    if cached is None or cached[0] != policy:
        if cached is not None:
            cached[1].close()
        cached = _thread_state.fetch_client = (policy, guarded_client(policy))
    return cached[1]


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
