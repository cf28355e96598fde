"""Mapping between HTTP bindings and the services: JSON responses, JSON errors, tenant authentication."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared.errors import ApiError
from shared.models import TenantDocument
from shared.services.context import get_context
from shared.services.rate_limits import check_api_rate
from shared.services.tenants import TenantAuthenticator

log = logging.getLogger(__name__)

_authenticator_lock = threading.Lock()
_call = threading.local()  # this invocation's RateLimit headers (one invocation per thread at a time)


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
    _call.rate_headers = check_api_rate(get_context(), tenant)  # raises 429 rate_limited over the tenant's rate
    return tenant


def api_errors(
    handler: Callable[[func.HttpRequest], func.HttpResponse],
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Turns ApiError into its 4xx/5xx JSON body and anything unexpected into a 500 without internals."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        _call.rate_headers = {}
        try:
            response = handler(req)
            response.headers.update(_call.rate_headers)
            return response
        except ApiError as exc:
            return json_response(exc.status, exc.body(), {**_call.rate_headers, **exc.headers})
        except Exception:
            log.exception("%s %s failed", req.method, req.url)
            return json_response(500, ApiError(500, "internal_error", "the request failed; it is safe to retry").body())

    return wrapper
