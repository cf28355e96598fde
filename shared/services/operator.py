"""The operator view: lane depths, unfinished jobs across tenants, throughput and failure rate.

Guarded by an operator key of its own (ADMIN_API_KEY_SHA256 holds its SHA-256; unset: the view is disabled and
is reported as not found). Everything here is read on demand, nothing is stored for it:
- lane depths are the queues' runtime properties (Service Bus administration; the local emulator answers them too);
- throughput and failure rate come from the chunk records finished in the last WINDOW_SECONDS, bucketed, so a
  chunk counts all its images at the moment it finished (a 500-image chunk is one step, not a slope).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.config import Lane, Settings
from shared.errors import NotFound, Unauthorized
from shared.models import ImageCounts, JobState, utcnow
from shared.services.context import AppContext

log = logging.getLogger(__name__)

WINDOW_SECONDS = 600
BUCKET_SECONDS = 30
ACTIVE_JOBS_LIMIT = 100


class QueueDepthView(BaseModel):
    active: int
    scheduled: int
    dead_letter: int


class LaneDepth(BaseModel):
    lane: Lane
    active: int = Field(description="Messages waiting on the lane's session and express queues together")
    dead_letter: int
    queues: dict[str, QueueDepthView]


class ActiveJob(BaseModel):
    job_id: str
    tenant_id: str
    state: JobState
    lane: Lane
    total_images: int | None
    done: int
    percent: float | None
    images_per_second: float | None
    eta_seconds: float | None
    created_at: datetime
    cancel_requested: bool


class ThroughputPoint(BaseModel):
    start: datetime
    images_per_second: float
    failed: int


class Throughput(BaseModel):
    window_seconds: int
    bucket_seconds: int
    images: int = Field(description="Images finished (succeeded, failed or skipped) in the window")
    succeeded: int
    failed: int
    images_per_second: float = Field(description="Over the whole window")
    failure_rate: float | None = Field(description="failed / (succeeded + failed) in the window; None: no images")
    errors: dict[str, int]
    series: list[ThroughputPoint] = Field(description="One point a bucket, oldest first")


class OperatorOverview(BaseModel):
    generated_at: datetime
    lanes: list[LaneDepth]
    lane_depths_available: bool
    active_jobs: list[ActiveJob]
    active_jobs_truncated: bool = Field(description=f"More than {ACTIVE_JOBS_LIMIT} unfinished jobs: the newest shown")
    throughput: Throughput
    status_timer_last_tick: datetime | None


def authenticate_operator(settings: Settings, authorization: str | None, api_key: str | None) -> None:
    """Passes when the request carries the operator key (`Authorization: Bearer <key>` or `x-api-key`)."""
    if not settings.admin_api_key_sha256:
        raise NotFound("operator_view_disabled", "the operator view is disabled (ADMIN_API_KEY_SHA256 is unset)")
    key = api_key or ""
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise Unauthorized("missing_operator_key", "send the operator key as 'Authorization: Bearer <key>'")
    digest = hashlib.sha256(key.encode()).hexdigest()
    if not hmac.compare_digest(digest, settings.admin_api_key_sha256):
        raise Unauthorized("invalid_operator_key", "the operator key is not valid")


def operator_overview(ctx: AppContext, now_epoch: float | None = None) -> OperatorOverview:
    now = time.time() if now_epoch is None else now_epoch
    lanes, available = _lane_depths(ctx)
    rows, truncated = ctx.store.active_jobs(ACTIVE_JOBS_LIMIT)
    cursor = ctx.store.get_rollup_cursor()
    return OperatorOverview(
        generated_at=utcnow(),
        lanes=lanes,
        lane_depths_available=available,
        active_jobs=[_active_job(row) for row in rows],
        active_jobs_truncated=truncated,
        throughput=throughput(ctx.store.chunk_outcomes_since(now - WINDOW_SECONDS), now),
        status_timer_last_tick=cursor.last_tick_at if cursor else None,
    )


def _lane_depths(ctx: AppContext) -> tuple[list[LaneDepth], bool]:
    queues = [name for lane in Lane for name in (lane.queue_name, lane.express_queue_name)]
    try:
        depths = ctx.bus.queue_depths(queues)
    except Exception as exc:  # the rest of the overview is still worth showing
        log.warning("queue depths unavailable: %s", exc)
        depths = {}
    lanes = []
    for lane in Lane:
        views = {
            name: QueueDepthView(**vars(depths[name]))
            for name in (lane.queue_name, lane.express_queue_name)
            if name in depths
        }
        lanes.append(
            LaneDepth(
                lane=lane,
                active=sum(v.active for v in views.values()),
                dead_letter=sum(v.dead_letter for v in views.values()),
                queues=views,
            )
        )
    return lanes, bool(depths)


def _active_job(row: dict[str, Any]) -> ActiveJob:
    counts = ImageCounts.model_validate(row.get("counts") or {})
    total = row.get("total_images")
    return ActiveJob(
        job_id=row["jobId"],
        tenant_id=row["tenantId"],
        state=row["state"],
        lane=row["lane"],
        total_images=total,
        done=counts.done,
        percent=round(100.0 * counts.done / total, 2) if total else None,
        images_per_second=row.get("images_per_second"),
        eta_seconds=row.get("eta_seconds"),
        created_at=row["created_at"],
        cancel_requested=bool(row.get("cancel_requested")),
    )


def throughput(chunks: list[dict[str, Any]], now_epoch: float) -> Throughput:
    """Folds finished chunks (`finished_epoch`, `counts`, `error_codes`) into per-bucket rates over the window
    ending at `now_epoch`. Pure."""
    start = now_epoch - WINDOW_SECONDS
    buckets = WINDOW_SECONDS // BUCKET_SECONDS
    images = [0] * buckets
    failed = [0] * buckets
    total = ImageCounts()
    errors: dict[str, int] = {}
    for chunk in chunks:
        finished = chunk.get("finished_epoch")
        if finished is None or not start <= finished <= now_epoch:
            continue
        counts = ImageCounts.model_validate(chunk.get("counts") or {})
        i = min(buckets - 1, int((finished - start) // BUCKET_SECONDS))
        images[i] += counts.done
        failed[i] += counts.failed
        total = total + counts
        for code, n in (chunk.get("error_codes") or {}).items():
            errors[code] = errors.get(code, 0) + int(n)
    judged = total.succeeded + total.failed
    return Throughput(
        window_seconds=WINDOW_SECONDS,
        bucket_seconds=BUCKET_SECONDS,
        images=total.done,
        succeeded=total.succeeded,
        failed=total.failed,
        images_per_second=round(total.done / WINDOW_SECONDS, 3),
        failure_rate=round(total.failed / judged, 4) if judged else None,
        errors=dict(sorted(errors.items(), key=lambda item: -item[1])),
        series=[
            ThroughputPoint(
                start=datetime.fromtimestamp(start + i * BUCKET_SECONDS, UTC),
                images_per_second=round(images[i] / BUCKET_SECONDS, 3),
                failed=failed[i],
            )
            for i in range(buckets)
        ],
    )
