"""The OpenAPI entries of the limits: GET /usage, and a 429 with Retry-After and the RateLimit headers on every
tenant-authenticated operation (the rate limiter answers any of them; submissions also name quotas)."""

from __future__ import annotations

from typing import Any

_SCHEMAS = "#/components/schemas"
_HEADERS = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
    "RateLimit-Limit": {"description": "The tenant's burst (bucket size)", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the bucket", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the bucket is full again", "schema": {"type": "integer"}},
    "RateLimit-Policy": {"description": "`<burst>;w=<seconds to refill>`", "schema": {"type": "string"}},
}
_TOO_MANY = (
    "rate_limited: over the tenant's request rate. On submissions also quota_exceeded: details name the quota "
    "(active_jobs, images_per_day), its limit, the use, the images requested and resets_at. Wait Retry-After seconds."
)
_METHODS = ("get", "put", "post", "delete", "patch")


def add_limits(document: dict[str, Any]) -> dict[str, Any]:
    """Adds the limits' path and responses to the API document (in place) and returns it."""
    error = {"content": {"application/json": {"schema": {"$ref": f"{_SCHEMAS}/ErrorResponse"}}}}
    document["paths"]["/usage"] = {
        "get": {
            "summary": "Your rate limit and quotas, and your use of them",
            "responses": {
                "200": {
                    "description": "Limits and use",
                    "content": {"application/json": {"schema": {"$ref": f"{_SCHEMAS}/UsageReport"}}},
                },
                "401": {"description": "Missing or invalid API key", **error},
            },
        }
    }
    for path in document["paths"].values():
        for method in _METHODS:
            operation = path.get(method)
            if operation is not None and operation.get("security") != []:
                operation["responses"]["429"] = {"description": _TOO_MANY, "headers": _HEADERS, **error}
    return document
