"""Mapping between HTTP bindings and the services: JSON responses, domain errors as HTTP, tenant authentication.

The services raise domain errors (shared/errors.py) that know nothing of HTTP; this is the one place that says
which status and headers each kind of error becomes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared.errors import (
    Conflict,
    DomainError,
    InvalidRequest,
    LengthRequired,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RetryLater,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from shared.limits.api_rate import check_api_rate
from shared.limits.bucket import Take
from shared.models import TenantDocument
from shared.services.context import get_context
from shared.services.tenants import TenantAuthenticator

log = logging.getLogger(__name__)

_authenticator_lock = threading.Lock()
_call = threading.local()  # this invocation's RateLimit headers (one invocation per thread at a time)

# The HTTP status of each kind of domain error (the kinds do not overlap; an unlisted kind answers 400).
STATUS_OF: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidRequest, 400),
    (Unauthorized, 401),
    (NotFound, 404),
    (Conflict, 409),
    (LengthRequired, 411),
    (TooLarge, 413),
    (QuotaExceeded, 429),
    (RateLimited, 429),
    (Unavailable, 503),
)


def status_of(error: DomainError) -> int:
    """The HTTP status a domain error answers with (400 for a kind not listed: the request was refused)."""
    return next((status for kind, status in STATUS_OF if isinstance(error, kind)), 400)


def rate_limit_headers(took: Take) -> dict[str, str]:
    """The RateLimit headers (draft-ietf-httpapi-ratelimit-headers) of a take from the tenant's bucket:
    RateLimit-Limit (the burst), RateLimit-Remaining, RateLimit-Reset (seconds until the bucket is full again),
    RateLimit-Policy."""
    limits = took.limits
    window = math.ceil(limits.burst / limits.rate)
    return {
        "RateLimit-Limit": str(int(limits.burst)),
        "RateLimit-Remaining": str(max(0, math.floor(took.remaining))),
        "RateLimit-Reset": str(math.ceil(took.full_in)),
        "RateLimit-Policy": f"{int(limits.burst)};w={window}",
    }


def headers_of(error: DomainError) -> dict[str, str]:
    """Retry-After on a refusal that says when to retry; the RateLimit headers on a rate-limit refusal."""
    headers = rate_limit_headers(error.took) if isinstance(error, RateLimited) else {}
    if isinstance(error, RetryLater) and error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return headers


def error_response(error: DomainError, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return json_response(status_of(error), error.body(), {**(headers or {}), **headers_of(error)})


def json_response(
    status: int, body: BaseModel | dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    text = body.model_dump_json(by_alias=True) if isinstance(body, BaseModel) else json.dumps(body, default=str)
    return func.HttpResponse(text, status_code=status, mimetype="application/json", headers=headers)


def redirect(url: str) -> func.HttpResponse:
    """A 302 to a short-lived signed URL (never cached: the URL expires)."""
    return func.HttpResponse(status_code=302, headers={"Location": url, "Cache-Control": "no-store"})


@functools.cache
def _build_authenticator() -> TenantAuthenticator:
    return TenantAuthenticator(get_context().store)


def authenticator() -> TenantAuthenticator:
    """The process's one authenticator (its tenant cache is the process's), built once even when the first requests
    arrive on several threads at once."""
    with _authenticator_lock:
        return _build_authenticator()


def tenant_of(req: func.HttpRequest) -> TenantDocument:
    tenant = authenticator().authenticate(req.headers.get("Authorization"), req.headers.get("x-api-key"))
    ctx = get_context()
    took = check_api_rate(ctx.limits, ctx.settings, tenant)  # raises rate_limited over the tenant's rate
    _call.rate_headers = rate_limit_headers(took) if took is not None else {}
    return tenant


def api_errors(
    handler: Callable[[func.HttpRequest], func.HttpResponse],
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Turns a domain error into its 4xx/5xx JSON body and anything unexpected into a 500 without internals."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        _call.rate_headers = {}
        try:
            response = handler(req)
            response.headers.update(_call.rate_headers)
            return response
        except DomainError as exc:
            return error_response(exc, _call.rate_headers)
        except Exception:
            log.exception("%s %s failed", req.method, req.url)
            internal = DomainError("internal_error", "the request failed; it is safe to retry")
            return json_response(500, internal.body())

    return wrapper
