"""The jobs API's use cases: submit, read status, page results, cancel, replay dead-lettered chunks.

Submitting never does work proportional to the job's size beyond validating an inline list (at most
MAX_INLINE_IMAGES): inline lists become chunk messages in one batched send; manifests become a single expand
message, so the answer comes back in well under 200 ms whatever the size.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from shared.adapters.blobs import BlobNotFound
from shared.adapters.servicebus import OutgoingMessage
from shared.config import EXPAND_QUEUE, MANIFESTS_CONTAINER, Tier
from shared.errors import ApiError, job_not_found
from shared.models import (
    ChunkMessage,
    ExpandMessage,
    ExpansionDocument,
    ImagePage,
    JobAccepted,
    JobDocument,
    JobRequest,
    JobState,
    JobStatus,
    TenantDocument,
    utcnow,
)
from shared.planning import (
    chunk_count,
    encode,
    inline_chunk_size,
    inline_chunks,
    lane_for,
    message_id,
    new_job_id,
    session_id,
    shards_for,
)
from shared.services.context import AppContext

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000


def manifest_blob_name(tenant_id: str, name: str) -> str:
    return f"{tenant_id}/{name}"


def parse_job_request(body: bytes, max_inline_images: int) -> JobRequest:
    try:
        raw = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    for field in ("urls", "blobs"):
        if isinstance(raw.get(field), list) and len(raw[field]) > max_inline_images:
            raise ApiError(
                413,
                "too_many_images",
                f"{len(raw[field])} images in '{field}' is over the {max_inline_images} allowed inline; "
                "upload a manifest blob (one URL or blob name a line) and pass its name as 'manifest'",
                {"field": field, "count": len(raw[field]), "limit": max_inline_images},
            )
    try:
        return JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", "the request body is invalid", validation_details(exc)) from None


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]} for err in exc.errors()]


def submit_job(ctx: AppContext, tenant: TenantDocument, body: bytes) -> JobAccepted:
    settings = ctx.settings
    request = parse_job_request(body, settings.max_inline_images)
    if request.callback_url is not None:
        _check_callback_url(str(request.callback_url), settings.fetch_allow_loopback)
    tier = Tier(tenant.tier)
    lane = lane_for(tier, settings)
    job_id = new_job_id()
    refs = request.inline_refs
    if refs is not None:
        size = inline_chunk_size(refs, settings.chunk_size)
        total_chunks = chunk_count(len(refs), size)
        shards = shards_for(tier, settings, total_chunks)
    else:
        assert request.manifest is not None
        manifest = manifest_blob_name(tenant.tenant_id, request.manifest)
        _require_manifest(ctx, manifest)
        total_chunks = None
        shards = shards_for(tier, settings)

    job = JobDocument(
        id=job_id,
        jobId=job_id,
        tenantId=tenant.tenant_id,
        lane=lane,
        shards=shards,
        source="urls" if request.urls is not None else "blobs" if request.blobs is not None else "manifest",
        manifest_blob=None if refs is not None else manifest,
        options=request.options,
        callback_url=str(request.callback_url) if request.callback_url else None,
        total_images=len(refs) if refs is not None else None,
        total_chunks=total_chunks,
        created_at=utcnow(),
    )
    ctx.store.create_job(job)
    try:
        if refs is not None:
            chunks = inline_chunks(job_id, tenant.tenant_id, lane, request.options, refs, size)
            ctx.bus.send(lane.queue_name, (chunk_message(c, shards) for c in chunks))
        else:
            ctx.store.upsert_expansion(ExpansionDocument(id=f"{job_id}.expansion", jobId=job_id))
            expand = ExpandMessage(job_id=job_id, tenant_id=tenant.tenant_id, manifest_blob=manifest)
            ctx.bus.send(EXPAND_QUEUE, [expand_message(expand)])
    except Exception:
        log.exception("job %s: enqueueing failed; marking the job failed", job_id)
        ctx.store.patch_job(job_id, {"state": JobState.FAILED.value, "active": False, "finished_at": _now_iso()})
        raise ApiError(503, "enqueue_failed", "the job could not be queued; try again", {"jobId": job_id}) from None
    return JobAccepted(
        job_id=job_id,
        state=job.state,
        lane=lane,
        total_images=job.total_images,
        total_chunks=total_chunks,
        status_url=f"/api/jobs/{job_id}",
    )


def _now_iso() -> str:
    return utcnow().isoformat()


def chunk_message(message: ChunkMessage, shards: int) -> OutgoingMessage:
    return OutgoingMessage(
        body=encode(message),
        message_id=message_id(message.job_id, message.chunk),
        session_id=session_id(message.job_id, message.chunk, shards),
        subject="chunk",
        properties={"jobId": message.job_id, "chunk": message.chunk},
    )


def expand_message(message: ExpandMessage) -> OutgoingMessage:
    return OutgoingMessage(
        body=message.model_dump_json(),
        message_id=f"{message.job_id}.expand.{message.step}",
        subject="expand",
        properties={"jobId": message.job_id},
    )


def _require_manifest(ctx: AppContext, blob: str) -> None:
    try:
        ctx.blobs.size(MANIFESTS_CONTAINER, blob)
    except BlobNotFound:
        raise ApiError(
            400,
            "manifest_not_found",
            f"no manifest blob {blob.partition('/')[2]!r} in your manifests folder",
            {"container": MANIFESTS_CONTAINER, "blob": blob},
        ) from None


def _check_callback_url(url: str, allow_loopback: bool) -> None:
    from shared.fetch import FetchError, check_public_url

    try:
        check_public_url(url, allow_loopback)
    except FetchError as exc:
        raise ApiError(400, "invalid_callback_url", str(exc), {"field": "callback_url"}) from None


def _owned_job(ctx: AppContext, tenant: TenantDocument, job_id: str) -> tuple[JobDocument, str]:
    found = ctx.store.get_job(job_id) if job_id.isalnum() else None
    if found is None or found[0].tenant_id != tenant.tenant_id:
        raise job_not_found(job_id)  # another tenant's job is indistinguishable from a missing one
    return found


def job_status(job: JobDocument) -> JobStatus:
    done = job.counts.done
    percent = 100.0 if job.state.terminal else (round(100.0 * done / job.total_images, 2) if job.total_images else 0.0)
    return JobStatus(
        job_id=job.job_id,
        state=job.state,
        lane=job.lane,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        total_images=job.total_images,
        total_chunks=job.total_chunks,
        counts=job.counts,
        percent=percent,
        images_per_second=job.images_per_second,
        eta_seconds=job.eta_seconds,
        errors=job.error_codes,
        dead_lettered_chunks=job.dead_lettered,
        duplicate_groups=job.duplicate_groups,
        cancel_requested=job.cancel_requested,
        callback=job.callback,
    )


def get_job_status(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobStatus:
    job, _ = _owned_job(ctx, tenant, job_id)
    return job_status(job)


def list_job_images(
    ctx: AppContext, tenant: TenantDocument, job_id: str, page_size: str | None, continuation: str | None
) -> ImagePage:
    _owned_job(ctx, tenant, job_id)
    try:
        size = int(page_size or 100)
    except ValueError:
        size = -1
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(400, "invalid_page_size", f"pageSize must be 1 to {MAX_PAGE_SIZE}", {"field": "pageSize"})
    try:
        items, token = ctx.store.page_images(job_id, size, continuation or None)
    except Exception as exc:  # a forged or stale token is the caller's problem, not a 500
        if continuation:
            raise ApiError(400, "invalid_continuation", "the continuation token is not valid") from exc
        raise
    return ImagePage(items=items, continuation=token)


def cancel_job(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobStatus:
    job, _ = _owned_job(ctx, tenant, job_id)
    if not job.state.terminal:
        ctx.store.patch_job(job_id, {"cancel_requested": True, "active": True})
        job.cancel_requested = True
    return job_status(job)


def replay_dead_letters(ctx: AppContext, tenant: TenantDocument, job_id: str) -> dict[str, Any]:
    """Re-sends every dead-lettered chunk of the job not replayed yet, with a fresh message id (duplicate
    detection would drop the original id) and its original session, and reopens the job for the status timer."""
    job, _ = _owned_job(ctx, tenant, job_id)
    if job.cancel_requested:
        raise ApiError(409, "job_cancelled", "a cancelled job cannot be replayed")
    pending = [d for d in ctx.store.dead_letters(job_id) if not d.replayed]
    replayed = []
    for dead in pending:
        ChunkMessage.model_validate_json(dead.body)  # only a valid chunk message is re-sent
        attempt = utcnow().strftime("%Y%m%d%H%M%S%f")
        ctx.bus.send(
            dead.lane.queue_name,
            [
                OutgoingMessage(
                    body=dead.body,
                    message_id=f"{message_id(job_id, dead.chunk)}.replay.{attempt}",
                    session_id=session_id(job_id, dead.chunk, job.shards),
                    subject="chunk",
                    properties={"jobId": job_id, "chunk": dead.chunk, "replay": attempt},
                )
            ],
        )
        dead.replayed = True
        ctx.store.upsert_dead_letter(dead)
        replayed.append(dead.chunk)
    if replayed:
        ctx.store.patch_job(job_id, {"active": True})
    return {"jobId": job_id, "replayedChunks": sorted(replayed)}
