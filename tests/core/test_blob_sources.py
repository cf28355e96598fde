"""Images from Blob Storage (Azurite): per-tenant folders, thumbnails written at content-addressed names, exact
duplicates grouped on the job."""

from __future__ import annotations

import io

from PIL import Image

from shared.config import ORIGINALS_CONTAINER, THUMBNAILS_CONTAINER
from shared.services.context import AppContext
from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import make_jpeg


def test_blob_images_get_thumbnails_and_duplicate_groups(
    app_host: Api, app_context: AppContext, make_tenant: object
) -> None:
    tenant: ApiTenant = make_tenant("new")  # type: ignore[operator]
    other: ApiTenant = make_tenant("new")  # type: ignore[operator]
    photo, different = make_jpeg(101, size=400), make_jpeg(202, size=400)
    for name, data in (("a.jpg", photo), ("copy-of-a.jpg", photo), ("b.jpg", different)):
        app_context.blobs.write(ORIGINALS_CONTAINER, f"{tenant.tenant_id}/{name}", data, "image/jpeg")
    # A blob in another tenant's folder is not reachable by name from this tenant.
    app_context.blobs.write(ORIGINALS_CONTAINER, f"{other.tenant_id}/secret.jpg", photo, "image/jpeg")

    body = {
        "blobs": ["a.jpg", "copy-of-a.jpg", "b.jpg", "missing.jpg", "secret.jpg"],
        "options": {"thumbnail_sizes": [64, 128]},
    }
    code, _, accepted = app_host.call("POST", "/jobs", tenant.key, body)
    assert code == 202, accepted
    job_id = accepted["job_id"]
    status = app_host.wait_for_state(tenant.key, job_id, timeout=90)
    assert status["state"] == "completed_with_errors", status
    assert status["counts"] == {"succeeded": 3, "failed": 2, "skipped": 0}
    assert status["errors"] == {"not_found": 2}
    assert app_host.duplicate_groups(tenant.key, job_id) == [[f"{job_id}.0", f"{job_id}.1"]]

    _, _, page = app_host.call("GET", f"/jobs/{job_id}/images?page_size=10", tenant.key)
    by_index = {item["index"]: item for item in page["items"]}
    first = by_index[0]
    assert first["ok"] and first["result"]["width"] == 400 and first["result"]["format"] == "jpeg"
    assert by_index[1]["duplicate_of"] == [f"{job_id}.0"]
    assert by_index[2]["duplicate_of"] == []
    assert {(t["size"], t["format"]) for t in first["thumbnails"]} == {
        (64, "jpeg"),
        (64, "webp"),
        (128, "jpeg"),
        (128, "webp"),
    }
    for thumb in first["thumbnails"]:
        assert thumb["blob"] == f"{tenant.tenant_id}/thumbs/{first['sha256']}/{thumb['size']}.{thumb['format']}"
        stored = app_context.blobs.read(THUMBNAILS_CONTAINER, thumb["blob"], 1 << 20)
        assert stored[:3] == b"\xff\xd8\xff" if thumb["format"] == "jpeg" else stored[8:12] == b"WEBP"
        assert max(thumb["width"], thumb["height"]) == thumb["size"]
    assert by_index[4]["error"]["code"] == "not_found"


def test_a_resubmitted_set_reports_whole_groups_naming_the_earlier_jobs_members(
    app_host: Api, app_context: AppContext, make_tenant: object
) -> None:
    tenant: ApiTenant = make_tenant("new")  # type: ignore[operator]
    photo = make_jpeg(303, size=400)
    smaller = io.BytesIO()
    Image.open(io.BytesIO(photo)).resize((200, 200)).save(smaller, "JPEG", quality=80)  # a near duplicate
    for name, data in (("a.jpg", photo), ("a-small.jpg", smaller.getvalue()), ("b.jpg", make_jpeg(404, size=400))):
        app_context.blobs.write(ORIGINALS_CONTAINER, f"{tenant.tenant_id}/{name}", data, "image/jpeg")
    body = {"blobs": ["a.jpg", "a-small.jpg", "b.jpg"], "options": {"thumbnail_sizes": [64]}}

    first = app_host.call("POST", "/jobs", tenant.key, body)[2]["job_id"]
    assert app_host.wait_for_state(tenant.key, first, timeout=90)["state"] == "succeeded"
    assert app_host.duplicate_groups(tenant.key, first) == [[f"{first}.0", f"{first}.1"]]

    second = app_host.call("POST", "/jobs", tenant.key, body)[2]["job_id"]
    assert app_host.wait_for_state(tenant.key, second, timeout=90)["state"] == "succeeded"
    # Each copy is an exact duplicate of its first-job image; the groups are still whole, both jobs named (b.jpg is
    # now a duplicate too: of its first-job copy).
    assert app_host.duplicate_groups(tenant.key, second) == sorted(
        [sorted([f"{first}.0", f"{first}.1", f"{second}.0", f"{second}.1"]), [f"{first}.2", f"{second}.2"]]
    )
