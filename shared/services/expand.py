"""Expanding a manifest blob into chunk messages, a bounded step at a time.

Each invocation streams the manifest from where the previous step stopped, sends up to EXPAND_BATCH_CHUNKS chunk
messages and hands the rest to the next step through a new expand message. Chunk messages carry byte ranges of the
manifest, not the references, so they stay tiny for any job size. Every id is deterministic (`{job}.{chunk}`,
`{job}.expand.{step}`): a redelivered step re-sends identical messages, which duplicate detection drops.
"""

from __future__ import annotations

import logging

from shared.config import EXPAND_QUEUE, MANIFESTS_CONTAINER
from shared.limits.quotas import charge_images
from shared.manifests import iter_line_spans
from shared.messages import chunk_message, chunk_queue, expand_message, expansion_document_id
from shared.models import ChunkMessage, ExpandMessage, ExpansionDocument, ManifestRange
from shared.services.context import AppContext

log = logging.getLogger(__name__)


def expand_manifest(ctx: AppContext, message: ExpandMessage) -> ExpansionDocument:
    settings = ctx.settings
    found = ctx.store.get_job(message.job_id)
    if found is None:
        raise LookupError(f"job {message.job_id} has no document yet")  # retried: the write may be in flight
    job, _ = found
    expansion = ctx.store.get_expansion(message.job_id) or ExpansionDocument(
        id=expansion_document_id(message.job_id), jobId=message.job_id
    )
    if expansion.done:
        return expansion
    if job.cancel_requested:
        expansion.done = True
        ctx.store.upsert_expansion(expansion)
        return expansion

    chunks: list[ChunkMessage] = []
    index, chunk = message.next_index, message.next_chunk
    run_start: int | None = None
    run_count = 0
    offset = message.byte_offset
    limit_reached = False

    def close_run(end: int) -> None:
        nonlocal run_start, run_count, index, chunk
        assert run_start is not None
        chunks.append(
            ChunkMessage(
                job_id=job.job_id,
                tenant_id=job.tenant_id,
                chunk=chunk,
                lane=job.lane,
                options=job.options,
                manifest_range=ManifestRange(blob=message.manifest_blob, start=run_start, end=end, first_index=index),
                traceparent=message.traceparent,
            )
        )
        index += run_count
        chunk += 1
        run_start, run_count = None, 0

    spans = iter_line_spans(ctx.blobs.stream(MANIFESTS_CONTAINER, message.manifest_blob, message.byte_offset), offset)
    reached_end = True
    for span in spans:
        if index + run_count >= settings.max_manifest_images:
            limit_reached = True
            break
        if run_start is None:
            run_start = span.start
        run_count += 1
        offset = span.end
        if run_count == settings.chunk_size:
            close_run(span.end)
            if len(chunks) >= settings.expand_batch_chunks:
                # Stop here unless this was the last line: then there is no next step to send.
                reached_end = next(spans, None) is None
                break
    if run_start is not None and run_count:
        close_run(offset)

    if chunks and message.step == 0 and len(chunks) == 1 and (reached_end or limit_reached):
        chunks[0].express = True  # the whole manifest is one chunk: the lane's express queue takes it
    if chunks:
        ctx.bus.send(chunk_queue(chunks[0]), (chunk_message(c, job.shards) for c in chunks))
    expansion.images, expansion.chunks, expansion.steps = index, chunk, message.step + 1
    if limit_reached:
        expansion.error = f"the manifest has more than {settings.max_manifest_images} images; the rest were ignored"
    if reached_end or limit_reached:
        expansion.done = True
    else:
        following = message.model_copy(
            update={"byte_offset": offset, "next_index": index, "next_chunk": chunk, "step": message.step + 1}
        )
        ctx.bus.send(EXPAND_QUEUE, [expand_message(following)])
    ctx.store.upsert_expansion(expansion)
    if reached_end or limit_reached:
        charge_images(ctx.limits, job.tenant_id, index)  # a manifest's image count is known only now (quotas)
    log.info("job %s: expansion step %d sent %d chunks (%d images)", job.job_id, message.step, len(chunks), index)
    return expansion
