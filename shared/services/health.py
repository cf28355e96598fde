"""Health: can this instance reach Cosmos DB, and how deep are the lanes."""

from __future__ import annotations

from typing import Any

from shared.config import LANE_QUEUES
from shared.services.context import get_context


def check_health() -> dict[str, Any]:
    report: dict[str, Any] = {"status": "ok", "checks": {}}
    ctx = get_context()
    try:
        ctx.store.active_job_ids()
        report["checks"]["cosmos"] = "ok"
    except Exception as exc:
        report["status"] = "degraded"
        report["checks"]["cosmos"] = f"unreachable: {type(exc).__name__}"
    try:
        report["lanes"] = {q: vars(d) for q, d in ctx.bus.queue_depths(LANE_QUEUES).items()}
        report["checks"]["servicebus"] = "ok"
    except Exception as exc:
        report["checks"]["servicebus"] = f"depths unavailable: {type(exc).__name__}"
    return report
