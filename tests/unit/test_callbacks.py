"""shared.callbacks: signatures, the retry schedule, and delivery to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from shared.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    callback_policy,
    deliver_callback,
    encode_payload,
    next_attempt_delay,
    sign,
    signature_headers,
    verify,
)
from shared.fetch import FetchErrorCode, FetchPolicy
from tests.unit.local_http import ConnectionLog, LocalServer

SECRET = "cb-secret-for-tests"
BODY = b'{"jobId":"job-1","state":"succeeded"}'
NOW = 1_763_930_000

LOOPBACK_OK = FetchPolicy(
    max_bytes=1_000_000, connect_timeout_seconds=1.0, read_timeout_seconds=1.0, max_redirects=3, allow_loopback=True
)
STRICT = replace(LOOPBACK_OK, allow_loopback=False)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def connections(server: LocalServer) -> Iterator[ConnectionLog]:
    server.state.received.clear()
    server.state.callback_status = 204
    with ConnectionLog().recording() as log:
        yield log
    assert log.hosts_connected() <= {"127.0.0.1"}, log.connects


# --- signatures ------------------------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == f"sha256={expected}"
    assert signature_headers(BODY, SECRET, NOW) == {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"sha256={expected}"}


def test_round_trip() -> None:
    headers = signature_headers(BODY, SECRET, NOW)
    assert verify(BODY, SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=NOW + 10)


@pytest.mark.parametrize(
    ("body", "secret", "timestamp", "signature", "now"),
    [
        (BODY + b" ", SECRET, str(NOW), sign(BODY, SECRET, NOW), NOW),  # tampered body
        (BODY.replace(b"succeeded", b"failed"), SECRET, str(NOW), sign(BODY, SECRET, NOW), NOW),
        (BODY, "another-secret", str(NOW), sign(BODY, SECRET, NOW), NOW),  # wrong secret
        (BODY, SECRET, str(NOW + 1), sign(BODY, SECRET, NOW), NOW),  # timestamp swapped: it is signed
        (BODY, SECRET, str(NOW), sign(BODY, SECRET, NOW), NOW + 301),  # too old
        (BODY, SECRET, str(NOW), sign(BODY, SECRET, NOW), NOW - 301),  # too far in the future
        (BODY, SECRET, str(NOW), sign(BODY, SECRET, NOW).upper(), NOW),
        (BODY, SECRET, str(NOW), sign(BODY, SECRET, NOW).removeprefix("sha256="), NOW),
        (BODY, SECRET, str(NOW), "", NOW),
        (BODY, SECRET, None, sign(BODY, SECRET, NOW), NOW),
        (BODY, SECRET, str(NOW), None, NOW),
        (BODY, SECRET, "-5", sign(BODY, SECRET, -5), -5),
        (BODY, SECRET, "17e8", sign(BODY, SECRET, NOW), NOW),
        (BODY, SECRET, "9" * 40, sign(BODY, SECRET, NOW), NOW),
    ],
)
def test_verify_refuses(body: bytes, secret: str, timestamp: str | None, signature: str | None, now: float) -> None:
    assert not verify(body, secret, timestamp, signature, now=now)


def test_tolerance_boundary() -> None:
    signature = sign(BODY, SECRET, NOW)
    assert verify(BODY, SECRET, str(NOW), signature, now=NOW + 300)
    assert not verify(BODY, SECRET, str(NOW), signature, now=NOW + 300.5)
    assert verify(BODY, SECRET, str(NOW), signature, now=NOW + 3600, tolerance=3600)


def test_verify_defaults_to_the_clock() -> None:
    timestamp = int(time.time())
    assert verify(BODY, SECRET, str(timestamp), sign(BODY, SECRET, timestamp))
    assert not verify(BODY, SECRET, str(timestamp - 600), sign(BODY, SECRET, timestamp - 600))


def test_docs_snippet_agrees_with_sign() -> None:
    """The receiver snippet in docs/callbacks.md, run as written, accepts what we send and refuses a tampered body."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "callbacks.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(snippet, "docs/callbacks.md", "exec"), namespace)
    is_valid = namespace["imagepipe_callback_is_valid"]
    assert callable(is_valid)
    headers = signature_headers(BODY, SECRET, int(time.time()))
    assert is_valid(BODY, headers, SECRET) is True
    assert is_valid(BODY + b"x", headers, SECRET) is False


# --- backoff ---------------------------------------------------------------------------------------------------------


def test_backoff_doubles_from_two_seconds_and_caps_at_five_minutes() -> None:
    exact = [next_attempt_delay(n, jitter=0.0) for n in range(1, 12)]
    assert exact == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert next_attempt_delay(10_000, jitter=0.0) == 300


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    rng = random.Random(7)
    delays = [next_attempt_delay(3, rng=rng) for _ in range(200)]
    assert all(8 * 0.8 <= d <= 8 for d in delays)
    assert len(set(delays)) > 100
    assert all(next_attempt_delay(20, rng=rng) <= 300 for _ in range(100))


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        next_attempt_delay(0)
    with pytest.raises(ValueError):
        next_attempt_delay(1, jitter=1.5)


# --- delivery --------------------------------------------------------------------------------------------------------


def test_deliver_callback_sends_signed_json(server: LocalServer, connections: ConnectionLog) -> None:
    payload = {"jobId": "job-1", "state": "succeeded", "counts": {"done": 2000, "failed": 0}, "note": "ü"}
    outcome = deliver_callback(server.url("/hook?token=SECRET-TOKEN"), payload, SECRET, LOOPBACK_OK)
    assert outcome.delivered and outcome.status_code == 204
    (received,) = server.state.received
    assert received.method == "POST"
    assert received.headers["content-type"] == "application/json"
    assert received.body == encode_payload(payload)
    assert json.loads(received.body) == payload
    assert verify(
        received.body,
        SECRET,
        received.headers[TIMESTAMP_HEADER.lower()],
        received.headers[SIGNATURE_HEADER.lower()],
    )
    assert not verify(
        received.body, "wrong", received.headers[TIMESTAMP_HEADER.lower()], received.headers[SIGNATURE_HEADER.lower()]
    )


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_non_2xx_is_a_retryable_failure(server: LocalServer, connections: ConnectionLog, status: int) -> None:
    server.state.callback_status = status
    outcome = deliver_callback(server.url("/hook"), {"jobId": "j"}, SECRET, LOOPBACK_OK)
    assert not outcome.delivered and outcome.retryable
    assert outcome.status_code == status
    assert str(status) in outcome.reason


def test_redirects_are_not_followed(server: LocalServer, connections: ConnectionLog) -> None:
    server.state.callback_status = 302
    outcome = deliver_callback(server.url("/hook"), {"jobId": "j"}, SECRET, LOOPBACK_OK)
    assert not outcome.delivered and outcome.retryable
    assert outcome.status_code == 302
    assert len(server.state.received) == 1


def test_refused_address_is_never_sent_to_and_not_retried(server: LocalServer, connections: ConnectionLog) -> None:
    for url in (server.url("/hook"), f"http://localhost:{server.port}/hook"):
        outcome = deliver_callback(url, {"jobId": "j"}, SECRET, STRICT)
        assert not outcome.delivered and not outcome.retryable
        assert outcome.error_code == FetchErrorCode.BLOCKED_ADDRESS
    for url in ("http://169.254.169.254/latest", "http://10.0.0.1/hook", "http://[fd00::1]/hook"):
        outcome = deliver_callback(url, {"jobId": "j"}, SECRET, LOOPBACK_OK)
        assert outcome.error_code == FetchErrorCode.BLOCKED_ADDRESS and not outcome.retryable
    assert connections.connects == []
    assert server.state.received == []


def test_host_name_resolving_to_a_refused_address_is_refused_at_send_time(connections: ConnectionLog) -> None:
    policy = replace(LOOPBACK_OK, resolver=lambda host, port: ["10.20.30.40"])
    outcome = deliver_callback("https://hooks.example.test/cb", {"jobId": "j"}, SECRET, policy)
    assert outcome.error_code == FetchErrorCode.BLOCKED_ADDRESS and not outcome.retryable
    assert connections.connects == []


def test_invalid_url_is_not_retried(connections: ConnectionLog) -> None:
    outcome = deliver_callback("ftp://example.com/cb", {"jobId": "j"}, SECRET, LOOPBACK_OK)
    assert outcome.error_code == FetchErrorCode.INVALID_URL and not outcome.retryable


def test_receiver_that_never_answers_times_out_retryably(server: LocalServer, connections: ConnectionLog) -> None:
    # A listening socket that nobody serves: the connect succeeds (the kernel accepts), no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        policy = replace(LOOPBACK_OK, read_timeout_seconds=0.3)
        started = time.monotonic()
        outcome = deliver_callback(f"http://127.0.0.1:{port}/cb", {"jobId": "j"}, SECRET, policy)
    assert not outcome.delivered and outcome.retryable
    assert outcome.error_code == FetchErrorCode.READ_TIMEOUT
    assert time.monotonic() - started < 2


def test_nothing_listening_is_retryable(connections: ConnectionLog) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = deliver_callback(f"http://127.0.0.1:{port}/cb", {"jobId": "j"}, SECRET, LOOPBACK_OK)
    assert outcome.error_code == FetchErrorCode.CONNECTION_ERROR and outcome.retryable


def test_callback_policy_shortens_timeouts_and_forbids_redirects() -> None:
    long = FetchPolicy(max_bytes=10, connect_timeout_seconds=30, read_timeout_seconds=60, max_redirects=5)
    short = callback_policy(long)
    assert (short.connect_timeout_seconds, short.read_timeout_seconds, short.max_redirects) == (5, 10, 0)
    assert short.allow_loopback is long.allow_loopback
