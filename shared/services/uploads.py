"""Tenant uploads: signed write URLs for originals, and manifests sent through the API.

Tenants hold no storage keys (in Azure the account accepts only the app's identity), so a tenant writes a file
through a URL that can create exactly one blob under its own folder, until it expires, and nothing else.
"""

from __future__ import annotations

import json
from datetime import timedelta

from pydantic import ValidationError

from shared.config import MANIFESTS_CONTAINER, ORIGINALS_CONTAINER
from shared.errors import InvalidRequest, TooLarge, validation_error
from shared.messages import manifest_blob_name, upload_blob_name, upload_file_ref, upload_id, upload_record_name
from shared.models import (
    ManifestStored,
    TenantDocument,
    UploadCreated,
    UploadRequest,
    UploadTarget,
    classify_manifest_line,
    ref_problem,
    utcnow,
)
from shared.services.context import AppContext

MANIFEST_NAME_MAX = 200
# Problems listed in a refusal (the count says how many there are in all).
PROBLEMS_SHOWN = 20


def create_upload(ctx: AppContext, tenant: TenantDocument, body: bytes) -> UploadCreated:
    """An upload id and a write-only URL per file. The file list is stored as the upload's record, so a job of the
    upload knows which files to expect (and can say which are missing)."""
    request = _parse_upload_request(body, ctx.settings.max_inline_images, ctx.settings.image_max_bytes)
    upload = upload_id()
    expires_at = utcnow() + timedelta(seconds=ctx.settings.upload_url_ttl_seconds)
    files = [
        UploadTarget(
            name=f.name,
            blob=upload_file_ref(upload, f.name),
            url=ctx.blobs.upload_url(
                ORIGINALS_CONTAINER, upload_blob_name(tenant.tenant_id, upload, f.name), expires_at
            ),
        )
        for f in request.files
    ]
    record = "".join(f"{target.blob}\n" for target in files).encode()
    ctx.blobs.write(MANIFESTS_CONTAINER, upload_record_name(tenant.tenant_id, upload), record, "text/plain")
    return UploadCreated(upload_id=upload, expires_at=expires_at, max_bytes=ctx.settings.image_max_bytes, files=files)


def _parse_upload_request(body: bytes, max_files: int, max_bytes: int) -> UploadRequest:
    try:
        raw = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("invalid_json", f"the body is not valid JSON: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("files"), list) and len(raw["files"]) > max_files:
        raise TooLarge(
            "too_many_files",
            f"{len(raw['files'])} files is over the {max_files} an upload may hold; split them into several uploads",
            {"field": "files", "count": len(raw["files"]), "limit": max_files},
        )
    try:
        request = UploadRequest.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None
    problems: list[dict[str, object]] = []
    seen: set[str] = set()
    for i, f in enumerate(request.files):
        problem = ref_problem(f.name, "blob")
        if problem is None and f.name in seen:
            problem = "appears twice in this upload"
        if problem is None and f.size is not None and f.size > max_bytes:
            problem = f"{f.size} bytes is over the {max_bytes}-byte limit"
        if problem:
            problems.append({"field": f"files.{i}.name", "name": f.name, "problem": problem})
        seen.add(f.name)
    if problems:
        raise InvalidRequest(
            "invalid_files",
            f"{len(problems)} of the files cannot be uploaded",
            {"problems": problems[:PROBLEMS_SHOWN], "count": len(problems)},
        )
    return request


def store_manifest(ctx: AppContext, tenant: TenantDocument, body: bytes, name: str | None) -> ManifestStored:
    """Checks a manifest (one URL or blob name a line) and stores it in the tenant's manifests folder."""
    settings = ctx.settings
    if len(body) > settings.max_manifest_bytes:
        raise manifest_too_large(len(body), settings.max_manifest_bytes)
    name = name or f"m-{utcnow():%Y%m%d-%H%M%S}-{upload_id()[1:9]}.txt"
    if len(name) > MANIFEST_NAME_MAX or (problem := ref_problem(name, "blob")):
        raise InvalidRequest(
            "invalid_manifest_name", f"name: {problem or f'at most {MANIFEST_NAME_MAX} characters'}",
            {"field": "name"},
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("invalid_manifest", f"the manifest is not UTF-8 text: {exc}") from None
    lines, problems = 0, []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        lines += 1
        problem = ref_problem(line, classify_manifest_line(line))
        if problem:
            problems.append({"line": number, "problem": problem})
    if problems:
        raise InvalidRequest(
            "invalid_manifest",
            f"{len(problems)} lines of the manifest are not image references",
            {"problems": problems[:PROBLEMS_SHOWN], "count": len(problems)},
        )
    if lines == 0:
        raise InvalidRequest("empty_manifest", "the manifest holds no image references (one URL or blob name a line)")
    if lines > settings.max_manifest_images:
        raise TooLarge(
            "too_many_images",
            f"{lines} images is over the {settings.max_manifest_images} a manifest may hold",
            {"count": lines, "limit": settings.max_manifest_images},
        )
    ctx.blobs.write(MANIFESTS_CONTAINER, manifest_blob_name(tenant.tenant_id, name), body, "text/plain; charset=utf-8")
    return ManifestStored(manifest=name, lines=lines, bytes=len(body))


def manifest_too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(
        "manifest_too_large", f"{size} bytes is over the {limit}-byte limit of a manifest sent to the API",
        {"limit": limit},
    )
