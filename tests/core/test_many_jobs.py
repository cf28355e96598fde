"""Many small jobs at once on the real local stack: the express path and the change-driven status timer."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.config import Lane
from shared.services.context import AppContext
from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import ImageServer

JOBS = 500


def test_500_single_image_jobs_at_once_all_finish_with_exactly_one_result_each(
    app_host: Api, app_context: AppContext, make_tenant: Any, image_server: ImageServer
) -> None:
    tenant: ApiTenant = make_tenant("new")
    options = {"analyses": ["exif", "hashes"]}

    def submit(i: int) -> str:
        code, _, accepted = app_host.call("POST", "/jobs", tenant.key, {"urls": [image_server.url(f"/img/{i}.jpg")],
                                                                        "options": options})  # fmt: skip
        assert code == 202, accepted
        assert accepted["total_chunks"] == 1
        return str(accepted["job_id"])

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        job_ids = list(pool.map(submit, range(JOBS)))
    assert len(set(job_ids)) == JOBS

    # One-chunk jobs go to the lane's express queue, not to a session of their own.
    depths = app_context.bus.queue_depths([Lane.HIGH.queue_name])
    assert depths[Lane.HIGH.queue_name].active == 0, "single-image jobs must not queue on the session lane"

    def terminal(job_id: str) -> dict[str, Any]:
        return app_host.wait_for_state(tenant.key, job_id, timeout=420)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(terminal, job_ids))
    elapsed = time.monotonic() - started
    assert [s["state"] for s in statuses] == ["succeeded"] * JOBS
    assert all(s["counts"] == {"succeeded": 1, "failed": 0, "skipped": 0} for s in statuses)

    def results(job_id: str) -> list[dict[str, Any]]:
        code, _, page = app_host.call("GET", f"/jobs/{job_id}/images?page_size=10", tenant.key)
        assert code == 200, page
        return list(page["items"])

    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(results, job_ids))
    assert [len(p) for p in pages] == [1] * JOBS, "every job has exactly one image result"
    assert all(p[0]["id"] == f"{job_id}.0" and p[0]["ok"] for p, job_id in zip(pages, job_ids, strict=True))
    print(f"{JOBS} single-image jobs: all terminal {elapsed:.1f} s after the first submit")
