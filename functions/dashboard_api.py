"""HTTP triggers of the web dashboard: its static files, and the operator view's overview (own key).

Routes may not start with "admin" on Azure Functions (the host reserves it, route prefix or not), hence
/api/operator/overview.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from functions.http import api_errors, json_response
from shared.dashboard.assets import dashboard_response
from shared.errors import NotFound
from shared.services.context import get_context
from shared.services.operator import authenticate_operator, operator_overview

bp = func.Blueprint()


@bp.route(route="dashboard/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    answer = dashboard_response(path, urlsplit(req.url).path, req.headers.get("If-None-Match"))
    if answer is None:
        raise NotFound("not_found", f"the dashboard has no file {path!r}")
    return func.HttpResponse(answer.body, status_code=answer.status, headers=answer.headers)


@bp.route(route="operator/overview", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def operator_overview_route(req: func.HttpRequest) -> func.HttpResponse:
    ctx = get_context()
    authenticate_operator(ctx.settings, req.headers.get("Authorization"), req.headers.get("x-api-key"))
    return json_response(200, operator_overview(ctx))
