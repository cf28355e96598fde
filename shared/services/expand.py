"""Expanding a manifest blob into chunk messages, a bounded step at a time.

Each invocation streams the manifest from where the previous step stopped, sends up to EXPAND_BATCH_CHUNKS chunk
messages and hands the rest to the next step through a new expand message. Chunk messages carry byte ranges of the
manifest, not the references, so they stay tiny for any job size. Every id is deterministic (`{job}.{chunk}`,
`{job}.expand.{step}`): a redelivered step re-sends identical messages, which duplicate detection drops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from shared.config import EXPAND_QUEUE, MANIFESTS_CONTAINER
from shared.limits.quotas import charge_images
from shared.manifests import LineSpan, iter_line_spans
from shared.messages import chunk_message, chunk_queue, expand_message, expansion_document_id
from shared.models import ChunkMessage, ExpandMessage, ExpansionDocument, JobDocument, ManifestRange
from shared.services.context import AppContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkRun:
    """A chunk's run of manifest lines: bytes [start, end) holding the images from `first_index` on."""

    start: int
    end: int
    first_index: int
    images: int


@dataclass
class ExpansionStep:
    """What one step read of the manifest: the chunks it closed and where the next step starts."""

    runs: list[ChunkRun]
    offset: int  # byte offset just past the last line taken
    next_index: int
    reached_end: bool  # no line is left
    limit_reached: bool  # lines are left, but the job may not hold more images


def plan_step(
    spans: Iterator[LineSpan], offset: int, first_index: int, chunk_size: int, max_chunks: int, max_images: int
) -> ExpansionStep:
    """Cuts the manifest's lines (from `offset`) into runs of `chunk_size` lines, at most `max_chunks` runs, and at
    most `max_images` images in the whole job. Pure: the caller streams the spans and sends the chunks."""
    step = ExpansionStep(runs=[], offset=offset, next_index=first_index, reached_end=True, limit_reached=False)
    run_start: int | None = None
    run_count = 0

    def close_run(end: int) -> None:
        nonlocal run_start, run_count
        assert run_start is not None
        step.runs.append(ChunkRun(run_start, end, step.next_index, run_count))
        step.next_index += run_count
        run_start, run_count = None, 0

    for span in spans:
        if step.next_index + run_count >= max_images:
            step.limit_reached = True
            break
        if run_start is None:
            run_start = span.start
        run_count += 1
        step.offset = span.end
        if run_count == chunk_size:
            close_run(span.end)
            if len(step.runs) >= max_chunks:
                # Stop here unless this was the last line: then there is no next step to send.
                step.reached_end = next(spans, None) is None
                break
    if run_count:
        close_run(step.offset)
    return step


def expand_manifest(ctx: AppContext, message: ExpandMessage) -> ExpansionDocument:
    """One step of a manifest's expansion: its chunk messages, then the next step's message (or the end)."""
    found = ctx.store.get_job(message.job_id)
    if found is None:
        raise LookupError(f"job {message.job_id} has no document yet")  # retried: the write may be in flight
    job = found.job
    expansion = ctx.store.get_expansion(message.job_id) or ExpansionDocument(
        id=expansion_document_id(message.job_id), jobId=message.job_id
    )
    if expansion.done:
        return expansion
    if job.cancel_requested:
        expansion.done = True
        ctx.store.upsert_expansion(expansion)
        return expansion

    settings = ctx.settings
    stream = ctx.blobs.stream(MANIFESTS_CONTAINER, message.manifest_blob, message.byte_offset)
    step = plan_step(
        iter_line_spans(stream, message.byte_offset),
        message.byte_offset,
        message.next_index,
        settings.chunk_size,
        settings.expand_batch_chunks,
        settings.max_manifest_images,
    )
    ended = step.reached_end or step.limit_reached
    _send_chunks(ctx, job, message, step, whole_manifest=message.step == 0 and ended)
    next_chunk = message.next_chunk + len(step.runs)
    expansion.images, expansion.chunks, expansion.steps = step.next_index, next_chunk, message.step + 1
    if step.limit_reached:
        expansion.error = f"the manifest has more than {settings.max_manifest_images} images; the rest were ignored"
    if ended:
        expansion.done = True
    else:
        following = message.model_copy(
            update={
                "byte_offset": step.offset,
                "next_index": step.next_index,
                "next_chunk": next_chunk,
                "step": message.step + 1,
            }
        )
        ctx.bus.send(EXPAND_QUEUE, [expand_message(following)])
    ctx.store.upsert_expansion(expansion)
    if ended:
        charge_images(ctx.limits, job.tenant_id, step.next_index)  # a manifest's image count is known only now (quotas)
    log.info(
        "job %s: expansion step %d sent %d chunks (%d images)", job.job_id, message.step, len(step.runs),
        step.next_index,
    )  # fmt: skip
    return expansion


def _send_chunks(
    ctx: AppContext, job: JobDocument, message: ExpandMessage, step: ExpansionStep, whole_manifest: bool
) -> None:
    chunks = [
        ChunkMessage(
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            chunk=message.next_chunk + n,
            lane=job.lane,
            options=job.options,
            manifest_range=ManifestRange(
                blob=message.manifest_blob, start=run.start, end=run.end, first_index=run.first_index
            ),
            traceparent=message.traceparent,
            # The whole manifest is one chunk: the lane's express queue takes it.
            express=whole_manifest and len(step.runs) == 1,
        )
        for n, run in enumerate(step.runs)
    ]
    if chunks:
        ctx.bus.send(chunk_queue(chunks[0]), (chunk_message(c, job.concurrency) for c in chunks))
