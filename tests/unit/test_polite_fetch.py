"""Polite fetching against a real HTTP server on 127.0.0.1: retries of what is transient (and only that), the
origin's Retry-After, the attempts counted, and the per-host concurrency cap across threads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.fetch import FetchErrorCode, FetchPolicy, guarded_client
from shared.polite_fetch import HostGate, PoliteOutcome, PolitePolicy, polite_fetch
from tests.core.image_server import ImageServer, running_image_server

POLICY = FetchPolicy(
    max_bytes=1_000_000, connect_timeout_seconds=2, read_timeout_seconds=5, max_redirects=2, allow_loopback=True
)
POLITE = PolitePolicy(host_concurrency=2, host_rate=0, max_attempts=4, retry_base_seconds=0.1)


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with running_image_server() as running:
        yield running


def _fetch(server: ImageServer, path: str, gate: HostGate | None = None, **kwargs: object) -> PoliteOutcome:
    with guarded_client(POLICY) as client:
        return polite_fetch(server.url(path), POLICY, POLITE, gate or HostGate(POLITE, None), client=client, **kwargs)  # type: ignore[arg-type]


def test_429_with_retry_after_twice_then_ok_takes_three_attempts(server: ImageServer) -> None:
    path = f"/flaky/{uuid.uuid4().hex}/2/1.jpg"
    started = time.monotonic()
    got = _fetch(server, path)
    assert got.error is None and got.result is not None and got.result.content == server.images[1]
    assert got.attempts == 3 and server.hits[path] == 3
    assert time.monotonic() - started >= 2.0, "each Retry-After: 1 was waited out"


@pytest.mark.parametrize("kind", ["unavailable", "reset"])
def test_a_transient_failure_is_retried(server: ImageServer, kind: str) -> None:
    path = f"/{kind}/{uuid.uuid4().hex}/1/2.jpg"
    got = _fetch(server, path)
    assert got.error is None and got.attempts == 2 and server.hits[path] == 2


def test_a_404_is_fetched_once(server: ImageServer) -> None:
    path = f"/missing/{uuid.uuid4().hex}.jpg"
    got = _fetch(server, path)
    assert got.error is not None and got.error.status == 404 and got.attempts == 1
    assert server.hits[path] == 1


def test_a_blocked_address_is_never_retried(server: ImageServer) -> None:
    strict = FetchPolicy(max_bytes=1000, connect_timeout_seconds=1, read_timeout_seconds=1, max_redirects=0)
    with guarded_client(strict) as client:
        got = polite_fetch(server.url("/img/1.jpg"), strict, POLITE, HostGate(POLITE, None), client=client)
    assert got.error is not None and got.error.code == FetchErrorCode.BLOCKED_ADDRESS and got.attempts == 1


def test_attempts_stop_at_the_maximum(server: ImageServer) -> None:
    path = f"/unavailable/{uuid.uuid4().hex}/99/1.jpg"
    got = _fetch(server, path)
    assert got.error is not None and got.error.status == 503 and got.attempts == POLITE.max_attempts == 4


def test_no_wait_starts_that_would_end_after_the_retry_deadline(server: ImageServer) -> None:
    path = f"/flaky/{uuid.uuid4().hex}/2/1.jpg"
    started = time.monotonic()
    got = _fetch(server, path, retry_deadline=time.monotonic() + 0.5)  # Retry-After: 1 does not fit
    assert got.error is not None and got.error.status == 429 and got.attempts == 1
    assert time.monotonic() - started < 0.5


def test_one_process_never_has_more_than_the_cap_in_flight_to_a_host(server: ImageServer) -> None:
    gate = HostGate(POLITE, None)
    server.max_in_flight = server.over_cap = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda n: _fetch(server, f"/capped/2/40/{n}.jpg", gate), range(24)))
    assert all(o.error is None and o.attempts == 1 for o in outcomes)
    assert server.max_in_flight == 2 and server.over_cap == 0
    assert gate._slots == {}, "a host's slot is gone once nobody holds or waits for it"


def test_without_the_gate_the_same_load_exceeds_the_cap(server: ImageServer) -> None:
    """The check above can fail: eight threads at once do overrun an origin that allows two."""
    loose = PolitePolicy(host_concurrency=8, host_rate=0, max_attempts=1)
    gate = HostGate(loose, None)
    server.max_in_flight = server.over_cap = 0

    def fetch(n: int) -> PoliteOutcome:
        with guarded_client(POLICY) as client:
            return polite_fetch(server.url(f"/capped/2/40/{n}.jpg"), POLICY, loose, gate, client=client)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fetch, range(24)))
    assert server.max_in_flight > 2 and server.over_cap > 0
