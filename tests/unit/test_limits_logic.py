"""Pure logic of the limits: token bucket arithmetic over a versioned store, retry classification and back-off,
Retry-After parsing. (The store here is an in-memory stand-in; tests/core/test_limits_store.py runs the same
buckets on the Cosmos emulator.)"""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.adapters.memory_job_store import InMemoryJobStore
from shared.errors import QuotaExceeded
from shared.fetch import FetchError, FetchErrorCode
from shared.limits.bucket import BucketLimits, SharedBuckets
from shared.limits.quotas import day, reserve
from shared.limits.versioned import Contended, update
from shared.messages import chunk_document_id, usage_key
from shared.models import ChunkDocument, ImageCounts, JobDocument, JobOptions, Lane, utcnow
from shared.polite_fetch import PolitePolicy, host_key, parse_retry_after, retry_delay


class MemoryStore:
    def __init__(self) -> None:
        self.docs: dict[str, tuple[dict[str, Any], int]] = {}
        self.writes = 0
        self.conflicts_to_inject = 0

    def read(self, key: str) -> tuple[dict[str, Any], str] | None:
        found = self.docs.get(key)
        return None if found is None else (dict(found[0]), str(found[1]))

    def create(self, key: str, body: dict[str, Any]) -> bool:
        if key in self.docs:
            return False
        self.writes += 1
        self.docs[key] = (dict(body), 1)
        return True

    def replace(self, key: str, body: dict[str, Any], etag: str) -> bool:
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            doc, version = self.docs[key]
            self.docs[key] = (doc, version + 1)  # someone else wrote meanwhile
            return False
        if str(self.docs[key][1]) != etag:
            return False
        self.writes += 1
        self.docs[key] = (dict(body), self.docs[key][1] + 1)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_grants_its_burst_then_its_rate() -> None:
    store, clock = MemoryStore(), Clock()
    buckets = SharedBuckets(store, clock=clock)
    limits = BucketLimits(rate=2.0, burst=5.0)
    granted = [buckets.take("api:t1", limits).allowed for _ in range(7)]
    assert granted == [True] * 5 + [False] * 2
    refused = buckets.take("api:t1", limits)
    assert refused.retry_after == pytest.approx(0.5)
    writes = store.writes
    clock.now += 1.0  # two tokens come back
    assert [buckets.take("api:t1", limits).allowed for _ in range(3)] == [True, True, False]
    assert store.writes == writes + 2, "a refused take writes nothing"
    clock.now += 100.0
    assert buckets.peek("api:t1", limits) == 5.0, "never more than the burst"


def test_buckets_are_separate_per_key() -> None:
    buckets = SharedBuckets(MemoryStore(), clock=Clock())
    limits = BucketLimits(rate=1.0, burst=1.0)
    assert buckets.take("api:a", limits).allowed
    assert not buckets.take("api:a", limits).allowed
    assert buckets.take("api:b", limits).allowed


def test_a_lease_takes_what_is_there_up_to_the_ask() -> None:
    buckets = SharedBuckets(MemoryStore(), clock=Clock())
    limits = BucketLimits(rate=1.0, burst=7.0)
    assert buckets.take("host:x", limits, want=5).granted == 5
    assert buckets.take("host:x", limits, want=5).granted == 2
    assert buckets.take("host:x", limits, want=5).granted == 0


def test_a_conflict_is_retried_on_fresh_state_and_gives_up_eventually() -> None:
    store = MemoryStore()
    buckets = SharedBuckets(store, clock=Clock())
    limits = BucketLimits(rate=1.0, burst=3.0)
    buckets.take("k", limits)
    store.conflicts_to_inject = 2
    assert buckets.take("k", limits).allowed
    store.conflicts_to_inject = 100
    with pytest.raises(Contended):
        update(store, "k", lambda doc: ({"tokens": 0}, None), attempts=3)


def _one_image_jobs(store: InMemoryJobStore, count: int, finished: int) -> list[str]:
    """`count` one-image jobs of tenant t1 as submitted; the chunks of the first `finished` are done."""
    ids = [f"j{index:04d}" for index in range(count)]
    for index, job_id in enumerate(ids):
        store.create_job(
            JobDocument(
                id=job_id, jobId=job_id, tenantId="t1", lane=Lane("standard"), concurrency=1, source="upload",
                options=JobOptions(), created_at=utcnow(), total_images=1, total_chunks=1,
            )
        )  # fmt: skip
        if index < finished:
            store.upsert_chunk(
                ChunkDocument(
                    id=chunk_document_id(job_id, 0), jobId=job_id, chunk=0, state="done", images=1,
                    counts=ImageCounts(succeeded=1), started_at=utcnow(), finished_at=utcnow(),
                )
            )  # fmt: skip
    return ids


def _full_usage(limits: MemoryStore, active: list[str]) -> None:
    limits.create(usage_key("t1"), {"type": "usage", "active_jobs": active, "day": day(utcnow()), "images_today": 0})


def test_a_full_active_jobs_list_is_looked_up_in_two_reads_once_whatever_the_races() -> None:
    jobs, limits = InMemoryJobStore(), MemoryStore()
    ids = _one_image_jobs(jobs, 100, finished=10)
    _full_usage(limits, ids)
    limits.conflicts_to_inject = 3  # three other submissions wrote the usage document meanwhile
    before = jobs.requests

    reserve(limits, jobs, (100, 0), "t1", "jnew", 1)

    assert jobs.requests - before == 2, "the job documents and the chunk records, each in one read"
    found = limits.read(usage_key("t1"))
    assert found is not None and found[0]["active_jobs"] == [*ids[10:], "jnew"], "the finished ten dropped"


def test_a_full_list_of_unfinished_jobs_is_refused_after_two_reads() -> None:
    jobs, limits = InMemoryJobStore(), MemoryStore()
    ids = _one_image_jobs(jobs, 100, finished=0)
    _full_usage(limits, ids)
    before = jobs.requests

    with pytest.raises(QuotaExceeded) as refused:
        reserve(limits, jobs, (100, 0), "t1", "jnew", 1)

    assert refused.value.details["quota"] == "active_jobs" and refused.value.details["used"] == 100
    assert jobs.requests - before == 2
    assert refused.value.details["retry_after"] == 2, "one-image jobs end in seconds: come back soon"


def test_at_the_cap_with_only_large_jobs_the_hint_is_to_come_back_later() -> None:
    jobs, limits = InMemoryJobStore(), MemoryStore()
    ids = _one_image_jobs(jobs, 3, finished=0)
    for job_id in ids:
        assert jobs.patch_job(job_id, {"total_images": 5000, "total_chunks": 10})
    _full_usage(limits, ids)

    with pytest.raises(QuotaExceeded) as refused:
        reserve(limits, jobs, (3, 0), "t1", "jnew", 1)

    assert refused.value.details["retry_after"] == 30


def test_zero_rate_means_unlimited_and_costs_nothing() -> None:
    store = MemoryStore()
    took = SharedBuckets(store).take("api:t", BucketLimits(rate=0.0, burst=1.0))
    assert took.allowed and store.docs == {}


def _error(code: FetchErrorCode, status: int | None = None, retry_after: str | None = None) -> FetchError:
    return FetchError(code, "x", status=status, retry_after=retry_after)


@pytest.mark.parametrize(
    "error",
    [
        _error(FetchErrorCode.HTTP_ERROR, 404),
        _error(FetchErrorCode.HTTP_ERROR, 403),
        _error(FetchErrorCode.HTTP_ERROR, 500),
        _error(FetchErrorCode.BLOCKED_ADDRESS),
        _error(FetchErrorCode.INVALID_URL),
        _error(FetchErrorCode.DNS_FAILURE),
        _error(FetchErrorCode.TOO_LARGE),
        _error(FetchErrorCode.UNSUPPORTED_ENCODING),
        _error(FetchErrorCode.TOO_MANY_REDIRECTS),
    ],
)
def test_permanent_errors_are_never_retried(error: FetchError) -> None:
    assert retry_delay(error, 1, PolitePolicy(), random.Random(1)) is None


@pytest.mark.parametrize(
    "error",
    [
        _error(FetchErrorCode.HTTP_ERROR, 502),
        _error(FetchErrorCode.HTTP_ERROR, 503),
        _error(FetchErrorCode.HTTP_ERROR, 504),
        _error(FetchErrorCode.HTTP_ERROR, 429),
        _error(FetchErrorCode.CONNECTION_ERROR),
        _error(FetchErrorCode.CONNECT_TIMEOUT),
        _error(FetchErrorCode.READ_TIMEOUT),
    ],
)
def test_transient_errors_back_off_exponentially_with_jitter(error: FetchError) -> None:
    polite = PolitePolicy(retry_base_seconds=0.5, retry_max_delay_seconds=3.0)
    rng = random.Random(7)
    for attempt, step in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        delays = [retry_delay(error, attempt, polite, rng) for _ in range(50)]
        assert all(d is not None and not d[1] and step / 2 <= d[0] <= step for d in delays), (attempt, delays[:3])
        assert len({d[0] for d in delays if d}) > 1, "jittered"


def test_retry_after_is_honoured_with_a_little_jitter() -> None:
    error = _error(FetchErrorCode.HTTP_ERROR, 429, "2")
    delay = retry_delay(error, 1, PolitePolicy(), random.Random(3))
    assert delay is not None and delay[1] and 2.0 <= delay[0] <= 2.3


def test_retry_after_forms() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Sat, 05 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sat, 05 Dec 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("-1") is None


def test_host_keys_name_host_and_port() -> None:
    assert host_key("https://Images.Example.com/a.jpg") == "images.example.com:443"
    assert host_key("http://127.0.0.1:8080/a.jpg?x=1") == "127.0.0.1:8080"
    assert host_key("not a url") is None


def test_openapi_documents_usage_and_the_429s() -> None:
    from shared.openapi import openapi_document

    spec = openapi_document()
    assert spec["paths"]["/usage"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UsageReport"
    }
    submit = spec["paths"]["/jobs"]["post"]["responses"]["429"]
    assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(submit["headers"])
    assert "quota_exceeded" in submit["description"] and "rate_limited" in submit["description"]
    assert all(
        "429" in op["responses"]
        for path in spec["paths"].values()
        for op in path.values()
        if "responses" in op and op.get("security") != []
    )
