"""HTTP triggers through a real socket: routing, route constraints, params, body, status, errors, settings."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.funchost.conftest import HostFactory

pytestmark = pytest.mark.slow  # each test runs real host (and emulator) processes


def call(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_routes_params_body_status_and_errors(start_host: HostFactory) -> None:
    host = start_host({"SAMPLE_GREETING": "from-file"})
    api = f"{host.base_url}/api"

    status, headers, body = call(f"{api}/echo/ada%20l?x=1&y=two&status=201", "POST", b'{"k": 1}', {"X-Sample": "hello"})
    assert status == 201
    assert headers["X-Echo"] == "yes"
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert answer["method"] == "POST"
    assert answer["route_params"] == {"name": "ada l"}
    assert answer["params"] == {"x": "1", "y": "two", "status": "201"}
    assert answer["header"] == "hello"
    assert answer["body"] == '{"k": 1}'
    assert answer["url"] == f"{api}/echo/ada%20l?x=1&y=two&status=201"

    job = str(uuid.uuid4())
    status, headers, body = call(f"{api}/jobs/{job}")
    assert (status, body) == (200, f"job {job}".encode())
    assert headers["Content-Type"].startswith("text/plain")

    assert call(f"{api}/jobs/not-a-guid")[0] == 404  # the {id:guid} constraint
    assert call(f"{api}/nothing-here")[0] == 404
    assert call(f"{host.base_url}/echo/x")[0] == 404  # outside the route prefix
    status, headers, body = call(f"{api}/echo/x", "DELETE")
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert call(f"{api}/boom")[0] == 500
    assert call(f"{api}/setting")[2] == b"from-file"
    assert "Executed 'Functions.boom' (Failed" in host.log()
    assert "from-file" not in host.log()  # setting values never reach the log


def test_unknown_methods_get_a_json_405_with_allow(start_host: HostFactory) -> None:
    host = start_host()
    api = f"{host.base_url}/api"

    for method, path, allowed in [
        ("TRACE", "/echo/x", "GET, POST"),  # http.server alone answers these with an HTML 501
        ("CONNECT", "/echo/x", "GET, POST"),
        ("PROPFIND", "/echo/x", "GET, POST"),
        ("TRACE", "/nothing-here", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
        ("PUT", "/echo/x", "GET, POST"),  # a served method the route does not accept
    ]:
        status, headers, body = call(f"{api}{path}", method)
        assert status == 405, (method, path, body)
        assert headers["Allow"] == allowed
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] == "method_not_allowed"
        assert error["details"] == {"method": method, "allowed": allowed.split(", ")}
        assert method in error["message"]
    assert call(f"{api}/echo/x", "POST", b"{}")[0] == 200  # the connection handling is unchanged after a 405


def test_environment_wins_over_local_settings_and_functions_can_be_disabled(start_host: HostFactory) -> None:
    host = start_host(
        {"SAMPLE_GREETING": "from-file", "AzureWebJobs.boom.Disabled": "true"}, env={"SAMPLE_GREETING": "from-env"}
    )
    assert call(f"{host.base_url}/api/setting")[2] == b"from-env"
    assert call(f"{host.base_url}/api/boom")[0] == 404


def test_slow_requests_do_not_block_each_other(start_host: HostFactory) -> None:
    host = start_host({"FUNCTIONS_WORKER_PROCESS_COUNT": "1"})
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(call, f"{host.base_url}/api/slow?seconds=2") for _ in range(3)]
        time.sleep(0.2)
        quick = call(f"{host.base_url}/api/echo/quick")
        quick_done = time.monotonic() - started
        statuses = [future.result()[0] for future in slow]
    assert quick[0] == 200 and quick_done < 1.5
    assert statuses == [200, 200, 200]
    assert time.monotonic() - started < 3.5  # three 2 s requests ran side by side on the worker's threads
