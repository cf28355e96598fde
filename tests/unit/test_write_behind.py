"""WriteBehind: image writes on a background thread, bounded, failures surfaced to the chunk."""

from __future__ import annotations

import threading
import time

import pytest

from shared.processing.write_behind import ImageOutcome, WriteBehind


def _write(index: int, log: list[int], delay: float = 0.0, fail: bool = False) -> ImageOutcome:
    time.sleep(delay)
    if fail:
        raise ConnectionError(f"store unavailable writing {index}")
    log.append(index)
    return index, None


def test_writes_run_off_the_calling_thread_in_order_and_drain_returns_every_outcome() -> None:
    writes, log, threads = WriteBehind(depth=2), list[int](), set[str]()

    def write(index: int) -> ImageOutcome:
        threads.add(threading.current_thread().name)
        return _write(index, log, delay=0.01)

    outcomes = []
    for index in range(6):
        outcomes += writes.submit(lambda i=index: write(i))  # type: ignore[misc]
    outcomes += writes.drain()

    assert sorted(outcomes) == [(i, None) for i in range(6)]
    assert log == list(range(6))
    assert threading.current_thread().name not in threads


def test_at_most_depth_writes_wait() -> None:
    writes, log, release = WriteBehind(depth=2), list[int](), threading.Event()
    blocked = [writes.submit(lambda: (release.wait(5), _write(0, log))[1])]
    blocked.append(writes.submit(lambda: _write(1, log)))
    assert blocked == [[], []]  # two queued: nothing finished, nothing waited for

    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    finished = writes.submit(lambda: _write(2, log))  # a third: waits for the oldest

    assert time.monotonic() - started >= 0.15
    assert finished[0] == (0, None)
    assert sorted(finished + writes.drain()) == [(0, None), (1, None), (2, None)]


def test_a_failed_write_fails_the_next_drain() -> None:
    writes, log = WriteBehind(depth=4), list[int]()
    writes.submit(lambda: _write(0, log))
    writes.submit(lambda: _write(1, log, fail=True))
    writes.submit(lambda: _write(2, log))

    with pytest.raises(ConnectionError, match="writing 1"):
        writes.drain()


def test_abandon_waits_for_writes_in_flight() -> None:
    writes, log = WriteBehind(depth=4), list[int]()
    writes.submit(lambda: _write(0, log, delay=0.2))
    writes.submit(lambda: _write(1, log, delay=0.0, fail=True))

    writes.abandon()

    assert log == [0], "the slow write finished before abandon returned; the failure was not raised"
    assert writes.drain() == []
