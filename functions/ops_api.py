"""Unauthenticated operational endpoints: health and the OpenAPI document."""

from __future__ import annotations

import azure.functions as func

from functions.http import api_errors, json_response
from shared.openapi import openapi_document
from shared.services.health import check_health

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health()
    return json_response(200 if report["status"] == "ok" else 503, report)


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(200, openapi_document())
