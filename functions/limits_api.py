"""HTTP trigger of a tenant's limits: GET /api/usage (its rate limit, quotas and use of them)."""

from __future__ import annotations

import azure.functions as func

from functions.http import api_errors, json_response, tenant_of
from shared.services import usage
from shared.services.context import get_context

bp = func.Blueprint()


@bp.route(route="usage", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def get_usage(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(200, usage.usage_report(get_context(), tenant_of(req)))
