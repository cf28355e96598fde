"""What the API and the callback show of a job document. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.config import ORIGINALS_CONTAINER, THUMBNAILS_CONTAINER
from shared.image_errors import ImageErrorCode
from shared.imaging.results import ImageFacts
from shared.messages import original_blob_name
from shared.models import (
    ImageErrorItem,
    ImageResultDocument,
    ImageResultItem,
    JobDocument,
    JobEntryDocument,
    JobStatus,
    ThumbnailItem,
)
from shared.progress import Bitmap


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
        dead_lettered_count=len(Bitmap(job.dead_lettered_chunks)),
        dead_lettered_chunks=job.dead_lettered,
        duplicates=job.duplicates,
        duplicates_url=f"/api/jobs/{job.job_id}/duplicates" if job.duplicates.state == "ready" else None,
        cancel_requested=job.cancel_requested,
        callback=job.callback,
    )


def callback_payload(job: JobDocument) -> dict[str, Any]:
    status = job_status(job).model_dump(mode="json")
    status.pop("callback", None)
    return {"event": "job.finished", "job": status}


def job_entry(job: JobDocument, retention_seconds: int) -> JobEntryDocument:
    """The job's line in its tenant's job list, expiring when the job's own documents do."""
    return JobEntryDocument(
        id=job.job_id, tenantId=job.tenant_id, state=job.state, created_at=job.created_at, ttl=retention_seconds
    )


# Signs a read URL for one blob: (container, blob name) -> URL.
SignRead = Callable[[str, str], str]


def image_result_item(doc: ImageResultDocument, tenant_id: str, sign: SignRead | None) -> ImageResultItem:
    """An image result as the API shows it; with `sign`, its thumbnails (and an uploaded original) carry read URLs."""
    thumbnails = [ThumbnailItem.model_validate(t) for t in doc.thumbnails]
    if sign is not None:
        for thumbnail in thumbnails:
            thumbnail.url = sign(THUMBNAILS_CONTAINER, thumbnail.blob)
    uploaded = sign is not None and doc.kind == "blob" and doc.ok
    original_url = sign(ORIGINALS_CONTAINER, original_blob_name(tenant_id, doc.ref)) if sign and uploaded else None
    return ImageResultItem(
        id=doc.id,
        job_id=doc.job_id,
        index=doc.index,
        chunk=doc.chunk,
        kind=doc.kind,
        ref=doc.ref,
        ok=doc.ok,
        error=ImageErrorItem(code=ImageErrorCode(doc.error.code), message=doc.error.message) if doc.error else None,
        sha256=doc.sha256,
        result=ImageFacts.model_validate(doc.result) if doc.result is not None else None,
        thumbnails=thumbnails,
        original_url=original_url,
        duplicate_of=doc.duplicate_of,
        attempts=doc.attempts,
        processed_at=doc.processed_at,
    )
