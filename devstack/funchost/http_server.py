"""The host's HTTP front end: HTTP triggers under the route prefix, plus a few admin endpoints.

A ThreadingHTTPServer serves each request on its own thread, so a slow function never blocks others;
the invocation itself runs in a worker process.

Admin endpoints (like the real host's, without keys; the real ones require the master key):
  GET /admin/host/status   {"state": "Running", ...}
  GET /admin/host/workers  worker processes with their PIDs (tests kill one with kill -9)
  GET /admin/functions     the indexed functions and their triggers
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack.funchost.invoker import Invoker
from devstack.funchost.payloads import HttpRequestData
from devstack.funchost.routing import MethodNotAllowedError, NoRouteError, RouteTable

log = logging.getLogger("funchost")

AdminView = Callable[[], Any]

# The methods an HTTP trigger can be bound to. Any other (TRACE, CONNECT, an unknown token) never reaches a function.
SERVED_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class FunctionsHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of clients (a thousand submits from 32 connections) overflowed the
    # listen queue, each overflow costing a client a ~1 s SYN retransmit or a reset.
    request_queue_size = 1024
    # The real host's default cap on a request body, overridden by the FUNCTIONS_REQUEST_BODY_SIZE_LIMIT app setting.
    default_body_limit = 100 * 1024 * 1024

    def __init__(
        self,
        address: tuple[str, int],
        routes: RouteTable,
        route_prefix: str,
        invoker: Invoker,
        admin_views: dict[str, AdminView],
    ) -> None:
        super().__init__(address, _FunctionsRequestHandler)
        self.routes = routes
        self.route_prefix = route_prefix.strip("/")
        self.invoker = invoker
        self.admin_views = admin_views
        self.body_limit = int(os.environ.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT") or self.default_body_limit)


class _FunctionsRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FunctionsHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        # The invoker writes one line per invocation; per-request access logs would only repeat it.
        pass

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:  # over the host's body cap: refused without reading the rest, as the real host does
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, [], b"")
            return
        url = urlsplit(self.path)
        if self.command not in SERVED_METHODS:
            self._send_method_not_allowed(self._methods_for(url.path))
            return
        if url.path.startswith("/admin/") and self.command == "GET":
            self._answer_admin(url.path)
            return
        below_prefix = self._below_route_prefix(url.path)
        if below_prefix is None:
            self._send(HTTPStatus.NOT_FOUND, [], b"")
            return
        try:
            route, route_params = self.server.routes.resolve(self.command, below_prefix)
        except NoRouteError:
            self._send(HTTPStatus.NOT_FOUND, [], b"")
            return
        except MethodNotAllowedError as error:
            self._send_method_not_allowed(error.allowed)
            return
        request = HttpRequestData(
            method=self.command,
            url=f"http://{self._authority()}{self.path}",
            headers=self._request_headers(),
            params=dict(parse_qsl(url.query, keep_blank_values=True)),
            route_params=route_params,
            body=body,
        )
        result = self.server.invoker.invoke(route.function_name, request, trigger_detail=f"{self.command} {url.path}")
        if not result.succeeded or result.http_response is None:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, [], b"")
            return
        response = result.http_response
        self._send(response.status_code, response.headers, response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler looks up `do_<METHOD>` and answers a bare HTML 501 when there is none (TRACE,
        # CONNECT, any token): route every method through _handle, which answers the unserved ones with a JSON 405.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _methods_for(self, path: str) -> list[str]:
        """The served methods that the routes matching `path` accept (all served ones when it matches none)."""
        below_prefix = self._below_route_prefix(path)
        allowed = self.server.routes.allowed_methods(below_prefix) if below_prefix is not None else None
        return sorted((allowed or SERVED_METHODS) & SERVED_METHODS)

    def _send_method_not_allowed(self, allowed: list[str]) -> None:
        error = {
            "code": "method_not_allowed",
            "message": f"{self.command} is not allowed here; allowed: {', '.join(allowed)}",
            "details": {"method": self.command, "allowed": allowed},
        }
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            [("Allow", ", ".join(allowed)), ("Content-Type", "application/json")],
            json.dumps({"error": error}).encode(),
        )

    def _authority(self) -> str:
        host, port = self.server.server_address[:2]
        return self.headers.get("Host") or f"{host!s}:{port}"

    def _below_route_prefix(self, path: str) -> str | None:
        prefix = self.server.route_prefix
        if not prefix:
            return path
        head = f"/{prefix}"
        if path.lower() == head.lower():
            return "/"
        if path.lower().startswith(head.lower() + "/"):
            return path[len(head) :]
        return None

    def _request_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _read_body(self) -> bytes | None:
        """The request body, or None when it is over the body cap (then only what came before the cap was read)."""
        limit = self.server.body_limit
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            received = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                received += size
                if received > limit:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            return None
        return self.rfile.read(length) if length else b""

    def _answer_admin(self, path: str) -> None:
        view = self.server.admin_views.get(path.rstrip("/"))
        if view is None:
            self._send(HTTPStatus.NOT_FOUND, [], b"")
            return
        body = json.dumps(view(), indent=2).encode()
        self._send(HTTPStatus.OK, [("Content-Type", "application/json")], body)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
