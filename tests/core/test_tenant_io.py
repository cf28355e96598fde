"""Tenants who hold no storage keys: uploads through signed URLs, one image in one call, manifests through the API,
downloads through signed URLs, listing and export. Plain HTTP clients against the app on the local stack."""

from __future__ import annotations

import http.client
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from PIL import Image

from shared.config import ORIGINALS_CONTAINER, THUMBNAILS_CONTAINER
from shared.services.context import AppContext
from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import ImageServer, make_jpeg

pytestmark = [pytest.mark.stack]


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed, errors returned rather than raised."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request(method, f"{parts.path}?{parts.query}" if parts.query else parts.path, body, headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _api(
    api: Api, method: str, path: str, key: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, dict[str, str], Any]:
    """An API call with a raw body; a JSON answer is parsed, anything else returned as bytes."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    status, answer_headers, data = _http(method, f"{api.base_url}/api{path}", body, headers)
    is_json = answer_headers.get("content-type", "").startswith("application/json")
    return status, answer_headers, json.loads(data) if data and is_json else data


def _put_blob(url: str, data: bytes) -> int:
    status, _, _ = _http("PUT", url, data, {"x-ms-blob-type": "BlockBlob", "Content-Type": "image/jpeg"})
    return status


def _decoded_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def test_a_folder_uploaded_through_signed_urls_is_processed_and_its_thumbnails_download(
    app_host: Api, make_tenant: Any
) -> None:
    tenant: ApiTenant = make_tenant("new")
    files = {f"holiday/{n:02d} at the beach.jpg": make_jpeg(1000 + n, size=200) for n in range(50)}  # spaces, too
    body = {"files": [{"name": name, "size": len(data)} for name, data in files.items()]}
    code, _, upload = app_host.call("POST", "/uploads", tenant.key, body)
    assert code == 201, upload
    assert len(upload["files"]) == 50 and upload["max_bytes"] > 0
    assert datetime.fromisoformat(upload["expires_at"]) > datetime.now(UTC)

    # Submitting before every file is there names what is missing.
    first = upload["files"][0]
    assert _put_blob(first["url"], files[first["name"]]) == 201
    code, _, refused = app_host.call("POST", "/jobs", tenant.key, {"upload": upload["upload_id"]})
    assert code == 409 and refused["error"]["code"] == "upload_incomplete", refused
    assert refused["error"]["details"]["count"] == 49

    for target in upload["files"][1:]:
        assert _put_blob(target["url"], files[target["name"]]) == 201
    code, headers, accepted = app_host.call("POST", "/jobs", tenant.key, {"upload": upload["upload_id"]})
    assert code == 202, accepted
    assert headers["Location"] == f"/api/jobs/{accepted['job_id']}"
    status = app_host.wait_for_state(tenant.key, accepted["job_id"], timeout=120)
    assert status["state"] == "succeeded" and status["counts"]["succeeded"] == 50, status

    items = app_host.all_images(tenant.key, accepted["job_id"])
    assert sorted(i["index"] for i in items) == list(range(50))
    names = list(files)
    for item in items:
        assert item["ref"] == f"uploads/{upload['upload_id']}/{names[item['index']]}"
        assert item["original_url"], item
        code, _, original = _http("GET", item["original_url"])
        assert code == 200 and original == files[names[item["index"]]]
        assert item["thumbnails"]
        for thumb in item["thumbnails"]:
            code, _, data = _http("GET", thumb["url"])
            assert code == 200, data[:200]
            assert _decoded_size(data) == (thumb["width"], thumb["height"])
            # The same thumbnail through the API's redirect.
            path = f"/jobs/{accepted['job_id']}/images/{item['index']}/thumbnails/{thumb['size']}.{thumb['format']}"
            code, headers, _ = _api(app_host, "GET", path, tenant.key)
            assert code == 302, path
            code, _, redirected = _http("GET", headers["location"])
            assert code == 200 and redirected == data


def test_another_tenant_is_refused_everything_of_the_first(
    app_host: Api, app_context: AppContext, make_tenant: Any
) -> None:
    owner: ApiTenant = make_tenant("new")
    intruder: ApiTenant = make_tenant("new")
    photo = make_jpeg(77, size=300)
    code, _, upload = app_host.call("POST", "/uploads", owner.key, {"files": [{"name": "me.jpg"}]})
    assert code == 201, upload
    write_url = upload["files"][0]["url"]
    assert _put_blob(write_url, photo) == 201

    # The write URL cannot read, nor write any other blob (its signature covers exactly one blob name).
    assert _http("GET", write_url)[0] == 403
    elsewhere = write_url.replace("/me.jpg?", "/other.jpg?")
    assert _put_blob(elsewhere, photo) == 403
    into_intruder = write_url.replace(f"/{owner.tenant_id}/", f"/{intruder.tenant_id}/")
    assert _put_blob(into_intruder, photo) == 403

    # The intruder cannot submit the owner's upload, nor see anything of the owner's job.
    code, _, refused = app_host.call("POST", "/jobs", intruder.key, {"upload": upload["upload_id"]})
    assert code == 400 and refused["error"]["code"] == "upload_not_found", refused
    code, _, accepted = app_host.call("POST", "/jobs", owner.key, {"upload": upload["upload_id"]})
    assert code == 202, accepted
    job_id = accepted["job_id"]
    assert app_host.wait_for_state(owner.key, job_id, timeout=60)["state"] == "succeeded"
    item = app_host.all_images(owner.key, job_id)[0]
    thumb = item["thumbnails"][0]
    for path in (
        f"/jobs/{job_id}",
        f"/jobs/{job_id}/images",
        f"/jobs/{job_id}/duplicates",
        f"/jobs/{job_id}/results.jsonl",
        f"/jobs/{job_id}/images/0/original",
        f"/jobs/{job_id}/images/0/thumbnails/{thumb['size']}.{thumb['format']}",
    ):
        code, _, body = _api(app_host, "GET", path, intruder.key)
        assert code == 404 and body["error"]["code"] == "job_not_found", (path, body)
    code, _, listed = app_host.call("GET", "/jobs", intruder.key)
    assert code == 200 and job_id not in {j["job_id"] for j in listed["items"]}

    # A read URL is for its one blob: pointed at another, its signature no longer matches.
    assert _http("GET", thumb["url"].replace("/thumbs/", "/thumbz/"))[0] == 403
    # An expired URL gets the storage service's own refusal.
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired = app_context.blobs.read_url(THUMBNAILS_CONTAINER, thumb["blob"], past)
    code, _, refusal = _http("GET", expired)
    assert code == 403 and (b"<Code>Authori" in refusal or b"<Code>Authenti" in refusal), refusal[:300]
    expired_original = app_context.blobs.read_url(ORIGINALS_CONTAINER, f"{owner.tenant_id}/{item['ref']}", past)
    assert _http("GET", expired_original)[0] == 403


def test_one_image_in_one_call(app_host: Api, make_tenant: Any) -> None:
    tenant: ApiTenant = make_tenant("new")
    photo = make_jpeg(5, size=640)
    code, headers, accepted = _api(app_host, "POST", "/images", tenant.key, photo, "image/jpeg")
    assert code == 202, accepted
    assert headers["location"] == f"/api/jobs/{accepted['job_id']}" and accepted["total_images"] == 1
    status = app_host.wait_for_state(tenant.key, accepted["job_id"], timeout=60)
    assert status["state"] == "succeeded", status
    item = app_host.all_images(tenant.key, accepted["job_id"])[0]
    assert item["result"]["width"] == 640 and item["kind"] == "blob"
    assert _http("GET", item["original_url"])[2] == photo

    code, _, empty = _api(app_host, "POST", "/images", tenant.key, b"", "image/jpeg")
    assert code == 400 and empty["error"]["code"] == "empty_image"


def test_an_image_over_the_cap_is_refused_before_its_body_is_read(
    app_host: Api, app_settings: dict[str, str], make_tenant: Any
) -> None:
    tenant: ApiTenant = make_tenant("new")
    host_limit = int(app_settings["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"])
    image_limit = int(app_settings["IMAGE_MAX_BYTES"])
    # Over the host's body cap: only the headers and a few bytes are sent; the answer comes without the rest.
    parts = urlsplit(app_host.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.putrequest("POST", "/api/images")
    connection.putheader("Authorization", f"Bearer {tenant.key}")
    connection.putheader("Content-Length", str(host_limit + 1))
    connection.endheaders(b"\xff\xd8\xff" + b"\0" * 1000)
    started = time.monotonic()
    assert connection.getresponse().status == 413
    assert time.monotonic() - started < 5
    connection.close()
    # Over the image cap but under the host's: the app refuses it by its declared length, with its own error.
    assert image_limit < host_limit
    code, _, refused = _api(app_host, "POST", "/images", tenant.key, b"\0" * (image_limit + 1), "image/jpeg")
    assert code == 413 and refused["error"]["code"] == "image_too_large", refused
    assert refused["error"]["details"]["limit"] == image_limit


def test_a_manifest_sent_through_the_api(app_host: Api, image_server: ImageServer, make_tenant: Any) -> None:
    tenant: ApiTenant = make_tenant("new")
    lines = [image_server.url(f"/img/{n}.jpg") for n in range(3)]
    text = ("\n".join(lines) + "\n\n").encode()
    code, _, stored = _api(app_host, "POST", "/manifests?name=week1.txt", tenant.key, text, "text/plain")
    assert code == 201, stored
    assert stored == {"manifest": "week1.txt", "lines": 3, "bytes": len(text)}
    code, _, accepted = app_host.call("POST", "/jobs", tenant.key, {"manifest": "week1.txt"})
    assert code == 202, accepted
    status = app_host.wait_for_state(tenant.key, accepted["job_id"], timeout=60)
    assert status["state"] == "succeeded" and status["total_images"] == 3, status

    bad = b"https://ok.example/a.jpg\nftp://nope/b.jpg\n../escape.jpg\n"
    code, _, refused = _api(app_host, "POST", "/manifests", tenant.key, bad, "text/plain")
    assert code == 400 and refused["error"]["code"] == "invalid_manifest", refused
    assert [p["line"] for p in refused["error"]["details"]["problems"]] == [3]  # ftp:// is a blob name; '..' is not
    code, _, refused = _api(app_host, "POST", "/manifests", tenant.key, b"\n \n", "text/plain")
    assert code == 400 and refused["error"]["code"] == "empty_manifest"
    code, _, refused = _api(app_host, "POST", "/manifests?name=../x.txt", tenant.key, text, "text/plain")
    assert code == 400 and refused["error"]["code"] == "invalid_manifest_name"


@pytest.mark.slow
def test_listing_and_exporting_a_3000_image_job(app_host: Api, image_server: ImageServer, make_tenant: Any) -> None:
    tenant: ApiTenant = make_tenant("enterprise")
    small: ApiTenant = make_tenant("enterprise")
    body = {
        "urls": [image_server.url(f"/img/{n}.jpg") for n in range(3000)],
        "options": {"analyses": ["hashes"]},
    }
    code, _, big = app_host.call("POST", "/jobs", tenant.key, body)
    assert code == 202, big
    others = []
    for n in range(3):
        code, _, accepted = app_host.call("POST", "/jobs", tenant.key, {"urls": [image_server.url(f"/img/{n}.jpg")]})
        assert code == 202
        others.append(accepted["job_id"])
    status = app_host.wait_for_state(tenant.key, big["job_id"], timeout=300)
    assert status["state"] == "succeeded", status
    for job_id in others:
        app_host.wait_for_state(tenant.key, job_id, timeout=60)

    # Newest first, paged, filtered by state and time; another tenant sees none of them.
    code, _, page = app_host.call("GET", "/jobs?page_size=2", tenant.key)
    assert code == 200, page
    seen = [j["job_id"] for j in page["items"]]
    while page["continuation"]:
        token = quote(page["continuation"], safe="")
        code, _, page = app_host.call("GET", f"/jobs?page_size=2&continuation={token}", tenant.key)
        assert code == 200, page
        seen += [j["job_id"] for j in page["items"]]
    assert seen == [*reversed(others), big["job_id"]]
    code, _, running = app_host.call("GET", "/jobs?state=running,accepted", tenant.key)
    assert code == 200 and running["items"] == []
    after = quote(status["created_at"], safe="")
    code, _, later = app_host.call("GET", f"/jobs?created_after={after}&state=succeeded", tenant.key)
    assert code == 200 and {j["job_id"] for j in later["items"]} == {*others, big["job_id"]}
    code, _, bad = app_host.call("GET", "/jobs?state=done", tenant.key)
    assert code == 400 and bad["error"]["code"] == "invalid_state"
    assert app_host.call("GET", "/jobs", small.key)[2]["items"] == []

    # Paging: every result exactly once.
    items = app_host.all_images(tenant.key, big["job_id"], page_size=700)
    assert sorted(i["index"] for i in items) == list(range(3000))

    # Export: asked for, built in the background, then a redirect to the JSON lines.
    deadline = time.monotonic() + 120
    while True:
        code, headers, answer = _api(app_host, "GET", f"/jobs/{big['job_id']}/results.jsonl", tenant.key)
        if code == 302:
            break
        assert code == 202 and answer["state"] == "exporting" and int(headers["retry-after"]) >= 1, answer
        assert time.monotonic() < deadline, "the export was not ready in 120 s"
        time.sleep(1)
    code, headers, data = _http("GET", headers["location"])
    assert code == 200, data[:300]
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert [line["index"] for line in lines] == list(range(3000))
    assert all(line["ok"] and line["job_id"] == big["job_id"] for line in lines)
