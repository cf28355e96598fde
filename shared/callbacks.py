"""Signed job-completion callbacks: signing, verifying, one delivery attempt, and the retry schedule.

Wire format (also in docs/callbacks.md, for receivers):

    POST <callback url>
    Content-Type: application/json
    X-Imagepipe-Timestamp: <unix seconds, decimal>
    X-Imagepipe-Signature: sha256=<lower-case hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

The timestamp is inside the signed bytes, so a captured callback cannot be replayed later with a fresh timestamp;
receivers reject timestamps more than 5 minutes from their clock and compare signatures in constant time.
The body is the exact bytes sent (compact JSON); receivers must verify the raw body before parsing it.

`deliver_callback` makes ONE attempt through the SSRF guard of `shared.fetch` (the connect is pinned to vetted
addresses; a refused address is never sent to) and never follows redirects. The status timer keeps the attempt count
and the next attempt time in the job document and asks `next_attempt_delay` how long to wait.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx

from shared.fetch import (
    FetchError,
    FetchErrorCode,
    FetchPolicy,
    check_public_url,
    guarded_client,
    guarded_stream,
    redact_url,
)

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Imagepipe-Timestamp"
SIGNATURE_HEADER = "X-Imagepipe-Signature"
SIGNATURE_SCHEME = "sha256"
DEFAULT_TOLERANCE_SECONDS = 300.0

# A callback is small and the receiver only has to acknowledge it: short timeouts keep one slow receiver from
# holding the status timer.
CALLBACK_CONNECT_TIMEOUT_SECONDS = 5.0
CALLBACK_READ_TIMEOUT_SECONDS = 10.0
_RESPONSE_BYTES_READ = 4096  # of the receiver's answer, for the reason text only

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0

# Failures that no retry can fix: the URL itself is refused.
_PERMANENT_CODES = frozenset({FetchErrorCode.INVALID_URL, FetchErrorCode.BLOCKED_ADDRESS})


def _signed_bytes(body: bytes, timestamp: int) -> bytes:
    return f"{timestamp}.".encode() + body


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The `X-Imagepipe-Signature` value for `body` sent at `timestamp` (unix seconds): `sha256=<hex>`."""
    digest = hmac.new(secret.encode(), _signed_bytes(body, timestamp), hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def signature_headers(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """Both callback headers for `body` sent at `timestamp`."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(body, secret, timestamp)}


def verify(
    body: bytes,
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True if the headers sign `body` with `secret` and the timestamp is within `tolerance` seconds of `now`.

    Timestamps too far in the future are refused like old ones (a clock skew of up to `tolerance` is accepted).
    """
    if not timestamp_header or not signature_header:
        return False
    text = timestamp_header.strip()
    if not text.isdigit() or len(text) > 12:  # unix seconds; bounded so int() stays cheap
        return False
    timestamp = int(text)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(body, secret, timestamp)
    return hmac.compare_digest(expected.encode(), signature_header.strip().encode())


@dataclass(frozen=True)
class CallbackOutcome:
    """The result of one delivery attempt.

    `delivered`: the receiver answered 2xx. Otherwise `retryable` says whether another attempt could help (False only
    when the URL is invalid or its address is refused), `reason` says why in a line fit for the job document
    (no query strings), `status_code` is the receiver's HTTP status if it answered, `error_code` the `FetchErrorCode`
    value when the request itself failed.
    """

    delivered: bool
    retryable: bool
    reason: str
    status_code: int | None = None
    error_code: str | None = None


def callback_policy(policy: FetchPolicy) -> FetchPolicy:
    """The fetch policy for callbacks: the same guard and loopback switch, short timeouts, no redirects."""
    return replace(
        policy,
        connect_timeout_seconds=min(policy.connect_timeout_seconds, CALLBACK_CONNECT_TIMEOUT_SECONDS),
        read_timeout_seconds=min(policy.read_timeout_seconds, CALLBACK_READ_TIMEOUT_SECONDS),
        max_redirects=0,
        total_timeout_seconds=None,
    )


def encode_payload(payload: dict[str, Any]) -> bytes:
    """The exact body bytes sent: compact JSON with sorted keys."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def deliver_callback(
    url: str, payload: dict[str, Any], secret: str, policy: FetchPolicy, *, now: float | None = None
) -> CallbackOutcome:
    """POST `payload` as signed JSON to `url`: ONE attempt through the SSRF guard, no redirects followed."""
    body = encode_payload(payload)
    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": policy.user_agent,
        **signature_headers(body, secret, timestamp),
    }
    short = callback_policy(policy)
    where = redact_url(url)
    try:
        check_public_url(url, allow_loopback=short.allow_loopback)
        with (
            guarded_client(short) as client,
            guarded_stream(client, "POST", url, short, headers=headers, content=body) as response,
        ):
            status = response.status_code
            snippet = _read_some(response)
    except FetchError as exc:
        retryable = exc.code not in _PERMANENT_CODES
        logger.info("callback to %s failed: %s (retryable=%s)", where, exc.code.value, retryable)
        return CallbackOutcome(
            delivered=False, retryable=retryable, reason=f"{exc.code.value}: {exc.message}", error_code=exc.code.value
        )
    if 200 <= status < 300:
        return CallbackOutcome(delivered=True, retryable=False, reason=f"HTTP {status}", status_code=status)
    reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if 300 <= status < 400:
        reason = f"HTTP {status}: redirects are not followed for callbacks"
    logger.info("callback to %s answered %d", where, status)
    return CallbackOutcome(delivered=False, retryable=True, reason=reason, status_code=status)


def _read_some(response: httpx.Response) -> str:
    """Up to a few kB of the receiver's answer, as one short line; errors while reading are ignored."""
    data = bytearray()
    try:
        for chunk in response.iter_raw():
            data += chunk
            if len(data) >= _RESPONSE_BYTES_READ:
                break
    except httpx.HTTPError:
        pass
    text = bytes(data[:_RESPONSE_BYTES_READ]).decode("utf-8", errors="replace")
    return " ".join(text.split())[:200]


def next_attempt_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first attempt failed).

    Exponential: 2, 4, 8, 16, ... capped at 300 s, then lowered by up to `jitter` (a fraction) at random so that
    callbacks that failed together do not retry together. The result is never above the cap.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a fraction in [0, 1)")
    exponent = min(attempt - 1, 32)  # 2**32 x base is far past any cap; keeps the float finite
    delay = min(cap, base * 2.0**exponent)
    spread = (rng or random).random() * jitter
    return delay * (1.0 - spread)
