"""What the API and the callback show of a job document. Pure."""

from __future__ import annotations

from typing import Any

from shared.models import JobDocument, JobStatus
from shared.status import Bitmap


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
