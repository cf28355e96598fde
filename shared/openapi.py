"""The OpenAPI 3.1 document of the jobs API, generated from the pydantic models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.models import ErrorResponse, ImagePage, JobAccepted, JobRequest, JobStatus, UsageReport

_MODELS: list[type[BaseModel]] = [JobRequest, JobAccepted, JobStatus, ImagePage, ErrorResponse, UsageReport]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request",
        401: "Missing or invalid API key",
        404: "No such job for this tenant",
        409: "Conflict",
        413: "Too many images inline: use a manifest",
        429: "rate_limited: over the tenant's request rate; quota_exceeded (submissions): details name the quota "
        "(active_jobs, images_per_day), its limit, the use and resets_at. Wait Retry-After seconds.",
        503: "Could not enqueue",
    }
    responses = {str(c): _json(ErrorResponse, text[c]) for c in codes}
    if 429 in codes:
        responses["429"]["headers"] = _RATE_LIMIT_HEADERS | {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return responses


_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "The tenant's burst (bucket size)", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the bucket", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the bucket is full again", "schema": {"type": "integer"}},
    "RateLimit-Policy": {"description": "`<burst>;w=<seconds to refill>`", "schema": {"type": "string"}},
}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "validation" if m is JobRequest else "serialization") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Image pipeline jobs API", "version": "1.0.0"},
        "servers": [{"url": "/api"}],
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Tenant API key"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/jobs": {
                "post": {
                    "summary": "Submit a job",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(JobRequest)}}},
                    "responses": {"202": _json(JobAccepted, "Accepted"), **_errors(400, 401, 413, 429, 503)},
                }
            },
            "/jobs/{job_id}": {
                "parameters": [job_id],
                "get": {
                    "summary": "Job status",
                    "responses": {"200": _json(JobStatus, "Status"), **_errors(401, 404, 429)},
                },
                "delete": {
                    "summary": "Cancel",
                    "responses": {"202": _json(JobStatus, "Cancelling"), **_errors(401, 404, 429)},
                },
            },
            "/jobs/{job_id}/images": {
                "parameters": [
                    job_id,
                    {"name": "pageSize", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "continuation", "in": "query", "schema": {"type": "string"}},
                ],
                "get": {
                    "summary": "Image results, paged",
                    "responses": {"200": _json(ImagePage, "A page"), **_errors(400, 401, 404, 429)},
                },
            },
            "/jobs/{job_id}/replay": {
                "parameters": [job_id],
                "post": {
                    "summary": "Re-send dead-lettered chunks",
                    "responses": {"202": {"description": "Replayed"}, **_errors(401, 404, 409, 429)},
                },
            },
            "/usage": {
                "get": {
                    "summary": "The tenant's rate limit and quotas, and its use of them",
                    "responses": {"200": _json(UsageReport, "Limits and use"), **_errors(401, 429)},
                }
            },
            "/health": {"get": {"summary": "Health", "security": [], "responses": {"200": {"description": "OK"}}}},
        },
    }
