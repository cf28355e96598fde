"""Health: can this instance reach Cosmos DB, and how deep are the lanes."""

from __future__ import annotations

from typing import Any

from shared.config import CHUNK_QUEUES
from shared.services.context import get_context


def check_health() -> dict[str, Any]:
    report: dict[str, Any] = {"status": "ok", "checks": {}}
    ctx = get_context()
    try:
        # One point read, whatever the number of jobs: the status timer's cursor, which also says when it last ran.
        cursor = ctx.store.get_rollup_cursor()
        report["checks"]["cosmos"] = "ok"
        report["status_timer_last_tick"] = cursor.last_tick_at.isoformat() if cursor and cursor.last_tick_at else None
    except Exception as exc:
        report["status"] = "degraded"
        report["checks"]["cosmos"] = f"unreachable: {type(exc).__name__}"
    try:
        report["lanes"] = {q: vars(d) for q, d in ctx.bus.queue_depths(CHUNK_QUEUES).items()}
        report["checks"]["servicebus"] = "ok"
    except Exception as exc:
        report["checks"]["servicebus"] = f"depths unavailable: {type(exc).__name__}"
    return report
