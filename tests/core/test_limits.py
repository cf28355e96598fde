"""Rate limits, quotas and polite fetching, end to end on a stack and host of their own with tight limits:

* a free tenant's burst of submits is cut off at its bucket (429 `rate_limited`, Retry-After, RateLimit-*) while an
  enterprise tenant's submits, interleaved with them, all pass;
* a tenant with a quota of 2 active jobs is refused the third (429 `quota_exceeded` naming the quota), and may
  submit again once they finish; a job over the day's images is refused naming that quota and when it resets;
* an origin answering 429 + Retry-After: 1 twice then 200 gives an ok image with 3 attempts; a 404 is fetched once;
* an origin that allows 2 requests at once sees no more than that from a 200-image job (and a companion job in
  another lane: four sessions at once in 2 worker processes, FETCH_HOST_CONCURRENCY=1 per process), and no more
  than the shared per-host rate.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack, StackPorts, provision_app_stores, start_functions_host, stop_pid
from shared.config import Settings
from shared.services.context import AppContext
from shared.services.tenants import create_tenant
from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import ImageServer, running_image_server

FREE_RATE, FREE_BURST = 2, 10
HOST_RATE, HOST_BURST, HOST_LEASE = 25, 10, 5
LIMITED_SETTINGS = {
    "FETCH_ALLOW_LOOPBACK_FOR_TESTS": "true",
    "FETCH_CONNECT_TIMEOUT_SECONDS": "2",
    "FETCH_READ_TIMEOUT_SECONDS": "5",
    "STATUS_TIMER_SCHEDULE": "*/1 * * * * *",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "2",
    "CHUNK_SIZE": "25",
    "TIER_JOB_CONCURRENCY": "new=4,enterprise=4,free=1",
    "TIER_API_RATE": f"new=1000,enterprise=1000,free={FREE_RATE}",
    "TIER_API_BURST": f"new=1000,enterprise=1000,free={FREE_BURST}",
    "TIER_MAX_ACTIVE_JOBS": "new=2,enterprise=0,free=0",
    "TIER_MAX_IMAGES_PER_DAY": "new=1000,enterprise=0,free=0",
    "FETCH_HOST_CONCURRENCY": "1",
    "FETCH_HOST_RATE_PER_SECOND": str(HOST_RATE),
    "FETCH_HOST_BURST": str(HOST_BURST),
    "FETCH_HOST_RATE_LEASE": str(HOST_LEASE),
    "FETCH_MAX_ATTEMPTS": "4",
    "FETCH_RETRY_BASE_SECONDS": "0.2",
}
LIGHT = {"analyses": ["hashes"]}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, AppContext]]:
    work = Path(tmp_path_factory.mktemp("limits"))
    stack = LocalStack(data_dir=work / "stack", ports=StackPorts.free())
    stack.start()
    host = None
    try:
        env = {**stack.settings_env(), **LIMITED_SETTINGS}
        provision_app_stores(env)
        port = StackPorts.free().blob
        host = start_functions_host(env, port, work / "host.log", extra_args=("--shutdown-grace", "3"))
        yield Api(f"http://127.0.0.1:{port}"), AppContext.from_settings(Settings.from_env(env))
    finally:
        if host is not None:
            stop_pid(host.pid, grace=15, popen=host)
        stack.stop()


@pytest.fixture(scope="module")
def origin() -> Iterator[ImageServer]:
    with running_image_server() as server:
        yield server


def _tenant(ctx: AppContext, tier: str) -> ApiTenant:
    created = create_tenant(ctx.store, f"limits-{tier}", tier)
    return ApiTenant(created.tenant.tenant_id, created.api_key, created.tenant.callback_secret)


def _error(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.mark.stack
def test_a_burst_from_one_tenant_is_cut_off_while_another_tenant_passes(
    limited: tuple[Api, AppContext], origin: ImageServer
) -> None:
    api, ctx = limited
    bursty, other = _tenant(ctx, "free"), _tenant(ctx, "enterprise")
    body = {"urls": [origin.url(f"/missing/burst-{uuid.uuid4().hex}.jpg")], "options": LIGHT}
    bursty_answers, other_answers = [], []
    started = time.monotonic()
    for _ in range(100):
        bursty_answers.append(api.call("POST", "/jobs", bursty.key, body))
        other_answers.append(api.call("POST", "/jobs", other.key, body))
    elapsed = time.monotonic() - started

    assert [code for code, _, _ in other_answers] == [202] * 100, "the other tenant is unaffected"
    codes = [code for code, _, _ in bursty_answers]
    assert set(codes) == {202, 429}, codes
    assert codes[:FREE_BURST] == [202] * FREE_BURST, "the burst passes"
    passed = codes.count(202)
    assert passed <= FREE_BURST + FREE_RATE * elapsed + 1, (passed, elapsed)
    for code, headers, answer in bursty_answers:
        assert headers["RateLimit-Limit"] == str(FREE_BURST) and "RateLimit-Reset" in headers
        if code == 429:
            error = _error(answer)
            assert error["code"] == "rate_limited" and error["details"]["limit"] == "api_requests"
            assert int(headers["Retry-After"]) >= 1 and headers["RateLimit-Remaining"] == "0"
    time.sleep(1.0 / FREE_RATE + 0.1)
    code, headers, _ = api.call("GET", "/usage", bursty.key)
    assert code == 200, "the bucket refills"


@pytest.mark.stack
def test_a_third_active_job_is_refused_naming_the_quota(limited: tuple[Api, AppContext], origin: ImageServer) -> None:
    api, ctx = limited
    tenant = _tenant(ctx, "new")
    slow = {"urls": [origin.url("/slow/3000/1.jpg")], "options": LIGHT}
    first = api.call("POST", "/jobs", tenant.key, slow)
    second = api.call("POST", "/jobs", tenant.key, slow)
    assert first[0] == 202 and second[0] == 202, (first, second)
    code, headers, body = api.call("POST", "/jobs", tenant.key, slow)
    assert code == 429, body
    error = _error(body)
    assert error["code"] == "quota_exceeded"
    assert error["details"]["quota"] == "active_jobs" and error["details"]["limit"] == 2
    assert error["details"]["used"] == 2 and int(headers["Retry-After"]) >= 1
    code, _, usage = api.call("GET", "/usage", tenant.key)
    assert code == 200 and usage["quotas"]["active_jobs"] == {"limit": 2, "used": 2, "resets_at": None}
    assert usage["tier"] == "new" and usage["quotas"]["images_per_day"]["used"] == 2

    for job in (first, second):
        assert api.wait_for_state(tenant.key, job[2]["job_id"], timeout=90)["state"] == "succeeded"
    code, _, body = api.call("POST", "/jobs", tenant.key, {"urls": [origin.url("/img/3.jpg")], "options": LIGHT})
    assert code == 202, body  # finished jobs no longer count

    # 3 images used today; 998 more would make 1,001 of the 1,000 allowed.
    many = {"urls": [origin.url(f"/img/{i}.jpg") for i in range(998)], "options": LIGHT}
    code, headers, body = api.call("POST", "/jobs", tenant.key, many)
    error = _error(body)
    assert code == 429 and error["code"] == "quota_exceeded", body
    details = error["details"]
    assert details["quota"] == "images_per_day" and details["limit"] == 1000 and details["used"] == 3
    assert details["requested"] == 998 and details["resets_at"].endswith("T00:00:00+00:00")
    assert 1 <= int(headers["Retry-After"]) <= 86_400
    code, _, usage = api.call("GET", "/usage", tenant.key)
    assert usage["quotas"]["images_per_day"]["used"] == 3 and usage["quotas"]["images_per_day"]["limit"] == 1000


@pytest.mark.stack
def test_retry_after_is_honoured_and_permanent_errors_are_fetched_once(
    limited: tuple[Api, AppContext], origin: ImageServer
) -> None:
    api, ctx = limited
    tenant = _tenant(ctx, "enterprise")
    key = uuid.uuid4().hex
    paths = [f"/flaky/{key}/2/1.jpg", f"/missing/{key}.jpg", f"/reset/{key}/1/2.jpg", f"/unavailable/{key}/1/3.jpg"]
    code, _, accepted = api.call(
        "POST", "/jobs", tenant.key, {"urls": [origin.url(p) for p in paths], "options": LIGHT}
    )
    assert code == 202, accepted
    status = api.wait_for_state(tenant.key, accepted["job_id"], timeout=90)
    assert status["counts"]["succeeded"] == 3 and status["counts"]["failed"] == 1, status
    items = api.all_images(tenant.key, accepted["job_id"])
    assert [(i["ok"], i["attempts"]) for i in items] == [(True, 3), (False, 1), (True, 2), (True, 2)]
    assert items[1]["error"]["code"] == "fetch_http_error"
    assert [origin.hits[p] for p in paths] == [3, 1, 2, 2]
    flaky = [t for t, p in origin.arrivals if p == paths[0]]
    assert flaky[1] - flaky[0] >= 1.0 and flaky[2] - flaky[1] >= 1.0, "Retry-After: 1 was waited out"


@pytest.mark.stack
def test_an_origin_sees_no_more_than_the_per_host_concurrency_and_rate(
    limited: tuple[Api, AppContext], origin: ImageServer
) -> None:
    """The 200-image job's chunks run two at a time (two sessions of its lane); a companion job in another lane
    runs two more, so without the per-process cap four requests would be in flight at once (and are: see
    tests/unit/test_polite_fetch.py for the same load without the gate)."""
    api, ctx = limited
    tenant, companion = _tenant(ctx, "enterprise"), _tenant(ctx, "new")
    origin.max_in_flight = origin.over_cap = 0
    urls = [origin.url(f"/capped/2/100/{n}.jpg") for n in range(200)]
    code, _, accepted = api.call("POST", "/jobs", tenant.key, {"urls": urls, "options": LIGHT})
    assert code == 202 and accepted["total_chunks"] == 8, accepted
    code, _, other = api.call("POST", "/jobs", companion.key, {"urls": urls[:100], "options": LIGHT})
    assert code == 202 and other["lane"] != accepted["lane"], other
    status = api.wait_for_state(tenant.key, accepted["job_id"], timeout=180)
    assert status["counts"]["succeeded"] == 200, status
    assert api.wait_for_state(companion.key, other["job_id"], timeout=180)["counts"]["succeeded"] == 100
    assert origin.over_cap == 0 and 1 <= origin.max_in_flight <= 2, (origin.max_in_flight, origin.over_cap)
    assert all(i["attempts"] == 1 for i in api.all_images(tenant.key, accepted["job_id"]))


@pytest.mark.stack
def test_every_worker_together_keeps_to_the_per_host_rate(limited: tuple[Api, AppContext], origin: ImageServer) -> None:
    """Fast images from one host in two lanes at once (four sessions, two processes): the shared bucket holds the
    host to its rate, whoever fetches."""
    api, ctx = limited
    tenant, companion = _tenant(ctx, "enterprise"), _tenant(ctx, "new")
    run = uuid.uuid4().hex
    urls = [origin.url(f"/img/{n}.jpg?run={run}") for n in range(300)]
    jobs = [
        (tenant, api.call("POST", "/jobs", tenant.key, {"urls": urls[:200], "options": LIGHT})),
        (companion, api.call("POST", "/jobs", companion.key, {"urls": urls[200:], "options": LIGHT})),
    ]
    for owner, (code, _, accepted) in jobs:
        assert code == 202, accepted
        assert api.wait_for_state(owner.key, accepted["job_id"], timeout=180)["state"] == "succeeded"
    times = sorted(t for t, p in origin.arrivals if p.endswith(f"?run={run}"))
    assert len(times) == 300
    busiest = max(sum(1 for u in times[i:] if u - t < 1.0) for i, t in enumerate(times))
    print(f"per-host rate: busiest second {busiest} requests, 300 in {times[-1] - times[0]:.1f} s")
    # At most the rate plus the burst plus one lease per worker process in any second, and so never faster overall.
    assert busiest <= HOST_RATE + HOST_BURST + 2 * HOST_LEASE, busiest
    assert times[-1] - times[0] >= (300 - HOST_BURST - 2 * HOST_LEASE) / HOST_RATE
