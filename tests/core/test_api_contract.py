"""The jobs API's contract over real HTTP: authentication, tenancy, validation and its JSON errors."""

from __future__ import annotations

from typing import Any

from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import ImageServer


def _error(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_missing_or_wrong_key_is_401(app_host: Api, tenant_new: ApiTenant) -> None:
    code, _, body = app_host.call("POST", "/jobs", None, {"urls": ["http://127.0.0.1/a.jpg"]})
    assert code == 401 and _error(body)["code"] == "unauthorized"
    forged = tenant_new.key[:-4] + "AAAA"
    code, _, body = app_host.call("GET", "/jobs/j123", forged)
    assert code == 401 and _error(body)["code"] == "unauthorized"
    code, _, body = app_host.call("GET", "/jobs/j123", "ipk_nosuchtenant.secret")
    assert code == 401


def test_another_tenants_job_is_404(
    app_host: Api, tenant_new: ApiTenant, tenant_enterprise: ApiTenant, image_server: ImageServer
) -> None:
    code, headers, accepted = app_host.call("POST", "/jobs", tenant_new.key, {"urls": [image_server.url("/img/1.jpg")]})
    assert code == 202, accepted
    assert headers["Location"] == f"/api/jobs/{accepted['job_id']}"
    code, _, body = app_host.call("GET", f"/jobs/{accepted['job_id']}", tenant_enterprise.key)
    assert code == 404 and _error(body)["code"] == "job_not_found"
    code, _, body = app_host.call("DELETE", f"/jobs/{accepted['job_id']}", tenant_enterprise.key)
    assert code == 404
    code, _, _ = app_host.call("GET", f"/jobs/{accepted['job_id']}", tenant_new.key)
    assert code == 200


def test_malformed_bodies_are_400_naming_the_field(app_host: Api, tenant_new: ApiTenant) -> None:
    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, raw=b"{not json")
    assert code == 400 and _error(body)["code"] == "invalid_json"

    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, {"options": {}})
    assert code == 400 and "exactly one" in str(_error(body)["details"])

    code, _, body = app_host.call(
        "POST", "/jobs", tenant_new.key, {"urls": ["http://127.0.0.1/a.jpg"], "options": {"thumbnail_sizes": [5]}}
    )
    assert code == 400
    assert any(d["field"].startswith("options.thumbnail_sizes") for d in _error(body)["details"]), body

    # A bad item is named by its path in the body; so is an empty list.
    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, {"urls": ["http://x/a.jpg", "ftp://x/a.jpg"]})
    assert code == 400 and [d["field"] for d in _error(body)["details"]] == ["urls.1"], body
    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, {"blobs": []})
    assert code == 400 and [d["field"] for d in _error(body)["details"]] == ["blobs"], body

    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, {"urls": ["http://127.0.0.1/a"], "colour": 1})
    assert code == 400 and any(d["field"] == "colour" for d in _error(body)["details"])

    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, {"manifest": "nope.txt"})
    assert code == 400 and _error(body)["code"] == "manifest_not_found"


def test_too_many_inline_images_is_413_pointing_to_manifests(app_host: Api, tenant_new: ApiTenant) -> None:
    urls = [f"http://127.0.0.1/{i}.jpg" for i in range(10_001)]
    code, _, body = app_host.call("POST", "/jobs", tenant_new.key, {"urls": urls})
    error = _error(body)
    assert code == 413 and error["code"] == "too_many_images"
    assert "manifest" in error["message"] and error["details"]["limit"] == 10_000


def test_health_and_openapi(app_host: Api) -> None:
    code, _, body = app_host.call("GET", "/health")
    assert code == 200 and body["checks"]["cosmos"] == "ok"
    code, _, spec = app_host.call("GET", "/openapi.json")
    assert code == 200 and spec["openapi"].startswith("3.")
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/images", "/jobs/{job_id}/replay"} <= set(spec["paths"])
    assert "JobRequest" in spec["components"]["schemas"]
    assert "manifest" in spec["components"]["schemas"]["JobRequest"]["properties"]


def test_a_continuation_token_is_checked_before_it_is_used(
    app_host: Api, tenant_new: ApiTenant, image_server: ImageServer
) -> None:
    jobs = []
    for _ in range(2):
        body = {"urls": [image_server.url(f"/img/{n}.jpg") for n in range(3)], "options": {"analyses": ["hashes"]}}
        code, _, accepted = app_host.call("POST", "/jobs", tenant_new.key, body)
        assert code == 202, accepted
        jobs.append(accepted["job_id"])
    for job_id in jobs:
        assert app_host.wait_for_state(tenant_new.key, job_id, timeout=60)["state"] == "succeeded"
    code, _, page = app_host.call("GET", f"/jobs/{jobs[0]}/images?page_size=1", tenant_new.key)
    assert code == 200 and page["continuation"], page
    token = page["continuation"]
    code, _, page2 = app_host.call("GET", f"/jobs/{jobs[0]}/images?page_size=1&continuation={token}", tenant_new.key)
    assert code == 200 and [i["index"] for i in page2["items"]] == [1], page2
    for bad in ("garbage", "eyJ4IjoxfQ", token[:-4], token + "AAAA"):
        code, _, body = app_host.call("GET", f"/jobs/{jobs[0]}/images?continuation={bad}", tenant_new.key)
        assert code == 400 and _error(body)["code"] == "invalid_continuation", (bad, body)
    # Another job's token continues nothing here.
    code, _, body = app_host.call("GET", f"/jobs/{jobs[1]}/images?continuation={token}", tenant_new.key)
    assert code == 400 and _error(body)["code"] == "invalid_continuation", body
