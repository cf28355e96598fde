"""Quotas per tier: the most jobs a tenant may have unfinished at once, and the most images it may submit a UTC day.

Each tenant's use is one document (`usage:<tenant>` in the Cosmos `limits` container): the ids of its active jobs
and the day's image count, updated at submission by an etag-guarded read-modify-write. Finished jobs are not
removed by whoever finishes them: when the list is full, the listed jobs are looked up (point reads, at most the
quota's size) and those finished or gone are dropped, so the count heals itself whatever failed in between.

A refusal is a `quota_exceeded` (QuotaExceeded, with when to retry) whose details name the quota, its limit, the
use and when it resets.
Manifest jobs' image counts are not known at submission: such a job is refused only once the day's quota is used
up, and its images are charged when the manifest is expanded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from shared.adapters.job_store import VersionedJob
from shared.errors import QuotaExceeded, Unavailable
from shared.limits.versioned import Contended, VersionedStore, update
from shared.messages import usage_key
from shared.models import ChunkDocument, utcnow
from shared.progress import as_seen

log = logging.getLogger(__name__)

ACTIVE_JOBS_RETRY_AFTER_SECONDS = 30  # a hint only: the quota frees up when one of the tenant's jobs finishes


class JobLookup(Protocol):
    """The reads of the job store the active-jobs quota needs."""

    def get_job(self, job_id: str) -> VersionedJob | None: ...

    def get_chunk(self, job_id: str, chunk: int) -> ChunkDocument | None: ...


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


def still_active(jobs: JobLookup, job_ids: list[str]) -> list[str]:
    """The jobs among these not finished, as a status read shows them (`as_seen`: a one-chunk job whose chunk is
    done has finished, and a tenant told so may submit again)."""
    active = []
    now = utcnow()
    for job_id in job_ids:
        found = jobs.get_job(job_id)
        if found is not None and not as_seen(found.job, partial(jobs.get_chunk, job_id, 0), now).state.terminal:
            active.append(job_id)
    return active


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

    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Refusal | None]:
        now = utcnow()
        today = day(now)
        active, used = current_use(doc, today)
        pruned = active
        if max_active and len(active) >= max_active:
            pruned = still_active(jobs, active)
        refusal: Refusal | None = None
        if max_active and len(pruned) >= max_active:
            refusal = Refusal("active_jobs", max_active, len(pruned), None, None, ACTIVE_JOBS_RETRY_AFTER_SECONDS)
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

