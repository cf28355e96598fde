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
from shared.config import EXPAND_QUEUE, MANIFESTS_CONTAINER, Tier
from shared.errors import ApiError, job_not_found
from shared.messages import chunk_message, chunk_queue, expand_message, expansion_document_id, replay_message
from shared.models import (
    ChunkMessage,
    DuplicateGroupItem,
    DuplicateGroupPage,
    ExpandMessage,
    ExpansionDocument,
    ImagePage,
    JobAccepted,
    JobDocument,
    JobRequest,
    JobState,
    JobStatus,
    ReplayAccepted,
    TenantDocument,
    utcnow,
)
from shared.planning import (
    chunk_count,
    inline_chunk_size,
    inline_chunks,
    lane_for,
    new_job_id,
    shards_for,
)
from shared.services.context import AppContext
from shared.services.quotas import reserve as reserve_quota
from shared.views import job_status

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
    reserve_quota(ctx, tenant, job_id, job.total_images)  # raises 429 quota_exceeded
    ctx.store.create_job(job)
    try:
        if refs is not None:
            chunks = list(inline_chunks(job_id, tenant.tenant_id, lane, request.options, refs, size))
            ctx.bus.send(chunk_queue(chunks[0]), (chunk_message(c, shards) for c in chunks))
        else:
            ctx.store.upsert_expansion(ExpansionDocument(id=expansion_document_id(job_id), jobId=job_id))
            expand = ExpandMessage(job_id=job_id, tenant_id=tenant.tenant_id, manifest_blob=manifest)
            ctx.bus.send(EXPAND_QUEUE, [expand_message(expand)])
    except Exception:
        log.exception("job %s: enqueueing failed; marking the job failed", job_id)
        ctx.store.patch_job(job_id, {"state": JobState.FAILED.value, "finished_at": _now_iso()})
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


def get_job_status(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobStatus:
    job, _ = _owned_job(ctx, tenant, job_id)
    return job_status(job)


def list_job_images(
    ctx: AppContext, tenant: TenantDocument, job_id: str, page_size: str | None, continuation: str | None
) -> ImagePage:
    _owned_job(ctx, tenant, job_id)
    size = _page_size(page_size)
    try:
        items, token = ctx.store.page_images(job_id, size, continuation or None)
    except Exception as exc:  # a forged or stale token is the caller's problem, not a 500
        if continuation:
            raise ApiError(400, "invalid_continuation", "the continuation token is not valid") from exc
        raise
    return ImagePage(items=items, continuation=token)


def list_duplicate_groups(
    ctx: AppContext, tenant: TenantDocument, job_id: str, page_size: str | None, continuation: str | None
) -> DuplicateGroupPage:
    """The job's duplicate groups, a page at a time (a large group comes in parts of the same `group`)."""
    job, _ = _owned_job(ctx, tenant, job_id)
    size = _page_size(page_size)
    if job.duplicates.state != "ready":
        return DuplicateGroupPage(items=[], continuation=None)
    try:
        items, token = ctx.store.page_duplicate_groups(job_id, job.ends, size, continuation or None)
    except Exception as exc:
        if continuation:
            raise ApiError(400, "invalid_continuation", "the continuation token is not valid") from exc
        raise
    return DuplicateGroupPage(items=[DuplicateGroupItem.model_validate(i) for i in items], continuation=token)


def _page_size(page_size: str | None) -> int:
    try:
        size = int(page_size or 100)
    except ValueError:
        size = -1
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(400, "invalid_page_size", f"pageSize must be 1 to {MAX_PAGE_SIZE}", {"field": "pageSize"})
    return size


def cancel_job(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobStatus:
    job, _ = _owned_job(ctx, tenant, job_id)
    if not job.state.terminal:
        ctx.store.patch_job(job_id, {"cancel_requested": True})
        job.cancel_requested = True
    return job_status(job)


def replay_dead_letters(ctx: AppContext, tenant: TenantDocument, job_id: str) -> ReplayAccepted:
    """Re-sends up to REPLAY_BATCH_CHUNKS dead-lettered chunks of the job not replayed yet (bounded work per call:
    `remaining` says how many are left), each with a fresh message id on its original queue and session. Marking a
    dead letter replayed is the change that reopens the job for the status timer."""
    job, _ = _owned_job(ctx, tenant, job_id)
    if job.cancel_requested:
        raise ApiError(409, "job_cancelled", "a cancelled job cannot be replayed")
    pending, more = ctx.store.unreplayed_dead_letters(job_id, ctx.settings.replay_batch_chunks)
    by_queue: dict[str, list[Any]] = {}
    for dead in pending:
        chunk = ChunkMessage.model_validate_json(dead.body)  # only a valid chunk message is re-sent
        by_queue.setdefault(chunk_queue(chunk), []).append(replay_message(chunk, dead.body, job.shards))
    for queue, messages in by_queue.items():
        ctx.bus.send(queue, messages)
    for dead in pending:
        dead.replayed = True
        ctx.store.upsert_dead_letter(dead)
    remaining = 0
    if more:
        left, _ = ctx.store.unreplayed_dead_letters(job_id, ctx.settings.replay_batch_chunks)
        remaining = len(left)
    return ReplayAccepted(job_id=job_id, replayed_chunks=sorted(d.chunk for d in pending), remaining=remaining)
