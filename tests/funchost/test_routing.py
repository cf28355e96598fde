"""Route templates and route-table resolution, in process (no host needed)."""

from __future__ import annotations

import uuid

import pytest

from devstack.funchost.routing import MethodNotAllowedError, NoRouteError, RouteTable


@pytest.fixture
def routes() -> RouteTable:
    table = RouteTable()
    table.add("get_job", "jobs/{job_id}", ["GET"])
    table.add("cancel_job", "jobs/{job_id}", ["DELETE"])
    table.add("submit_job", "jobs", ["POST"])
    table.add("images", "jobs/{job_id}/images", ["GET"])
    table.add("health", "health", None)
    table.add("by_guid", "things/{id:guid}", None)
    table.add("by_int", "things/{id:int}", None)
    table.add("page", "pages/{number:int?}", None)
    table.add("files", "files/{*path}", None)
    table.add("named", "docs/{name}.{ext}", None)
    table.add("literal_wins", "jobs/latest", ["GET"])
    return table


def resolve(routes: RouteTable, method: str, path: str) -> tuple[str, dict[str, str]]:
    route, params = routes.resolve(method, path)
    return route.function_name, params


def test_same_template_different_methods(routes: RouteTable) -> None:
    assert resolve(routes, "GET", "/jobs/42") == ("get_job", {"job_id": "42"})
    assert resolve(routes, "DELETE", "/jobs/42") == ("cancel_job", {"job_id": "42"})
    with pytest.raises(MethodNotAllowedError) as refused:
        routes.resolve("PUT", "/jobs/42")
    assert refused.value.allowed == ["DELETE", "GET"]


def test_literals_are_case_insensitive_and_trailing_slash_is_ignored(routes: RouteTable) -> None:
    assert resolve(routes, "post", "/JOBS/") == ("submit_job", {})
    assert resolve(routes, "GET", "/jobs/7/images") == ("images", {"job_id": "7"})


def test_literal_segment_beats_parameter(routes: RouteTable) -> None:
    assert resolve(routes, "GET", "/jobs/latest")[0] == "literal_wins"


def test_constraints_choose_or_reject(routes: RouteTable) -> None:
    guid = str(uuid.uuid4())
    assert resolve(routes, "GET", f"/things/{guid}") == ("by_guid", {"id": guid})
    assert resolve(routes, "GET", "/things/12") == ("by_int", {"id": "12"})
    with pytest.raises(NoRouteError):
        routes.resolve("GET", "/things/twelve")


def test_optional_catch_all_and_multi_parameter_segments(routes: RouteTable) -> None:
    assert resolve(routes, "GET", "/pages") == ("page", {})
    assert resolve(routes, "GET", "/pages/3") == ("page", {"number": "3"})
    assert resolve(routes, "GET", "/files/a/b%20c.txt") == ("files", {"path": "a/b c.txt"})
    assert resolve(routes, "GET", "/docs/readme.md") == ("named", {"name": "readme", "ext": "md"})


def test_unknown_path(routes: RouteTable) -> None:
    with pytest.raises(NoRouteError):
        routes.resolve("GET", "/nope")


def test_allowed_methods_of_a_path(routes: RouteTable) -> None:
    assert routes.allowed_methods("/jobs/42") == {"GET", "DELETE"}
    assert routes.allowed_methods("/health") is None  # a route without methods accepts any
    assert routes.allowed_methods("/nope") == frozenset()
