"""The jobs API's use cases: submit, read status, page results, cancel, replay dead-lettered chunks.

Submitting never does work proportional to the job's size beyond validating an inline list (at most
MAX_INLINE_IMAGES): inline lists become chunk messages in one batched send; manifests become a single expand
message, so the answer comes back in well under 200 ms whatever the size.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from shared.adapters.blobs import BlobNotFound
from shared.config import (
    EXPAND_QUEUE,
    EXPORTS_CONTAINER,
    FINISH_QUEUE,
    MANIFESTS_CONTAINER,
    ORIGINALS_CONTAINER,
    THUMBNAILS_CONTAINER,
    Tier,
)
from shared.errors import (
    Conflict,
    InvalidRequest,
    LengthRequired,
    NotFound,
    TooLarge,
    Unavailable,
    job_not_found,
    validation_error,
)
from shared.limits.quotas import reserve as reserve_quota
from shared.messages import (
    chunk_message,
    chunk_queue,
    expand_message,
    expansion_document_id,
    export_blob_name,
    finish_message,
    manifest_blob_name,
    original_blob_name,
    replay_message,
    single_image_ref,
    upload_blob_name,
    upload_file_ref,
    upload_record_name,
)
from shared.models import (
    ChunkMessage,
    DuplicateGroupItem,
    DuplicateGroupPage,
    ExpandMessage,
    ExpansionDocument,
    ExportPending,
    FinishMessage,
    ImagePage,
    ImageResultDocument,
    JobAccepted,
    JobDocument,
    JobPage,
    JobRequest,
    JobSource,
    JobState,
    JobStatus,
    ReplayAccepted,
    TenantDocument,
    utcnow,
)
from shared.paging import ContinuationRejected, decode_continuation, encode_continuation, invalid_continuation
from shared.planning import (
    chunk_count,
    concurrency_for,
    inline_chunk_size,
    inline_chunks,
    lane_for,
    new_job_id,
)
from shared.progress import as_seen, as_seen_all
from shared.services.context import AppContext
from shared.tracing import submit_span
from shared.views import SignRead, image_result_item, job_entry, job_status

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
PageItems = TypeVar("PageItems")
MAX_JOB_PAGE_SIZE = 100
EXPORT_RETRY_SECONDS = 2


def parse_job_request(body: bytes, max_inline_images: int) -> JobRequest:
    try:
        raw = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("invalid_request", "the body must be a JSON object")
    for field in ("urls", "blobs"):
        if isinstance(raw.get(field), list) and len(raw[field]) > max_inline_images:
            raise TooLarge(
                "too_many_images",
                f"{len(raw[field])} images in '{field}' is over the {max_inline_images} allowed inline; "
                "upload a manifest blob (one URL or blob name a line) and pass its name as 'manifest'",
                {"field": field, "count": len(raw[field]), "limit": max_inline_images},
            )
    try:
        return JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def submit_job(ctx: AppContext, tenant: TenantDocument, body: bytes) -> JobAccepted:
    """Submits a job inside a span whose context its chunk messages carry (each chunk's trace links to it)."""
    with submit_span(tenant.tenant_id) as span:
        accepted = _submit_job(ctx, tenant, body)
        span.set_attributes({"imagepipe.job_id": accepted.job_id, "imagepipe.lane": accepted.lane.value})
        return accepted


def _submit_job(ctx: AppContext, tenant: TenantDocument, body: bytes) -> JobAccepted:
    request = parse_job_request(body, ctx.settings.max_inline_images)
    if request.callback_url is not None:
        _check_callback_url(str(request.callback_url), ctx.settings.fetch_allow_loopback)
    if request.upload is not None:
        blobs = _uploaded_files(ctx, tenant, request.upload)
        return _start_job(ctx, tenant, request.model_copy(update={"blobs": blobs}), "upload", new_job_id())
    if request.manifest is not None:
        return _start_manifest_job(ctx, tenant, request)
    source: JobSource = "urls" if request.urls is not None else "blobs"
    return _start_job(ctx, tenant, request, source, new_job_id())


def submit_image(
    ctx: AppContext, tenant: TenantDocument, content_length: str | None, read_body: Callable[[], bytes]
) -> JobAccepted:
    """`POST /api/images`: the body is one image. Refused by its declared length before it is read when that is over
    the cap; stored in the tenant's originals folder, then a one-image job (one chunk: the lane's express path)."""
    with submit_span(tenant.tenant_id) as span:
        accepted = _submit_image(ctx, tenant, content_length, read_body)
        span.set_attributes({"imagepipe.job_id": accepted.job_id, "imagepipe.lane": accepted.lane.value})
        return accepted


def _submit_image(
    ctx: AppContext, tenant: TenantDocument, content_length: str | None, read_body: Callable[[], bytes]
) -> JobAccepted:
    limit = ctx.settings.image_max_bytes
    try:
        declared = int(content_length) if content_length is not None else None
    except ValueError:
        declared = None
    if declared is None:
        raise LengthRequired("length_required", "send the image with a Content-Length header")
    if declared > limit:
        raise _image_too_large(declared, limit)
    data = read_body()
    if len(data) > limit:
        raise _image_too_large(len(data), limit)
    if not data:
        raise InvalidRequest("empty_image", "the body is empty: send the image's bytes")
    job_id = new_job_id()
    ref = single_image_ref(job_id)

    def store_original() -> Callable[[], object]:
        name, kind = original_blob_name(tenant.tenant_id, ref), "application/octet-stream"
        return _blob_writes().submit(ctx.blobs.write, ORIGINALS_CONTAINER, name, data, kind).result

    return _start_job(ctx, tenant, JobRequest(blobs=[ref]), "upload", job_id, store_original)


@functools.cache
def _blob_writes() -> ThreadPoolExecutor:
    """Threads for an upload's blob write, overlapped with the job's Cosmos writes (the blob client is shared)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="image-upload")


def _image_too_large(size: int, limit: int) -> TooLarge:
    return TooLarge("image_too_large", f"{size} bytes is over the {limit}-byte limit", {"limit": limit})


def _uploaded_files(ctx: AppContext, tenant: TenantDocument, upload: str) -> list[str]:
    """The upload's files, in order, once every one of them is in storage."""
    try:
        record = ctx.blobs.read(MANIFESTS_CONTAINER, upload_record_name(tenant.tenant_id, upload), 16 << 20)
    except BlobNotFound:
        raise InvalidRequest("upload_not_found", f"no upload {upload!r} for this tenant", {"field": "upload"}) from None
    expected = record.decode().splitlines()
    prefix = upload_blob_name(tenant.tenant_id, upload, "")
    stored = ctx.blobs.list_sizes(ORIGINALS_CONTAINER, prefix)
    present = {name.removeprefix(original_blob_name(tenant.tenant_id, "")) for name, _ in stored}
    missing = [ref.removeprefix(upload_file_ref(upload, "")) for ref in expected if ref not in present]
    if missing:
        raise Conflict(
            "upload_incomplete",
            f"{len(missing)} of the upload's {len(expected)} files have not been uploaded",
            {"missing": missing[:20], "count": len(missing)},
        )
    return expected


def _start_job(
    ctx: AppContext,
    tenant: TenantDocument,
    request: JobRequest,
    source: JobSource,
    job_id: str,
    store_first: Callable[[], Callable[[], object]] | None = None,
) -> JobAccepted:
    """A job of an inline list: its chunk messages go out in one batched send. `store_first`, once the quota has
    admitted the job, starts storing what the job reads (overlapped with the job's Cosmos writes) and gives what
    to wait on before the send: a failure there fails the job like a failed send."""
    settings = ctx.settings
    tier = Tier(tenant.tier)
    refs = request.inline_refs
    assert refs is not None
    size = inline_chunk_size(refs, settings.chunk_size)
    total_chunks = chunk_count(len(refs), size)
    job = _new_job(ctx, tenant, request, source, job_id, concurrency_for(tier, settings, total_chunks))
    job.total_images, job.total_chunks = len(refs), total_chunks
    _reserve(ctx, tenant, job_id, job.total_images)  # raises quota_exceeded
    stored = store_first() if store_first is not None else None
    _create(ctx, job)
    chunks = list(inline_chunks(job_id, tenant.tenant_id, job.lane, request.options, refs, size))

    def send() -> None:
        if stored is not None:
            stored()
        ctx.bus.send(chunk_queue(chunks[0]), (chunk_message(c, job.concurrency) for c in chunks))

    _enqueue(ctx, job, send)
    return _accepted(job)


def _start_manifest_job(ctx: AppContext, tenant: TenantDocument, request: JobRequest) -> JobAccepted:
    """A job of a manifest: one expand message; the expander writes the chunk messages a batch at a time."""
    assert request.manifest is not None
    manifest = manifest_blob_name(tenant.tenant_id, request.manifest)
    _require_manifest(ctx, manifest)
    job_id = new_job_id()
    job = _new_job(ctx, tenant, request, "manifest", job_id, concurrency_for(Tier(tenant.tier), ctx.settings))
    job.manifest_blob = manifest
    _reserve(ctx, tenant, job_id, None)  # raises quota_exceeded; the images are charged once expanded
    _create(ctx, job)

    def enqueue() -> None:
        ctx.store.upsert_expansion(ExpansionDocument(id=expansion_document_id(job_id), jobId=job_id))
        expand = ExpandMessage(job_id=job_id, tenant_id=tenant.tenant_id, manifest_blob=manifest)
        ctx.bus.send(EXPAND_QUEUE, [expand_message(expand)])

    _enqueue(ctx, job, enqueue)
    return _accepted(job)


def _reserve(ctx: AppContext, tenant: TenantDocument, job_id: str, images: int | None) -> None:
    quotas = ctx.settings.quotas_of(Tier(tenant.tier))
    reserve_quota(ctx.limits, ctx.store, quotas, tenant.tenant_id, job_id, images)


def _new_job(
    ctx: AppContext, tenant: TenantDocument, request: JobRequest, source: JobSource, job_id: str, concurrency: int
) -> JobDocument:
    return JobDocument(
        id=job_id,
        jobId=job_id,
        tenantId=tenant.tenant_id,
        lane=lane_for(Tier(tenant.tier), ctx.settings),
        concurrency=concurrency,
        source=source,
        options=request.options,
        callback_url=str(request.callback_url) if request.callback_url else None,
        created_at=utcnow(),
    )


def _create(ctx: AppContext, job: JobDocument) -> None:
    """The job document, and its entry in the tenant's job list (first: a listed job always exists)."""
    ctx.store.create_job(job)
    ctx.store.upsert_job_entry(job_entry(job, ctx.settings.job_retention_seconds))


def _enqueue(ctx: AppContext, job: JobDocument, send: Callable[[], object]) -> None:
    try:
        send()
    except Exception:
        log.exception("job %s: enqueueing failed; marking the job failed", job.job_id)
        ctx.store.patch_job(job.job_id, {"state": JobState.FAILED.value, "finished_at": _now_iso()})
        job.state = JobState.FAILED
        ctx.store.upsert_job_entry(job_entry(job, ctx.settings.job_retention_seconds))
        raise Unavailable("enqueue_failed", "the job could not be queued; try again", {"job_id": job.job_id}) from None


def _accepted(job: JobDocument) -> JobAccepted:
    return JobAccepted(
        job_id=job.job_id,
        state=job.state,
        lane=job.lane,
        total_images=job.total_images,
        total_chunks=job.total_chunks,
        status_url=f"/api/jobs/{job.job_id}",
    )


def _now_iso() -> str:
    return utcnow().isoformat()


def _require_manifest(ctx: AppContext, blob: str) -> None:
    try:
        ctx.blobs.size(MANIFESTS_CONTAINER, blob)
    except BlobNotFound:
        raise InvalidRequest(
            "manifest_not_found",
            f"no manifest blob {blob.partition('/')[2]!r} in your manifests folder",
            {"container": MANIFESTS_CONTAINER, "blob": blob},
        ) from None


def _check_callback_url(url: str, allow_loopback: bool) -> None:
    from shared.fetch import FetchError, check_public_url

    try:
        check_public_url(url, allow_loopback)
    except FetchError as exc:
        raise InvalidRequest("invalid_callback_url", str(exc), {"field": "callback_url"}) from None


def _owned_job(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobDocument:
    found = ctx.store.get_job(job_id) if job_id.isalnum() else None
    if found is None or found.job.tenant_id != tenant.tenant_id:
        raise job_not_found(job_id)  # another tenant's job is indistinguishable from a missing one
    return found.job


def get_job_status(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobStatus:
    return job_status(_current_job(ctx, tenant, job_id))


def _current_job(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobDocument:
    """The tenant's job as a status read shows it (`as_seen`)."""
    return _as_seen(ctx, _owned_job(ctx, tenant, job_id))


def _as_seen(ctx: AppContext, job: JobDocument) -> JobDocument:
    return as_seen(job, lambda: ctx.store.get_chunk(job.job_id, 0), utcnow())


def list_job_images(
    ctx: AppContext, tenant: TenantDocument, job_id: str, page_size: str | None, continuation: str | None
) -> ImagePage:
    _owned_job(ctx, tenant, job_id)
    size = _page_size(page_size)
    scope = f"images:{job_id}"
    items, token = _paged(scope, continuation, lambda t: ctx.store.page_images(job_id, size, t))
    sign = _read_url_signer(ctx)
    return ImagePage(
        items=[image_result_item(ImageResultDocument.model_validate(i), tenant.tenant_id, sign) for i in items],
        continuation=encode_continuation(scope, token),
    )


def _paged(
    scope: str, continuation: str | None, fetch: Callable[[str | None], tuple[PageItems, str | None]]
) -> tuple[PageItems, str | None]:
    """One page from the store, from a client's continuation token (checked first: refused if it is not ours)."""
    try:
        return fetch(decode_continuation(scope, continuation))
    except ContinuationRejected:
        raise invalid_continuation() from None


def _read_url_signer(ctx: AppContext) -> SignRead:
    expiry = utcnow() + timedelta(seconds=ctx.settings.download_url_ttl_seconds)
    return lambda container, name: ctx.blobs.read_url(container, name, expiry)


def thumbnail_url(ctx: AppContext, tenant: TenantDocument, job_id: str, index: str, file_name: str) -> str:
    """A read URL of one thumbnail of one image (`{size}.{format}`), for a redirect."""
    image = _owned_image(ctx, tenant, job_id, index)
    for thumbnail in image.thumbnails:
        if f"{thumbnail['size']}.{thumbnail['format']}" == file_name:
            return _read_url_signer(ctx)(THUMBNAILS_CONTAINER, str(thumbnail["blob"]))
    made = ", ".join(f"{t['size']}.{t['format']}" for t in image.thumbnails) or "none"
    raise NotFound("thumbnail_not_found", f"image {index} has no thumbnail {file_name!r} (it has: {made})")


def original_url(ctx: AppContext, tenant: TenantDocument, job_id: str, index: str) -> str:
    """A read URL of an image's original, when it is a blob in the tenant's originals folder."""
    image = _owned_image(ctx, tenant, job_id, index)
    if image.kind != "blob" or not image.ok:
        raise NotFound("original_not_stored", f"image {index}'s original is not in your originals folder")
    return _read_url_signer(ctx)(ORIGINALS_CONTAINER, original_blob_name(tenant.tenant_id, image.ref))


def _owned_image(ctx: AppContext, tenant: TenantDocument, job_id: str, index: str) -> ImageResultDocument:
    _owned_job(ctx, tenant, job_id)
    image = ctx.store.get_image(job_id, int(index)) if index.isdigit() and len(index) < 10 else None
    if image is None:
        raise NotFound("image_not_found", f"job {job_id!r} has no result for image {index!r} (yet)")
    return image


def list_jobs(
    ctx: AppContext,
    tenant: TenantDocument,
    states: str | None,
    created_after: str | None,
    created_before: str | None,
    page_size: str | None,
    continuation: str | None,
) -> JobPage:
    """The tenant's jobs, newest first, optionally of some states and created in a time range."""
    size = _page_size(page_size, default=20, maximum=MAX_JOB_PAGE_SIZE)
    wanted = _states(states)
    after, before = _instant(created_after, "created_after"), _instant(created_before, "created_before")
    # The filters are part of the scope: a token continues the listing it came from, not another.
    scope = f"jobs:{tenant.tenant_id}:{','.join(wanted or [])}:{after}:{before}"
    ids, token = _paged(
        scope,
        continuation,
        lambda t: ctx.store.page_job_entries(tenant.tenant_id, wanted, after, before, size, t),
    )
    jobs = as_seen_all(ctx.store.get_jobs(ids), ctx.store.get_first_chunks, utcnow())
    # The entry's state can trail the job's by a roll-up: the job document (as a status read shows it) decides.
    shown = [jobs[i] for i in ids if i in jobs and (wanted is None or jobs[i].state.value in wanted)]
    return JobPage(items=[job_status(j) for j in shown], continuation=encode_continuation(scope, token))


def _states(text: str | None) -> list[str] | None:
    if not text:
        return None
    states = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in states if s not in JobState.__members__.values()]
    if unknown or not states:
        raise InvalidRequest(
            "invalid_state",
            f"state must be a comma-separated list of {', '.join(s.value for s in JobState)}",
            {"field": "state", "unknown": unknown},
        )
    return states


def _instant(text: str | None, field: str) -> str | None:
    """An ISO 8601 time from the query string, as the stored form (UTC, ISO) so it compares as text."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest("invalid_time", f"{field} must be an ISO 8601 time", {"field": field}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def list_duplicate_groups(
    ctx: AppContext, tenant: TenantDocument, job_id: str, page_size: str | None, continuation: str | None
) -> DuplicateGroupPage:
    """The job's duplicate groups, a page at a time (a large group comes in parts of the same `group`)."""
    job = _owned_job(ctx, tenant, job_id)
    size = _page_size(page_size)
    if job.duplicates.state != "ready":
        return DuplicateGroupPage(items=[], continuation=None)
    scope = f"duplicates:{job_id}:{job.ends}"
    items, token = _paged(
        scope, continuation, lambda t: ctx.store.page_duplicate_groups(job_id, job.ends, size, t)
    )
    return DuplicateGroupPage(
        items=[DuplicateGroupItem.model_validate(i) for i in items], continuation=encode_continuation(scope, token)
    )


def _page_size(page_size: str | None, default: int = 100, maximum: int = MAX_PAGE_SIZE) -> int:
    try:
        size = int(page_size or default)
    except ValueError:
        size = -1
    if not 1 <= size <= maximum:
        raise InvalidRequest("invalid_page_size", f"page_size must be 1 to {maximum}", {"field": "page_size"})
    return size


def cancel_job(ctx: AppContext, tenant: TenantDocument, job_id: str) -> JobStatus:
    job = _current_job(ctx, tenant, job_id)
    if not job.state.terminal:
        ctx.store.patch_job(job_id, {"cancel_requested": True})
        job.cancel_requested = True
    return job_status(job)


def replay_dead_letters(ctx: AppContext, tenant: TenantDocument, job_id: str) -> ReplayAccepted:
    """Re-sends up to REPLAY_BATCH_CHUNKS dead-lettered chunks of the job not replayed yet (bounded work per call:
    `remaining` says how many are left), each with a fresh message id on its original queue and session. Marking a
    dead letter replayed is the change that reopens the job for the status timer."""
    job = _owned_job(ctx, tenant, job_id)
    if job.cancel_requested:
        raise Conflict("job_cancelled", "a cancelled job cannot be replayed")
    pending, more = ctx.store.unreplayed_dead_letters(job_id, ctx.settings.replay_batch_chunks)
    by_queue: dict[str, list[Any]] = {}
    for dead in pending:
        chunk = ChunkMessage.model_validate_json(dead.body)  # only a valid chunk message is re-sent
        by_queue.setdefault(chunk_queue(chunk), []).append(replay_message(chunk, dead.body, job.concurrency))
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


def export_results(ctx: AppContext, tenant: TenantDocument, job_id: str) -> str | ExportPending:
    """A read URL of the finished job's results as JSON lines, or, while that blob is being built, how long to wait
    (asking again costs one existence check; the build is asked for with a deterministic message id, so polling
    does not start it twice)."""
    job = _current_job(ctx, tenant, job_id)
    if not job.state.terminal:
        raise Conflict(
            "job_not_finished",
            "results are exported once the job has ended; page GET /api/jobs/{id}/images meanwhile",
            {"state": job.state.value},
        )
    if job.ends == 0:
        raise Conflict("no_results", "the job ended before any image was processed")
    name = export_blob_name(tenant.tenant_id, job_id, job.ends)
    if ctx.blobs.exists(EXPORTS_CONTAINER, name):
        return _read_url_signer(ctx)(EXPORTS_CONTAINER, name)
    ctx.bus.send(FINISH_QUEUE, [finish_message(FinishMessage(job_id=job_id, action="export", end=job.ends))])
    return ExportPending(job_id=job_id, retry_after_seconds=EXPORT_RETRY_SECONDS)
