"""Priority lanes and per-job fairness without a scheduler: sessions and one trigger per lane do it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from shared.models import ChunkDocument
from shared.services.context import AppContext
from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import ImageServer

LIGHT = {"analyses": ["exif"]}


def _submit(api: Api, key: str, urls: list[str]) -> str:
    code, _, accepted = api.call("POST", "/jobs", key, {"urls": urls, "options": LIGHT})
    assert code == 202, accepted
    return str(accepted["job_id"])


def _finished_at(status: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(status["finished_at"])


def _max_in_flight(chunks: list[ChunkDocument]) -> int:
    """The most chunks of one job that were being processed at the same moment."""
    events = []
    for chunk in chunks:
        assert chunk.finished_at is not None
        events += [(chunk.started_at, 1), (chunk.finished_at, -1)]
    in_flight = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end sorts before a start at the same instant
        in_flight += delta
        peak = max(peak, in_flight)
    return peak


def test_a_high_lane_job_submitted_later_finishes_first(
    app_host: Api, tenant_free: ApiTenant, make_tenant: Any, image_server: ImageServer
) -> None:
    # The free tier's bulk lane holds a long job (one session: cap 1); a new user's job arrives after it.
    bulk_job = _submit(app_host, tenant_free.key, [image_server.url(f"/slow/40/{i}.jpg") for i in range(300)])
    time.sleep(2)
    newcomer = make_tenant("new")
    high_job = _submit(app_host, newcomer.key, [image_server.url(f"/slow/40/{i}.jpg") for i in range(40)])
    high = app_host.wait_for_state(newcomer.key, high_job, timeout=120)
    bulk_status = app_host.call("GET", f"/jobs/{bulk_job}", tenant_free.key)[2]
    assert high["state"] == "succeeded"
    assert bulk_status["state"] == "running", "the bulk job should still be running when the high-lane job is done"
    bulk = app_host.wait_for_state(tenant_free.key, bulk_job, timeout=180)
    assert _finished_at(high) < _finished_at(bulk)


def test_two_jobs_in_one_lane_progress_together_within_their_caps(
    app_host: Api, app_context: AppContext, make_tenant: Any, image_server: ImageServer
) -> None:
    # Two free-tier jobs share the bulk lane's two sessions; each may hold one (TIER_JOB_CONCURRENCY free=1).
    first, second = make_tenant("free"), make_tenant("free")
    job_a = _submit(app_host, first.key, [image_server.url(f"/slow/20/{i}.jpg") for i in range(400)])
    job_b = _submit(app_host, second.key, [image_server.url(f"/slow/20/{i}.jpg") for i in range(400)])
    both_moving = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        a = app_host.call("GET", f"/jobs/{job_a}", first.key)[2]
        b = app_host.call("GET", f"/jobs/{job_b}", second.key)[2]
        if a["counts"]["succeeded"] > 0 and b["counts"]["succeeded"] > 0 and a["state"] == b["state"] == "running":
            both_moving = True
        if a["state"] not in ("accepted", "running") and b["state"] not in ("accepted", "running"):
            break
        time.sleep(0.5)
    assert both_moving, "the second job waited for the first instead of sharing the lane"
    for job_id, key in ((job_a, first.key), (job_b, second.key)):
        status = app_host.wait_for_state(key, job_id, timeout=120)
        assert status["state"] == "succeeded"
        chunks = app_context.store.finished_chunks_since(job_id, 0.0)
        assert len(chunks) == 4
        assert _max_in_flight(chunks) == 1, "a free-tier job held more sessions than its cap"


def test_an_enterprise_job_uses_its_concurrency(
    app_host: Api, app_context: AppContext, make_tenant: Any, image_server: ImageServer
) -> None:
    # The counterpart of the cap: with cap 2 and two sessions on the lane, a job does run two chunks at once
    # (so the cap check above is not passing merely because the host never runs two).
    tenant = make_tenant("enterprise")
    job_id = _submit(app_host, tenant.key, [image_server.url(f"/slow/20/{i}.jpg") for i in range(400)])
    status = app_host.wait_for_state(tenant.key, job_id, timeout=120)
    assert status["state"] == "succeeded"
    assert _max_in_flight(app_context.store.finished_chunks_since(job_id, 0.0)) == 2
