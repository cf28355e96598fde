"""Throughput and ETA of a job: honest figures for any job size (pure logic, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.models import (
    CallbackDocument,
    CallbackStatus,
    ChunkDocument,
    DuplicatesDocument,
    ExpansionDocument,
    ImageCounts,
    JobDocument,
    JobOptions,
    JobState,
    Lane,
)
from shared.progress import MIN_RATE_INTERVAL_SECONDS, JobChange, apply_progress, fold_changes
from shared.views import callback_payload

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(total_images: int | None, total_chunks: int | None, **extra: object) -> JobDocument:
    return JobDocument(
        id="j", jobId="j", tenantId="t", lane=Lane.HIGH, concurrency=1, source="urls", options=JobOptions(),
        total_images=total_images, total_chunks=total_chunks, created_at=T0, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def chunk(n: int, started: float, finished: float | None, ok: int, images: int | None = None) -> ChunkDocument:
    return ChunkDocument(
        id=f"j.chunk.{n}", jobId="j", chunk=n, state="done" if finished is not None else "running",
        images=images or ok, counts=ImageCounts(succeeded=ok), started_at=T0 + timedelta(seconds=started),
        finished_at=T0 + timedelta(seconds=finished) if finished is not None else None,
    )  # fmt: skip


def roll(j: JobDocument, changes: list[JobChange], at_seconds: float) -> bool:
    return apply_progress(j, T0 + timedelta(seconds=at_seconds), fold_changes(j, changes).newly_finished)


def test_a_one_image_job_whose_start_and_end_are_the_same_instant_has_no_rate() -> None:
    j = job(1, 1)
    assert roll(j, [chunk(0, started=0.0, finished=0.0, ok=1)], at_seconds=0.5)
    assert j.state is JobState.SUCCEEDED
    assert j.images_per_second is None, "1 image in 0 s is not 1,000-2,000 images/s"
    assert j.eta_seconds == 0.0


def test_an_ended_jobs_rate_is_final_whatever_tick_re_reads_it() -> None:
    j = job(20, 2, callback_url="https://example.test/hook")
    assert roll(j, [chunk(0, 0.0, 4.0, ok=10), chunk(1, 1.0, 5.0, ok=10)], at_seconds=6.0)
    assert j.images_per_second == 4.0  # 20 images from the first start (0 s) to the last end (5 s)
    first = callback_payload(j)["job"]["images_per_second"]
    # Later ticks fold the duplicates summary and the callback's delivery state, long after the end.
    duplicates = DuplicatesDocument(id="j.duplicates", jobId="j", end=0, groups=0, images=0)
    assert not roll(j, [duplicates], at_seconds=50.0)
    callback = CallbackDocument(id="j.callback", jobId="j", end=0, status=CallbackStatus(state="delivered"))
    assert not roll(j, [callback], at_seconds=3600.0)
    assert j.images_per_second == 4.0 and j.eta_seconds == 0.0
    assert callback_payload(j)["job"]["images_per_second"] == first == 4.0


def test_no_rate_and_no_eta_from_a_too_short_interval_while_running() -> None:
    j = job(1000, 10)
    roll(j, [chunk(0, 0.0, None, ok=3, images=100)], at_seconds=MIN_RATE_INTERVAL_SECONDS / 2)
    assert j.state is JobState.RUNNING
    assert j.images_per_second is None and j.eta_seconds is None


def test_eta_is_remaining_at_the_measured_rate_for_small_and_large_jobs() -> None:
    small = job(10, 1)
    roll(small, [chunk(0, 0.0, None, ok=4, images=10)], at_seconds=2.0)
    assert small.images_per_second == 2.0 and small.eta_seconds == 3.0  # 6 left at 2/s
    large = job(10_000_000, 20_000)
    roll(large, [chunk(0, 0.0, 100.0, ok=500)], at_seconds=100.0)
    assert large.images_per_second == 5.0 and large.eta_seconds == round(9_999_500 / 5.0, 1)


def test_eta_of_a_very_slow_job_does_not_divide_by_a_rounded_zero_rate() -> None:
    j = job(10, 1)
    roll(j, [chunk(0, 0.0, None, ok=1, images=10)], at_seconds=10_000.0)  # 0.0001 images/s rounds to 0.0
    assert j.images_per_second == 0.0
    assert j.eta_seconds == 90_000.0


def test_eta_is_unknown_while_a_manifest_job_does_not_know_its_total() -> None:
    j = job(None, None, manifest_blob="t/manifest.txt")
    roll(j, [chunk(0, 0.0, 5.0, ok=500)], at_seconds=10.0)
    assert j.images_per_second == 50.0 and j.eta_seconds is None, "0 s left of an unknown total is not honest"
    expansion = ExpansionDocument(id="j.expansion", jobId="j", done=True, images=1000, chunks=2)
    roll(j, [expansion, chunk(1, 6.0, None, ok=100, images=500)], at_seconds=12.0)
    assert j.images_per_second == 50.0 and j.eta_seconds == 8.0  # 400 left at 600 images in 12 s

