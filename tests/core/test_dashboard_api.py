"""The dashboard's HTTP side through the development host: its files as served, and the operator overview."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.core.conftest import OPERATOR_KEY, Api, ApiTenant
from tests.core.image_server import ImageServer

pytestmark = pytest.mark.stack


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_dashboard_files_are_served_with_types_validators_and_policy(app_host: Api) -> None:
    base = f"{app_host.base_url}/api/dashboard"
    status, headers, _ = _get(base)
    assert status == 308 and headers["Location"] == "dashboard/"
    status, headers, body = _get(f"{base}/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="app.js">' in body
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-cache"
    status, headers, body = _get(f"{base}/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"import" in body
    status, _, body = _get(f"{base}/app.js", {"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    status, headers, body = _get(f"{base}/../host.json")
    assert status == 404
    status, headers, body = _get(f"{base}/nothing.js")
    assert status == 404 and b'"not_found"' in body and headers["Content-Type"] == "application/json"


def test_the_operator_overview_needs_its_key(app_host: Api, tenant_free: ApiTenant) -> None:
    code, _, body = app_host.call("GET", "/operator/overview")
    assert code == 401 and body["error"]["code"] == "missing_operator_key"
    code, _, body = app_host.call("GET", "/operator/overview", "wrong")
    assert code == 401 and body["error"]["code"] == "invalid_operator_key"
    code, _, body = app_host.call("GET", "/operator/overview", tenant_free.key)
    assert code == 401, "a tenant key is not the operator key"


def test_the_operator_overview_shows_lanes_active_jobs_and_throughput(
    app_host: Api, make_tenant: Any, image_server: ImageServer
) -> None:
    tenant: ApiTenant = make_tenant("free")
    fast = {"urls": [image_server.url(f"/img/{i}.jpg") for i in range(20)] + [image_server.url("/missing/1.jpg")],
            "options": {"analyses": ["exif"]}}
    code, _, accepted = app_host.call("POST", "/jobs", tenant.key, fast)
    assert code == 202, accepted
    app_host.wait_for_state(tenant.key, accepted["job_id"], timeout=90)
    slow = {"urls": [image_server.url(f"/slow/200/{i}.jpg") for i in range(300)], "options": {"analyses": ["exif"]}}
    code, _, accepted = app_host.call("POST", "/jobs", tenant.key, slow)
    assert code == 202, accepted
    slow_job = accepted["job_id"]
    try:
        deadline = time.monotonic() + 30
        while True:
            code, _, overview = app_host.call("GET", "/operator/overview", OPERATOR_KEY)
            assert code == 200, overview
            active = {job["job_id"]: job for job in overview["active_jobs"]}
            if slow_job in active or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        job = active[slow_job]
        assert job["tenant_id"] == tenant.tenant_id and job["lane"] == "bulk" and job["total_images"] == 300
        assert job["state"] in ("accepted", "running")

        assert overview["lane_depths_available"] is True
        lanes = {lane["lane"]: lane for lane in overview["lanes"]}
        assert set(lanes) == {"high", "standard", "bulk"}
        assert set(lanes["bulk"]["queues"]) == {"chunks-bulk", "express-bulk"}
        # The slow job's 3 chunks: one being processed (locked, not counted active), the rest waiting.
        assert lanes["bulk"]["queues"]["chunks-bulk"]["active"] >= 1, lanes["bulk"]

        throughput = overview["throughput"]
        assert throughput["succeeded"] >= 20 and throughput["failed"] >= 1, throughput
        assert throughput["errors"].get("fetch_http_error", 0) >= 1, throughput
        assert 0 < throughput["failure_rate"] < 1
        assert len(throughput["series"]) == throughput["window_seconds"] // throughput["bucket_seconds"]
        assert sum(p["images_per_second"] for p in throughput["series"][-4:]) > 0, "the fast job finished just now"
        assert overview["status_timer_last_tick"] is not None
    finally:
        app_host.call("DELETE", f"/jobs/{slow_job}", tenant.key)
