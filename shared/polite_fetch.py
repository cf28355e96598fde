"""Polite fetching: few requests at a time to one host, a request rate per host shared by every worker, and
retries of what is transient, with jittered back-off, inside the image's deadline and the chunk's time budget.

* Concurrency: at most FETCH_HOST_CONCURRENCY requests in flight to one host (host:port) from one worker process
  (a semaphore per host; the slot is held for one attempt and let go while waiting to retry).
* Rate: a token bucket per host (`host:<host>:<port>` in the Cosmos `limits` container) shared by every worker
  process on every instance (shared.limits.bucket). A process takes up to FETCH_HOST_RATE_LEASE tokens in one
  etag-guarded write and spends them locally for at most LEASE_SECONDS (unspent ones lapse, so a lease never turns
  into a later burst). The shared bucket is charged for every token handed out, so the host never sees more than
  its rate plus the burst plus one lease per process; the cost is one Cosmos read and one write per lease, plus a
  read per refused take while a process waits for its turn.
* Retries: an origin's 429/503 with Retry-After is waited out (and the host is given a rest by every thread of this
  process meanwhile); 408, 429, 502, 503, 504 without it, connection errors and timeouts are retried with
  exponential back-off and jitter. A wait that would end after the image's deadline or the chunk's budget is not
  started: the last error stands. Everything else (404 and other 4xx, SSRF refusals, DNS failures, too large, bad
  encodings, redirect loops) is final at once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx

from shared.fetch import FetchError, FetchErrorCode, FetchPolicy, FetchResult, fetch_image
from shared.limits.bucket import BucketLimits, SharedBuckets
from shared.limits.versioned import VersionedStore
from shared.messages import host_bucket_key

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

LEASE_SECONDS = 1.0
HOST_BUCKET_TTL_SECONDS = 3600
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
TRANSIENT_CODES = frozenset(
    {FetchErrorCode.CONNECTION_ERROR, FetchErrorCode.CONNECT_TIMEOUT, FetchErrorCode.READ_TIMEOUT}
)


@dataclass(frozen=True)
class PolitePolicy:
    host_concurrency: int = 4
    host_rate: float = 50.0  # per second, all workers together; 0 = none
    host_burst: int = 50
    rate_lease: int = 10
    max_attempts: int = 4
    retry_base_seconds: float = 0.5
    retry_max_delay_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PolitePolicy:
        return cls(
            host_concurrency=settings.fetch_host_concurrency,
            host_rate=settings.fetch_host_rate_per_second,
            host_burst=settings.fetch_host_burst,
            rate_lease=settings.fetch_host_rate_lease,
            max_attempts=settings.fetch_max_attempts,
            retry_base_seconds=settings.fetch_retry_base_seconds,
            retry_max_delay_seconds=settings.fetch_retry_max_delay_seconds,
        )


@dataclass(frozen=True)
class PoliteOutcome:
    """A fetch's result or its last error, and how many requests it took."""

    result: FetchResult | None
    error: FetchError | None
    attempts: int


def host_key(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host.lower()}:{port}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(error: FetchError, attempt: int, polite: PolitePolicy, rng: random.Random) -> tuple[float, bool] | None:
    """How long to wait before another attempt after `error` on attempt `attempt` (1-based), and whether the origin
    asked for it (Retry-After); None when the error is final."""
    if error.code == FetchErrorCode.HTTP_ERROR:
        if error.status not in RETRYABLE_STATUSES:
            return None
        asked = parse_retry_after(error.retry_after)
        if asked is not None:
            # A little jitter on top, so workers told the same thing do not all come back at once.
            return asked + rng.uniform(0.0, min(1.0, 0.1 * asked + 0.05)), True
    elif error.code not in TRANSIENT_CODES:
        return None
    step = min(polite.retry_max_delay_seconds, polite.retry_base_seconds * 2 ** (attempt - 1))
    return step / 2 + rng.uniform(0.0, step / 2), False  # "equal jitter": never less than half the step


@dataclass
class _Lease:
    tokens: int
    expires: float


class HostGate:
    """This process's per-host semaphores, its leases of the hosts' shared rate tokens, and hosts' rest periods."""

    def __init__(
        self,
        polite: PolitePolicy,
        store: VersionedStore | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._polite = polite
        self._buckets = SharedBuckets(store, ttl_seconds=HOST_BUCKET_TTL_SECONDS) if store is not None else None
        self._limits = BucketLimits(rate=polite.host_rate, burst=float(polite.host_burst))
        self._sleep = sleep
        self._lock = threading.Lock()
        # A host's slot lives while some thread holds or waits for it, so a job touching a million hosts leaves
        # nothing behind; leases and rests are dropped once lapsed (see _forget_lapsed).
        self._slots: dict[str, tuple[threading.BoundedSemaphore, int]] = {}
        self._leases: dict[str, _Lease] = {}
        self._rest_until: dict[str, float] = {}

    @contextlib.contextmanager
    def turn(self, host: str, deadline: float) -> Iterator[None]:
        """One request's turn at `host`: a concurrency slot, then a rate token. FetchError `host_busy` if the turn
        cannot come before `deadline` (time.monotonic())."""
        self._wait_out_rest(host, deadline)
        with self._lock:
            slot, users = self._slots.get(host) or (threading.BoundedSemaphore(self._polite.host_concurrency), 0)
            self._slots[host] = (slot, users + 1)
        try:
            if not slot.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise _busy(host, "no free connection slot")
            try:
                self._take_token(host, deadline)
                yield
            finally:
                slot.release()
        finally:
            with self._lock:
                users = self._slots[host][1] - 1
                if users:
                    self._slots[host] = (slot, users)
                else:
                    del self._slots[host]
                    self._forget_lapsed()

    def _forget_lapsed(self) -> None:
        """Drops lapsed leases and rests once there are many (called with the lock held)."""
        if len(self._leases) + len(self._rest_until) < 1024:
            return
        now = time.monotonic()
        self._leases = {h: lease for h, lease in self._leases.items() if lease.expires > now}
        self._rest_until = {h: until for h, until in self._rest_until.items() if until > now}

    def rest(self, host: str, seconds: float) -> None:
        """The origin asked for a pause (Retry-After): no thread of this process starts a request to it before."""
        until = time.monotonic() + seconds
        with self._lock:
            self._rest_until[host] = max(until, self._rest_until.get(host, 0.0))

    def _wait_out_rest(self, host: str, deadline: float) -> None:
        with self._lock:
            until = self._rest_until.get(host, 0.0)
        wait = until - time.monotonic()
        if wait > 0:
            if until > deadline:
                raise _busy(host, "the host asked for a pause that ends after the image's deadline")
            self._sleep(wait)

    def _take_token(self, host: str, deadline: float) -> None:
        if self._buckets is None or self._limits.unlimited:
            return
        while True:
            now = time.monotonic()
            with self._lock:
                lease = self._leases.get(host)
                if lease is not None and lease.tokens > 0 and lease.expires > now:
                    lease.tokens -= 1
                    return
            try:
                took = self._buckets.take(host_bucket_key(host), self._limits, want=self._polite.rate_lease)
            except Exception:  # Cosmos unavailable or contended: fetch anyway (the per-process cap still holds)
                log.warning("host rate bucket for %s unavailable; fetching without it", host, exc_info=True)
                return
            if took.allowed:
                with self._lock:
                    self._leases[host] = _Lease(took.granted - 1, time.monotonic() + LEASE_SECONDS)
                return
            wait = max(0.01, took.retry_after)
            if time.monotonic() + wait > deadline:
                raise _busy(host, "the host's request rate leaves no turn before the image's deadline")
            self._sleep(wait)


def _busy(host: str, why: str) -> FetchError:
    return FetchError(FetchErrorCode.HOST_BUSY, f"{why} ({host})")


def polite_fetch(
    url: str,
    policy: FetchPolicy,
    polite: PolitePolicy,
    gate: HostGate,
    *,
    client: httpx.Client | None = None,
    retry_deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> PoliteOutcome:
    """Fetches `url` politely (see the module docstring). The image's deadline is the fetch policy's total time from
    now; `retry_deadline` (time.monotonic(), e.g. the chunk's budget) bounds the waits between attempts too."""
    rng = rng or random.Random()
    deadline = time.monotonic() + policy.deadline_seconds
    wait_limit = min(deadline, retry_deadline if retry_deadline is not None else deadline)
    host = host_key(url)
    attempts = 0
    while True:
        try:
            if host is None:  # fetch_image rejects it with the precise reason
                attempts += 1
                return PoliteOutcome(fetch_image(url, policy, client=client, deadline=deadline), None, attempts)
            with gate.turn(host, deadline):
                attempts += 1
                return PoliteOutcome(fetch_image(url, policy, client=client, deadline=deadline), None, attempts)
        except FetchError as error:
            if error.code == FetchErrorCode.HOST_BUSY or attempts >= polite.max_attempts:
                return PoliteOutcome(None, error, attempts)
            delay = retry_delay(error, attempts, polite, rng)
            if delay is not None and delay[1] and host is not None:
                gate.rest(host, delay[0])  # the origin asked: whether or not this image waits, the others do
            if delay is None or time.monotonic() + delay[0] > wait_limit:
                return PoliteOutcome(None, error, attempts)
            log.info("fetch %s: %s; attempt %d in %.2f s", error.url or "?", error.code.value, attempts + 1, delay[0])
            sleep(delay[0])


_gates: dict[tuple[PolitePolicy, int], HostGate] = {}
_gates_lock = threading.Lock()


def process_gate(polite: PolitePolicy, store: VersionedStore) -> HostGate:
    """The process's one gate for these settings and this store (every invocation thread shares it)."""
    key = (polite, id(store))
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = HostGate(polite, store)
        return gate
