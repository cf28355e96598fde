"""A real HTTP server on 127.0.0.1 for the fetch and callback tests, and a record of every outgoing connect.

`LocalServer` serves a few fixed routes (see `_Handler.do_GET`) from a thread. `ConnectionLog` uses a Python audit
hook (`socket.connect`, `socket.getaddrinfo` events) to record every connect and name lookup this process makes, so
tests can assert that a refused address was never connected to and that no traffic left 127.0.0.1.
"""

from __future__ import annotations

import gzip
import http.server
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

IMAGE_BYTES = bytes(range(256)) * 40  # 10,240 bytes


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ServerState:
    received: list[ReceivedRequest] = field(default_factory=list)
    callback_status: int = 204
    release: threading.Event = field(default_factory=threading.Event)  # set at shutdown: sleeping handlers end


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    state: ServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early (the byte cap, timeouts) are what the tests are about: not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # for chunked responses and keep-alive
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self, body: bytes = b"") -> None:
        self.server.state.received.append(
            ReceivedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, pieces: Iterator[bytes], content_type: str = "image/png") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in pieces:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass

    def do_GET(self) -> None:
        self._record()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        size = int(query.get("size", "0"))
        release = self.server.state.release
        if url.path == "/image":
            self._send(200, IMAGE_BYTES, {"Content-Type": "image/png; charset=binary"})
        elif url.path == "/sized":  # `size` bytes with a Content-Length
            self._send(200, b"x" * size, {"Content-Type": "image/jpeg"})
        elif url.path == "/chunked":  # `size` bytes, chunked, no Content-Length
            self._send_chunked(b"y" * 1000 for _ in range(size // 1000))
        elif url.path == "/lying-length":  # declares a huge body; sends almost nothing
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"z" * 10)
        elif url.path == "/gzip-bomb":  # `size` zero bytes gzip-encoded, sent although identity was asked for
            self._send(200, gzip.compress(b"\0" * size), {"Content-Encoding": "gzip"})
        elif url.path == "/gzip":
            self._send(200, gzip.compress(IMAGE_BYTES), {"Content-Encoding": "gzip", "Content-Type": "image/png"})
        elif url.path == "/brotli":
            self._send(200, b"not really brotli", {"Content-Encoding": "br"})
        elif url.path == "/slow-headers":  # no answer for `seconds`
            release.wait(float(query.get("seconds", "5")))
            self._send(200, IMAGE_BYTES)
        elif url.path == "/drip":  # one small chunk every `interval` seconds, `count` times

            def drip() -> Iterator[bytes]:
                for _ in range(int(query.get("count", "100"))):
                    if release.wait(float(query.get("interval", "0.1"))):
                        return
                    yield b"d" * 10

            self._send_chunked(drip())
        elif url.path == "/redirect":  # to `to`, with `status`
            self._send(int(query.get("status", "302")), b"", {"Location": query["to"]})
        elif url.path.startswith("/hop/"):  # /hop/N redirects to /hop/N-1; /hop/0 is the image
            remaining = int(url.path.rsplit("/", 1)[1])
            if remaining == 0:
                self._send(200, IMAGE_BYTES, {"Content-Type": "image/png"})
            else:
                self._send(302, b"", {"Location": f"/hop/{remaining - 1}"})
        elif url.path == "/status":
            self._send(int(query.get("code", "500")), b"nope")
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._record(body)
        self._send(self.server.state.callback_status, b"")


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) running in a thread."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = ServerState()
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def state(self) -> ServerState:
        return self._server.state

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.state.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ConnectionLog:
    """Every `socket.connect` address and `socket.getaddrinfo` host seen while `recording()` is active."""

    _installed = False
    _active: ConnectionLog | None = None

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.lookups: list[str] = []

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        log = cls._active
        if log is None:
            return
        if event == "socket.connect" and isinstance(args[1], tuple):
            log.connects.append((str(args[1][0]), int(args[1][1])))
        elif event == "socket.getaddrinfo":
            host = args[0]
            log.lookups.append(host.decode() if isinstance(host, bytes) else str(host))

    @contextmanager
    def recording(self) -> Iterator[ConnectionLog]:
        if not ConnectionLog._installed:
            sys.addaudithook(ConnectionLog._hook)  # audit hooks cannot be removed: install once, switch by _active
            ConnectionLog._installed = True
        ConnectionLog._active = self
        try:
            yield self
        finally:
            ConnectionLog._active = None

    def hosts_connected(self) -> set[str]:
        return {host for host, _ in self.connects}
