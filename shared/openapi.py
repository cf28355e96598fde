"""The OpenAPI 3.1 document of the jobs API, generated from the pydantic models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.limits.openapi import add_limits
from shared.models import (
    JOB_SOURCES,
    DuplicateGroupPage,
    ErrorResponse,
    ExportPending,
    ImagePage,
    JobAccepted,
    JobPage,
    JobRequest,
    JobStatus,
    ManifestStored,
    ReplayAccepted,
    UploadCreated,
    UploadRequest,
    UsageReport,
)
from shared.paging import TOKEN_PATTERN

_REQUESTS: list[type[BaseModel]] = [JobRequest, UploadRequest]
_RESPONSES: list[type[BaseModel]] = [
    JobAccepted,
    JobStatus,
    JobPage,
    ImagePage,
    DuplicateGroupPage,
    ReplayAccepted,
    UploadCreated,
    ManifestStored,
    ExportPending,
    ErrorResponse,
    UsageReport,
]

_ERROR_TEXT = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    404: "No such job (or image) for this tenant",
    409: "Conflict: see the error code",
    411: "Content-Length required",
    413: "Too large: see the error's details for the limit",
    503: "Could not enqueue: safe to retry",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(model)}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json(ErrorResponse, _ERROR_TEXT[c]) for c in codes}


def _redirect(description: str) -> dict[str, Any]:
    return {
        "description": f"{description}: a short-lived signed URL (DOWNLOAD_URL_TTL_SECONDS)",
        "headers": {"Location": {"schema": {"type": "string"}}},
    }


_LOCATION = {"Location": {"description": "The job's status URL", "schema": {"type": "string"}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _paging(maximum: int, default: int) -> list[dict[str, Any]]:
    return [
        _query("page_size", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}, "Items a page"),
        _query(
            "continuation",
            {"type": "string", "pattern": TOKEN_PATTERN},
            "The `continuation` of the previous page, unchanged (a token of another route or job is refused)",
        ),
    ]


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _one_source(schema: dict[str, Any]) -> dict[str, Any]:
    """JobRequest takes exactly one image source, and none of them (nor the callback URL) as null: said in the
    schema too, not only enforced."""
    schema["oneOf"] = [{"required": [name]} for name in JOB_SOURCES]
    for name in (*JOB_SOURCES, "callback_url"):
        field = schema["properties"][name]
        kinds = [k for k in field.pop("anyOf") if k.get("type") != "null"]
        field.update(kinds[0])
        field.pop("default", None)
    return schema


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "validation") for m in _REQUESTS] + [(m, "serialization") for m in _RESPONSES],
        ref_template="#/components/schemas/{model}",
    )
    components = schemas.get("$defs", {})
    _one_source(components["JobRequest"])
    job_id = _path("job_id", "The job's id")
    index = _path("index", "The image's position in the job")
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Image pipeline jobs API",
            "version": "1.0.0",
            "description": "Every JSON field and query parameter is snake_case. Errors are "
            '`{"error": {"code", "message", "details"}}` with a stable code.',
        },
        "servers": [{"url": "/api"}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Tenant API key"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/jobs": {
                "post": {
                    "summary": "Submit a job",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(JobRequest)}}},
                    "responses": {"202": _json(JobAccepted, "Accepted", _LOCATION), **_errors(400, 401, 409, 413, 503)},
                },
                "get": {
                    "summary": "Your jobs, newest first",
                    "parameters": [
                        _query("state", {"type": "string"}, "Comma-separated states to keep, e.g. running,failed"),
                        _query("created_after", {"type": "string", "format": "date-time"}, "Created at or after"),
                        _query("created_before", {"type": "string", "format": "date-time"}, "Created before"),
                        *_paging(100, 20),
                    ],
                    "responses": {"200": _json(JobPage, "A page of jobs"), **_errors(400, 401)},
                },
            },
            "/images": {
                "post": {
                    "summary": "Submit one image: the body is its bytes",
                    "requestBody": {
                        "required": True,
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "responses": {"202": _json(JobAccepted, "Accepted", _LOCATION), **_errors(400, 401, 411, 413)},
                }
            },
            "/uploads": {
                "post": {
                    "summary": "Signed write URLs for files to upload into your originals folder",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(UploadRequest)}}},
                    "responses": {"201": _json(UploadCreated, "Upload URLs"), **_errors(400, 401, 413)},
                }
            },
            "/manifests": {
                "post": {
                    "summary": "Store a manifest: one URL or blob name a line",
                    "parameters": [_query("name", {"type": "string"}, "Its name in your manifests folder")],
                    "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "responses": {"201": _json(ManifestStored, "Stored"), **_errors(400, 401, 413)},
                }
            },
            "/jobs/{job_id}": {
                "parameters": [job_id],
                "get": {"summary": "Job status", "responses": {"200": _json(JobStatus, "Status"), **_errors(401, 404)}},
                "delete": {
                    "summary": "Cancel",
                    "responses": {"202": _json(JobStatus, "Cancelling"), **_errors(401, 404)},
                },
            },
            "/jobs/{job_id}/images": {
                "parameters": [job_id, *_paging(1000, 100)],
                "get": {
                    "summary": "Image results, paged, in image order",
                    "responses": {"200": _json(ImagePage, "A page"), **_errors(400, 401, 404)},
                },
            },
            "/jobs/{job_id}/results.jsonl": {
                "parameters": [job_id],
                "get": {
                    "summary": "Every result of a finished job as JSON lines (one ImageResultItem a line)",
                    "responses": {
                        "302": _redirect("The export"),
                        "202": _json(ExportPending, "Being exported: ask again after Retry-After seconds"),
                        **_errors(401, 404, 409),
                    },
                },
            },
            "/jobs/{job_id}/images/{index}/thumbnails/{file_name}": {
                "parameters": [job_id, index, _path("file_name", "`{size}.{format}`, e.g. 150.jpeg")],
                "get": {
                    "summary": "One thumbnail",
                    "responses": {"302": _redirect("The thumbnail"), **_errors(401, 404)},
                },
            },
            "/jobs/{job_id}/images/{index}/original": {
                "parameters": [job_id, index],
                "get": {
                    "summary": "An uploaded original",
                    "responses": {"302": _redirect("The original"), **_errors(401, 404)},
                },
            },
            "/jobs/{job_id}/duplicates": {
                "parameters": [job_id, *_paging(1000, 100)],
                "get": {
                    "summary": "The job's duplicate groups, once reconciled",
                    "responses": {"200": _json(DuplicateGroupPage, "A page"), **_errors(400, 401, 404)},
                },
            },
            "/jobs/{job_id}/replay": {
                "parameters": [job_id],
                "post": {
                    "summary": "Re-send dead-lettered chunks",
                    "responses": {"202": _json(ReplayAccepted, "Replayed"), **_errors(401, 404, 409)},
                },
            },
            "/health": {"get": {"summary": "Health", "security": [], "responses": {"200": {"description": "OK"}}}},
        },
    }
    return add_limits(document)
