"""Errors users can act on: each carries an HTTP status, a stable code, a message and details."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}  # e.g. Retry-After on a 429

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "missing or invalid API key; send it as 'Authorization: Bearer <key>'")


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id!r} for this tenant")


def validation_error(exc: ValidationError) -> ApiError:
    """A request body that does not fit its model: every problem named by its field path (`urls.3`, `files.0.name`)."""
    details = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"].removeprefix("Value error, ")}
        for err in exc.errors()
    ]
    return ApiError(400, "invalid_request", "the request body is invalid", details)
