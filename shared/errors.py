"""Errors users can act on: a kind, a stable code, a message and details; never an HTTP status.

The services raise these; the edge decides what they become (functions/http.py maps each kind to its HTTP status
and headers, the CLI prints code and message). The codes are part of the API: keep them stable.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.limits.bucket import Take


class DomainError(Exception):
    """A refusal the caller can act on. Subclasses say which kind of refusal it is."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidRequest(DomainError):
    """The request itself is wrong (its body, a parameter, a reference it names): fix it and send it again."""


class Unauthorized(DomainError):
    """No credentials, or credentials that are not valid."""


class NotFound(DomainError):
    """What the request names does not exist (for this caller)."""


class Conflict(DomainError):
    """The request is valid but not in the current state of what it acts on."""


class LengthRequired(DomainError):
    """The request must declare its length before it is read."""


class TooLarge(DomainError):
    """The request is over a size or count limit."""


class RetryLater(DomainError):
    """Refused for now: `retry_after` seconds (when known) is when asking again may succeed."""

    def __init__(self, code: str, message: str, details: Any = None, retry_after: int | None = None) -> None:
        super().__init__(code, message, details)
        self.retry_after = retry_after


class QuotaExceeded(RetryLater):
    """Over one of the tenant's quotas (unfinished jobs, images a day)."""


class RateLimited(RetryLater):
    """Over the tenant's request rate. `took` is the refused take from its bucket (what is left, when it refills)."""

    def __init__(self, code: str, message: str, details: Any, retry_after: int, took: Take) -> None:
        super().__init__(code, message, details, retry_after)
        self.took = took


class Unavailable(RetryLater):
    """A service the request needs could not do its part; the request is safe to retry."""


def unauthorized() -> Unauthorized:
    return Unauthorized("unauthorized", "missing or invalid API key; send it as 'Authorization: Bearer <key>'")


def job_not_found(job_id: str) -> NotFound:
    return NotFound("job_not_found", f"no job {job_id!r} for this tenant")


def validation_error(exc: ValidationError) -> InvalidRequest:
    """A request body that does not fit its model: every problem named by its field path (`urls.3`, `files.0.name`)."""
    details = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"].removeprefix("Value error, ")}
        for err in exc.errors()
    ]
    return InvalidRequest("invalid_request", "the request body is invalid", details)
