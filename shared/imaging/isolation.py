"""A hard time limit: process_image in a long-lived child process that is killed when an image overruns.

process_image's own budget is cooperative (see budget.py): checked between stages, with the pixel cap bounding
each stage. That cannot stop a decoder that hangs or crashes inside C code on a hostile file. This wrapper can:
the child is killed at budget + grace and restarted for the next image, and a crash (e.g. a segfault in a codec)
becomes an error result instead of taking the worker down. Measured cost (bench/imaging_bench.py): pickling the
bytes in and the result with its thumbnails out adds well under 1 ms per 12 MP JPEG; a fresh process per image
would add ~60 ms, which is why the child is reused. The child is started with "spawn": forking a process that runs
other threads (the Functions host's gRPC channel) can deadlock the child.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from shared.imaging.errors import ErrorCode
from shared.imaging.options import ImagingOptions
from shared.imaging.pipeline import process_image
from shared.imaging.results import ImageError, ImageResult

ImageProcessor = Callable[[bytes, ImagingOptions], ImageResult]
_STARTUP_TIMEOUT_SECONDS = 60.0  # a spawned child imports Pillow, OpenCV and numpy afresh: ~1-2 s


def _child_loop(connection: Connection, processor: ImageProcessor) -> None:
    connection.send("ready")  # imports are done: from here on, time spent is the image's
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        data, options = request
        connection.send(processor(data, options))


class IsolatedImagePipeline:
    """Runs one image at a time in a child process; thread-safe (calls are serialised)."""

    def __init__(self, grace_seconds: float = 2.0, processor: ImageProcessor = process_image) -> None:
        self._grace = grace_seconds
        self._processor = processor
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self.children_started = 0

    def process(self, data: bytes, options: ImagingOptions | None = None) -> ImageResult:
        options = options or ImagingOptions()
        with self._lock:
            connection = self._ensure_child()
            try:
                connection.send((data, options))
                if connection.poll(options.time_budget_seconds + self._grace):
                    result: ImageResult = connection.recv()
                    return result
            except (EOFError, OSError):
                exit_code = self._stop_child(kill=True)
                return _failed(
                    ErrorCode.PROCESSING_FAILED, f"the image process died while decoding (exit code {exit_code})", data
                )
            self._stop_child(kill=True)
            return _failed(
                ErrorCode.TIMEOUT,
                f"no result within the {options.time_budget_seconds:g} s budget (+{self._grace:g} s); "
                "the image process was killed",
                data,
            )

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (None before the first image and after `close`)."""
        process = self._process
        return process.pid if process is not None else None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(OSError):  # the child may already be gone
                    self._connection.send(None)
            self._stop_child(kill=False)

    def __enter__(self) -> IsolatedImagePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_child(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._connection is not None:
            return self._connection
        self._stop_child(kill=True)  # a child that died on its own
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_child_loop, args=(child_end, self._processor), name="image-pipeline", daemon=True
        )
        process.start()
        self.children_started += 1
        child_end.close()
        self._process, self._connection = process, parent_end
        if not (parent_end.poll(_STARTUP_TIMEOUT_SECONDS) and parent_end.recv() == "ready"):
            self._stop_child(kill=True)
            raise RuntimeError(f"the image process did not start within {_STARTUP_TIMEOUT_SECONDS} s")
        return parent_end

    def _stop_child(self, kill: bool) -> int | None:
        """Stops the child this object started (by its own handle, never by name); returns its exit code."""
        process, connection = self._process, self._connection
        self._process, self._connection = None, None
        if connection is not None:
            connection.close()
        if process is None:
            return None
        if not kill:
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
        return process.exitcode


def _failed(code: ErrorCode, message: str, data: bytes) -> ImageResult:
    return ImageResult(ok=False, byte_size=len(data), error=ImageError(code=code, message=message))
