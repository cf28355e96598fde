"""Mapping between HTTP bindings and the services: JSON responses, JSON errors, tenant authentication."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared.errors import ApiError
from shared.models import TenantDocument
from shared.services.context import get_context
from shared.services.tenants import TenantAuthenticator

log = logging.getLogger(__name__)

_authenticator: TenantAuthenticator | None = None


def json_response(
    status: int, body: BaseModel | dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    text = body.model_dump_json(by_alias=True) if isinstance(body, BaseModel) else json.dumps(body, default=str)
    return func.HttpResponse(text, status_code=status, mimetype="application/json", headers=headers)


def redirect(url: str) -> func.HttpResponse:
    """A 302 to a short-lived signed URL (never cached: the URL expires)."""
    return func.HttpResponse(status_code=302, headers={"Location": url, "Cache-Control": "no-store"})


def tenant_of(req: func.HttpRequest) -> TenantDocument:
    global _authenticator
    if _authenticator is None:
        _authenticator = TenantAuthenticator(get_context().store)
    return _authenticator.authenticate(req.headers.get("Authorization"), req.headers.get("x-api-key"))


def api_errors(
    handler: Callable[[func.HttpRequest], func.HttpResponse],
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Turns ApiError into its 4xx/5xx JSON body and anything unexpected into a 500 without internals."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except ApiError as exc:
            return json_response(exc.status, exc.body())
        except Exception:
            log.exception("%s %s failed", req.method, req.url)
            return json_response(500, ApiError(500, "internal_error", "the request failed; it is safe to retry").body())

    return wrapper
