"""Per-thread resources: one per thread, and a close that really closes what every thread built.

The first tests check PerThread's bookkeeping on a plain recording resource; the others close the app's own
per-thread resources (the image pipeline's child process, the guarded HTTP client, the image writer thread) and look
at the real thing: the child has exited, the client is closed, the writer takes no more work."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from PIL import Image

from shared import thread_resources
from shared.config import Settings
from shared.fetch import FetchPolicy
from shared.models import JobOptions
from shared.processing import imaging_step, write_behind
from shared.services import chunks
from shared.thread_resources import PerThread

T = TypeVar("T")


class _Resource:
    def __init__(self) -> None:
        self.thread = threading.current_thread().name
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def _in_thread(work: Callable[[], T]) -> T:
    """Runs `work` on a new thread that ends before this returns."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def _in_live_threads(count: int, work: Callable[[], T]) -> tuple[list[T], threading.Event]:
    """Runs `work` once on each of `count` threads that stay alive until the returned event is set."""
    results: list[T] = []
    done, release = threading.Barrier(count + 1), threading.Event()

    def run() -> None:
        results.append(work())
        done.wait(10)
        release.wait(10)

    for _ in range(count):
        threading.Thread(target=run, daemon=True).start()
    done.wait(30)
    return results, release


def test_each_thread_gets_its_own_and_keeps_it() -> None:
    per_thread = PerThread("test", _Resource, _Resource.close)
    mine = per_thread.get()
    assert per_thread.get() is mine
    others, release = _in_live_threads(2, per_thread.get)
    try:
        assert len({id(r) for r in [mine, *others]}) == 3
        assert per_thread.open_count() == 3
    finally:
        release.set()
        per_thread.close()


def test_close_closes_every_threads_resource_and_the_next_get_builds_a_new_one() -> None:
    per_thread = PerThread("test", _Resource, _Resource.close)
    mine = per_thread.get()
    others, release = _in_live_threads(2, per_thread.get)
    try:
        assert per_thread.close() == 3
        assert [r.closed for r in [mine, *others]] == [1, 1, 1]
        assert per_thread.open_count() == 0
        fresh = per_thread.get()
        assert fresh is not mine and fresh.closed == 0
        assert per_thread.close() == 1 and mine.closed == 1  # closed once, never twice
    finally:
        release.set()


def test_the_resource_of_a_thread_that_ended_is_closed_when_the_next_one_is_built() -> None:
    per_thread = PerThread("test", _Resource, _Resource.close)
    ended = _in_thread(per_thread.get)
    assert ended.closed == 0 and per_thread.open_count() == 1
    mine = per_thread.get()
    assert ended.closed == 1
    assert per_thread.open_count() == 1
    per_thread.close()
    assert mine.closed == 1


def test_a_resource_that_fails_to_close_does_not_keep_the_others_open() -> None:
    def close(resource: _Resource) -> None:
        resource.close()
        if resource.thread == threading.current_thread().name:
            raise OSError("already gone")

    per_thread = PerThread("test", _Resource, close)
    mine = per_thread.get()
    others, release = _in_live_threads(2, per_thread.get)
    try:
        assert per_thread.close() == 3
        assert [r.closed for r in [mine, *others]] == [1, 1, 1]
    finally:
        release.set()


def test_close_all_closes_every_per_thread_resource_of_the_process() -> None:
    first = PerThread("first", _Resource, _Resource.close)
    second = PerThread("second", _Resource, _Resource.close)
    resources = [first.get(), second.get()]
    assert thread_resources.close_all() >= 2
    assert [r.closed for r in resources] == [1, 1]


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def _alive(pid: int) -> bool:
    """Whether the process still exists (a child that exited and was reaped by its join has no /proc entry)."""
    return os.path.exists(f"/proc/{pid}")


@pytest.mark.slow
def test_closing_the_image_pipelines_ends_every_threads_child_process() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "ServiceBusConnection": "Endpoint=sb://unused;",
            "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
        }
    )

    def analyse_one() -> int | None:
        result = imaging_step.analyse(_jpeg(), JobOptions(analyses=["thumbnails"]), settings)
        assert result.ok
        return imaging_step.pipelines.get().child_pid

    pids, release = _in_live_threads(2, analyse_one)
    try:
        assert len(pids) == 2 and all(pid is not None and _alive(pid) for pid in pids)
        assert imaging_step.pipelines.close() == 2
        assert not any(pid is not None and _alive(pid) for pid in pids)
    finally:
        release.set()


def test_closing_the_fetch_clients_closes_every_threads_http_client() -> None:
    policy = _policy()
    clients, release = _in_live_threads(2, lambda: chunks._fetch_client(policy))
    try:
        assert len(clients) == 2 and not any(c.is_closed for c in clients)
        chunks.fetch_clients.close()
        assert all(c.is_closed for c in clients)
    finally:
        release.set()


def test_a_new_fetch_policy_closes_the_threads_client_for_the_old_one() -> None:
    old = chunks._fetch_client(_policy())
    new = chunks._fetch_client(_policy(max_bytes=1234))
    assert old.is_closed and not new.is_closed and chunks._fetch_client(_policy(max_bytes=1234)) is new
    chunks.fetch_clients.close()
    assert new.is_closed


def test_closing_the_image_writers_stops_every_threads_writer() -> None:
    def writer() -> ThreadPoolExecutor:
        writes = write_behind.WriteBehind()
        writes.submit(lambda: (0, None))
        writes.drain()
        return write_behind.writer_threads.get()

    executors, release = _in_live_threads(2, writer)
    try:
        assert len({id(e) for e in executors}) == 2
        write_behind.writer_threads.close()
        for executor in executors:
            with pytest.raises(RuntimeError, match="shutdown"):
                executor.submit(lambda: None)
    finally:
        release.set()


def _policy(max_bytes: int = 1 << 20) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=max_bytes,
        connect_timeout_seconds=1.0,
        read_timeout_seconds=1.0,
        max_redirects=0,
        allow_loopback=True,
    )
