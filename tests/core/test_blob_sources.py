"""Images from Blob Storage (Azurite): per-tenant folders, thumbnails written at content-addressed names, exact
duplicates grouped on the job."""

from __future__ import annotations

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

    _, _, page = app_host.call("GET", f"/jobs/{job_id}/images?pageSize=10", tenant.key)
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
        assert thumb["blob"] == f"thumbs/{first['sha256']}/{thumb['size']}.{thumb['format']}"
        stored = app_context.blobs.read(THUMBNAILS_CONTAINER, thumb["blob"], 1 << 20)
        assert stored[:3] == b"\xff\xd8\xff" if thumb["format"] == "jpeg" else stored[8:12] == b"WEBP"
        assert max(thumb["width"], thumb["height"]) == thumb["size"]
    assert by_index[4]["error"]["code"] == "not_found"

