"""Quotas per tier: the most jobs a tenant may have unfinished at once, and the most images it may submit a UTC day.

Each tenant's use is one document (`usage:<tenant>` in the Cosmos `limits` container): the ids of its active jobs
and the day's image count, updated at submission by an etag-guarded read-modify-write. Finished jobs are not
removed by whoever finishes them: when the list is full, the listed jobs are looked up (two reads in all, whatever
the quota's size: the job documents, then the chunk records of one-chunk jobs, each read-many) and those finished or
gone are dropped, so the count heals itself whatever failed in between. A submission looks each job up at most once,
however many etag races it loses: the reads sit between the read and the write of the usage document, and a submission
that re-read a hundred jobs on every attempt kept losing to the others (seconds a call, then a 503).

A refusal is a `quota_exceeded` (QuotaExceeded, with when to retry) whose details name the quota, its limit, the
use and when it resets.
Manifest jobs' image counts are not known at submission: such a job is refused only once the day's quota is used
up, and its images are charged when the manifest is expanded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.errors import QuotaExceeded, Unavailable
from shared.limits.versioned import Contended, VersionedStore, update
from shared.messages import usage_key
from shared.models import ChunkDocument, JobDocument, utcnow
from shared.progress import as_seen_all

log = logging.getLogger(__name__)

# Hints only: the active-jobs quota frees up when one of the tenant's jobs finishes, which for a job of a few images
# (a photo posted on its own) is a matter of seconds, and a client told 30 s would leave the pipeline idle.
ACTIVE_JOBS_RETRY_AFTER_SECONDS = 30
SMALL_JOBS_RETRY_AFTER_SECONDS = 2
SMALL_JOB_IMAGES = 10


class JobLookup(Protocol):
    """The reads of the job store the active-jobs quota needs."""

    def get_jobs(self, job_ids: list[str]) -> dict[str, JobDocument]: ...

    def get_first_chunks(self, job_ids: list[str]) -> dict[str, ChunkDocument]: ...


def day(now: datetime) -> str:
    return now.date().isoformat()


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


@dataclass(frozen=True)
class Refusal:
    quota: str
    limit: int
    used: int
    requested: int | None
    resets_at: datetime | None
    retry_after: int

    def error(self) -> QuotaExceeded:
        if self.quota == "active_jobs":
            message = (
                f"you have {self.used} unfinished jobs, the most your tier allows at once ({self.limit}); "
                "submit again when one of them finishes"
            )
        else:
            message = (
                f"this job's images would take you over your tier's {self.limit} images a day "
                f"({self.used} used today); the count starts again at {self.resets_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        details = {
            "quota": self.quota,
            "limit": self.limit,
            "used": self.used,
            "requested": self.requested,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            "retry_after": self.retry_after,
        }
        return QuotaExceeded("quota_exceeded", message, details, self.retry_after)


def active_documents(jobs: JobLookup, job_ids: list[str]) -> dict[str, JobDocument]:
    """The jobs among these not finished, as a status read shows them (`as_seen`: a one-chunk job whose chunk is
    done has finished, and a tenant told so may submit again), by id."""
    seen = as_seen_all(jobs.get_jobs(job_ids), jobs.get_first_chunks, utcnow())
    return {job_id: seen[job_id] for job_id in job_ids if job_id in seen and not seen[job_id].state.terminal}


def still_active(jobs: JobLookup, job_ids: list[str]) -> list[str]:
    return list(active_documents(jobs, job_ids))


def active_jobs_retry_after(active: Iterable[JobDocument]) -> int:
    """When to try again at the active-jobs cap: soon if one of the active jobs has only a few images."""
    if any(0 < (job.total_images or 0) <= SMALL_JOB_IMAGES for job in active):  # None: a manifest not expanded yet
        return SMALL_JOBS_RETRY_AFTER_SECONDS
    return ACTIVE_JOBS_RETRY_AFTER_SECONDS


def current_use(doc: dict[str, Any] | None, today: str) -> tuple[list[str], int]:
    if doc is None:
        return [], 0
    images = int(doc.get("images_today", 0)) if doc.get("day") == today else 0
    return list(doc.get("active_jobs", [])), images


def reserve(
    limits: VersionedStore,
    jobs: JobLookup,
    quotas: tuple[int, int],
    tenant_id: str,
    job_id: str,
    images: int | None,
) -> None:
    """Counts a new job (and its images, if known) against the tenant's quotas (`quotas`: its tier's most active
    jobs and images a day, 0 for no limit), or raises `quota_exceeded`."""
    max_active, max_daily = quotas
    if not max_active and not max_daily:
        return
    # Listed job -> its document if still active (None if not), looked up once whatever the attempts.
    active_now: dict[str, JobDocument | None] = {}

    def prune(active: list[str]) -> list[str]:
        unknown = [job_id for job_id in active if job_id not in active_now]
        if unknown:
            found = active_documents(jobs, unknown)
            active_now.update((job_id, found.get(job_id)) for job_id in unknown)
        return [job_id for job_id in active if active_now[job_id] is not None]

    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Refusal | None]:
        now = utcnow()
        today = day(now)
        active, used = current_use(doc, today)
        pruned = active
        if max_active and len(active) >= max_active:
            pruned = prune(active)
        refusal: Refusal | None = None
        if max_active and len(pruned) >= max_active:
            retry = active_jobs_retry_after(job for job_id in pruned if (job := active_now.get(job_id)) is not None)
            refusal = Refusal("active_jobs", max_active, len(pruned), None, None, retry)
        elif max_daily and (used + (images or 0) > max_daily or (images is None and used >= max_daily)):
            midnight = next_midnight(now)
            wait = max(1, math.ceil((midnight - now).total_seconds()))
            refusal = Refusal("images_per_day", max_daily, used, images, midnight, wait)
        if refusal is not None:
            write = {"type": "usage", "active_jobs": pruned, "day": today, "images_today": used}
            return (write if pruned != active else None), refusal
        return {
            "type": "usage",
            "active_jobs": [*pruned, job_id],
            "day": today,
            "images_today": used + (images or 0),
        }, None

    try:
        refused = update(limits, usage_key(tenant_id), change)
    except Contended:
        raise Unavailable(
            "quota_check_busy", "too many submissions at once to count them; try again", retry_after=1
        ) from None
    if refused is not None:
        raise refused.error()


def charge_images(limits: VersionedStore, tenant_id: str, images: int) -> None:
    """Adds images learnt after submission (a manifest's, once expanded) to the day's count. Never refuses."""

    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        today = day(utcnow())
        active, used = current_use(doc, today)
        return {"type": "usage", "active_jobs": active, "day": today, "images_today": used + images}, None

    try:
        update(limits, usage_key(tenant_id), change)
    except Exception:  # the job is already running: a missed charge must not fail its expansion
        log.warning("could not charge %d images to tenant %s", images, tenant_id, exc_info=True)

