"""HTTP triggers of the jobs API. Each parses the request, calls one service and maps the result."""

from __future__ import annotations

import azure.functions as func

from functions.http import api_errors, json_response, tenant_of
from shared.services import jobs
from shared.services.context import get_context

bp = func.Blueprint()


@bp.route(route="jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def submit_job(req: func.HttpRequest) -> func.HttpResponse:
    accepted = jobs.submit_job(get_context(), tenant_of(req), req.get_body())
    return json_response(202, accepted, {"Location": accepted.status_url})


@bp.route(route="jobs/{job_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(200, jobs.get_job_status(get_context(), tenant_of(req), req.route_params["job_id"]))


@bp.route(route="jobs/{job_id}/images", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def list_job_images(req: func.HttpRequest) -> func.HttpResponse:
    page = jobs.list_job_images(get_context(), tenant_of(req), req.route_params["job_id"], *_paging(req))
    return json_response(200, page)


@bp.route(route="jobs/{job_id}/duplicates", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def list_duplicate_groups(req: func.HttpRequest) -> func.HttpResponse:
    page = jobs.list_duplicate_groups(get_context(), tenant_of(req), req.route_params["job_id"], *_paging(req))
    return json_response(200, page)


def _paging(req: func.HttpRequest) -> tuple[str | None, str | None]:
    """A paged route's page size and continuation token (query string, or the x-continuation header)."""
    return req.params.get("pageSize"), req.params.get("continuation") or req.headers.get("x-continuation")


@bp.route(route="jobs/{job_id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def cancel_job(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(202, jobs.cancel_job(get_context(), tenant_of(req), req.route_params["job_id"]))


@bp.route(route="jobs/{job_id}/replay", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def replay_job(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(202, jobs.replay_dead_letters(get_context(), tenant_of(req), req.route_params["job_id"]))
