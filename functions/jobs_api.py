"""HTTP triggers of the jobs API. Each parses the request, calls one service and maps the result."""

from __future__ import annotations

import azure.functions as func

from functions.http import api_errors, json_response, redirect, tenant_of
from shared.models import ExportPending
from shared.services import jobs, uploads
from shared.services.context import get_context

bp = func.Blueprint()


@bp.route(route="jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def submit_job(req: func.HttpRequest) -> func.HttpResponse:
    accepted = jobs.submit_job(get_context(), tenant_of(req), req.get_body())
    return json_response(202, accepted, {"Location": accepted.status_url})


@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    page = jobs.list_jobs(
        get_context(),
        tenant_of(req),
        req.params.get("state"),
        req.params.get("created_after"),
        req.params.get("created_before"),
        *_paging(req),
    )
    return json_response(200, page)


@bp.route(route="images", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def submit_image(req: func.HttpRequest) -> func.HttpResponse:
    # The declared length is checked before the body is touched: a body over the cap is refused unread.
    accepted = jobs.submit_image(get_context(), tenant_of(req), req.headers.get("Content-Length"), req.get_body)
    return json_response(202, accepted, {"Location": accepted.status_url})


@bp.route(route="uploads", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def create_upload(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(201, uploads.create_upload(get_context(), tenant_of(req), req.get_body()))


@bp.route(route="manifests", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def store_manifest(req: func.HttpRequest) -> func.HttpResponse:
    stored = uploads.store_manifest(get_context(), tenant_of(req), req.get_body(), req.params.get("name"))
    return json_response(201, stored)


@bp.route(route="jobs/{job_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(200, jobs.get_job_status(get_context(), tenant_of(req), req.route_params["job_id"]))


@bp.route(route="jobs/{job_id}/images", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def list_job_images(req: func.HttpRequest) -> func.HttpResponse:
    page = jobs.list_job_images(get_context(), tenant_of(req), req.route_params["job_id"], *_paging(req))
    return json_response(200, page)


@bp.route(route="jobs/{job_id}/results.jsonl", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def export_results(req: func.HttpRequest) -> func.HttpResponse:
    exported = jobs.export_results(get_context(), tenant_of(req), req.route_params["job_id"])
    if isinstance(exported, ExportPending):
        headers = {"Retry-After": str(exported.retry_after_seconds), "Location": req.url}
        return json_response(202, exported, headers)
    return redirect(exported)


@bp.route(
    route="jobs/{job_id}/images/{index}/thumbnails/{file_name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
@api_errors
def download_thumbnail(req: func.HttpRequest) -> func.HttpResponse:
    p = req.route_params
    return redirect(jobs.thumbnail_url(get_context(), tenant_of(req), p["job_id"], p["index"], p["file_name"]))


@bp.route(route="jobs/{job_id}/images/{index}/original", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def download_original(req: func.HttpRequest) -> func.HttpResponse:
    p = req.route_params
    return redirect(jobs.original_url(get_context(), tenant_of(req), p["job_id"], p["index"]))


@bp.route(route="jobs/{job_id}/duplicates", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def list_duplicate_groups(req: func.HttpRequest) -> func.HttpResponse:
    page = jobs.list_duplicate_groups(get_context(), tenant_of(req), req.route_params["job_id"], *_paging(req))
    return json_response(200, page)


def _paging(req: func.HttpRequest) -> tuple[str | None, str | None]:
    """A paged route's page size and continuation token (query string, or the x-continuation header)."""
    return req.params.get("page_size"), req.params.get("continuation") or req.headers.get("x-continuation")


@bp.route(route="jobs/{job_id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def cancel_job(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(202, jobs.cancel_job(get_context(), tenant_of(req), req.route_params["job_id"]))


@bp.route(route="jobs/{job_id}/replay", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@api_errors
def replay_job(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(202, jobs.replay_dead_letters(get_context(), tenant_of(req), req.route_params["job_id"]))
