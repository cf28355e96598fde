"""A real HTTP server on 127.0.0.1 serving generated images to the chunk workers under test.

Paths: `/img/<n>.jpg` (one of a set of distinct generated JPEGs), `/slow/<ms>/<n>.jpg` (the same, after a delay),
`/corrupt/<n>.jpg` (random bytes), `/missing/<n>.jpg` (404), `/callback` (records POSTed bodies and headers).

For polite fetching: `/flaky/<key>/<k>/<n>.jpg` answers 429 with `Retry-After: 1` to the first k requests for that
key, `/unavailable/<key>/<k>/<n>.jpg` 503 without Retry-After, `/reset/<key>/<k>/<n>.jpg` resets the connection,
then each serves the image; `/capped/<cap>/<ms>/<n>.jpg` serves after a delay, but answers 503 while more than
`cap` requests are in flight on the capped paths (`max_in_flight` and `over_cap` record what it saw). Every GET's
path is counted in `hits` and its arrival time kept in `arrivals`.
"""

from __future__ import annotations

import io
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

DISTINCT_IMAGES = 16


def make_jpeg(seed: int, size: int = 96) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    pixels = img.load()
    assert pixels is not None
    for _ in range(40):  # blocks of colour make each image's perceptual hash distinct
        x, y, w = rng.randrange(size), rng.randrange(size), rng.randrange(8, 40)
        colour = tuple(rng.randrange(256) for _ in range(3))
        for i in range(x, min(size, x + w)):
            for j in range(y, min(size, y + w)):
                pixels[i, j] = colour
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


@dataclass
class ImageServer:
    port: int = 0
    images: list[bytes] = field(default_factory=lambda: [make_jpeg(seed) for seed in range(DISTINCT_IMAGES)])
    callbacks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    requests: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), path)
    in_flight: int = 0
    max_in_flight: int = 0
    over_cap: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def running_image_server() -> Iterator[ImageServer]:
    state = ImageServer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "image/jpeg") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with lock:
                state.requests += 1
                state.hits[self.path] += 1
                state.arrivals.append((time.monotonic(), self.path))
                seen = state.hits[self.path]
            parts = self.path.strip("/").split("/")
            try:
                n = int(parts[-1].split(".")[0])
            except ValueError:
                n = 0
            if parts[0] in ("flaky", "unavailable", "reset") and seen <= int(parts[2]):
                if parts[0] == "flaky":
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif parts[0] == "unavailable":
                    self._send(503, b"busy", "text/plain")
                else:  # an RST instead of an answer: SO_LINGER with a zero timeout, then close
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                return
            if parts[0] in ("flaky", "unavailable", "reset"):
                self._send(200, state.images[n % len(state.images)])
            elif parts[0] == "capped":
                self._capped(int(parts[1]), int(parts[2]), n)
            elif parts[0] == "img":
                self._send(200, state.images[n % len(state.images)])
            elif parts[0] == "slow":
                time.sleep(int(parts[1]) / 1000)
                self._send(200, state.images[n % len(state.images)])
            elif parts[0] == "corrupt":
                self._send(200, random.Random(n).randbytes(2000))
            else:
                self._send(404, b"not found", "text/plain")

        def _capped(self, cap: int, delay_ms: int, n: int) -> None:
            # Counted from the request's arrival until just before the answer is sent: inside the client's own
            # request, so two counted at once were two requests of the client's at once (a count ending after the
            # send could still be running when the client, answer in hand, has sent its next request).
            with lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                over = state.in_flight > cap
                state.over_cap += over
            try:
                time.sleep(delay_ms / 1000)
            finally:
                with lock:
                    state.in_flight -= 1
            if over:
                self._send(503, b"too many connections", "text/plain")
            else:
                self._send(200, state.images[n % len(state.images)])

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.callbacks.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self._send(200, b"{}", "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
