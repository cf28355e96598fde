"""The edge's mapping of domain errors to HTTP: each kind's status, and the headers of a refusal that says when."""

from __future__ import annotations

import json

import pytest

from functions.http import error_response, headers_of, status_of
from shared.errors import (
    Conflict,
    DomainError,
    InvalidRequest,
    LengthRequired,
    NotFound,
    QuotaExceeded,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from shared.limits.bucket import BucketLimits, Take


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequest("invalid_request", "m"), 400),
        (Unauthorized("unauthorized", "m"), 401),
        (NotFound("job_not_found", "m"), 404),
        (Conflict("job_cancelled", "m"), 409),
        (LengthRequired("length_required", "m"), 411),
        (TooLarge("image_too_large", "m"), 413),
        (QuotaExceeded("quota_exceeded", "m", retry_after=30), 429),
        (Unavailable("enqueue_failed", "m"), 503),
    ],
)
def test_each_kind_has_its_status(error: DomainError, status: int) -> None:
    assert status_of(error) == status


def test_a_rate_limit_refusal_carries_the_ratelimit_headers_and_retry_after() -> None:
    took = Take(granted=0, remaining=0.25, retry_after=1.5, limits=BucketLimits(rate=5, burst=10))
    error = RateLimited("rate_limited", "too many requests", {"retry_after": 2}, 2, took)
    assert status_of(error) == 429
    assert headers_of(error) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
        "RateLimit-Policy": "10;w=2",
        "Retry-After": "2",
    }


def test_retry_after_only_when_the_error_says_when() -> None:
    assert headers_of(Unavailable("quota_check_busy", "m", retry_after=1)) == {"Retry-After": "1"}
    assert headers_of(Unavailable("enqueue_failed", "m")) == {}
    assert headers_of(NotFound("job_not_found", "m")) == {}


def test_the_response_body_is_the_error_and_keeps_the_calls_headers() -> None:
    error = QuotaExceeded("quota_exceeded", "over", {"quota": "active_jobs"}, retry_after=30)
    response = error_response(error, {"RateLimit-Limit": "10"})
    assert response.status_code == 429
    assert json.loads(response.get_body()) == {
        "error": {"code": "quota_exceeded", "message": "over", "details": {"quota": "active_jobs"}}
    }
    assert response.headers["Retry-After"] == "30" and response.headers["RateLimit-Limit"] == "10"
