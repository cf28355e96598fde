"""Pure logic: planning (chunks, lanes, sessions), folding chunk records into jobs, manifest line spans, settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import ConfigError, Lane, Settings, Tier
from shared.manifests import LineSpan, iter_line_spans, manifest_lines
from shared.messages import session_id
from shared.models import (
    DEAD_LETTER_SAMPLE,
    CallbackDocument,
    CallbackStatus,
    ChunkDocument,
    DeadLetterDocument,
    DuplicatesDocument,
    ExpansionDocument,
    ImageCounts,
    ImageRef,
    JobDocument,
    JobOptions,
    JobRequest,
    JobState,
    ref_problem,
)
from shared.planning import (
    MAX_CHUNK_MESSAGE_BYTES,
    chunk_count,
    concurrency_for,
    encode,
    inline_chunk_size,
    inline_chunks,
    lane_for,
)
from shared.progress import Bitmap, JobChange, apply_progress, fold_changes
from shared.services.expand import ChunkRun, plan_step
from shared.views import job_status

BASE_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ServiceBusConnection": "Endpoint=sb://localhost:5672;SharedAccessKeyName=k;SharedAccessKey=v;",
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def settings(**extra: str) -> Settings:
    return Settings.from_env({**BASE_ENV, **extra})


# --- settings ------------------------------------------------------------------------------------


def test_settings_defaults_and_tier_mapping() -> None:
    s = settings()
    assert s.chunk_size == 500 and s.thumbnail_size_list == (150, 300, 600)
    assert lane_for(Tier.NEW, s) is Lane.HIGH and lane_for(Tier.FREE, s) is Lane.BULK
    assert s.job_concurrency_by_tier == {Tier.NEW: 4, Tier.ENTERPRISE: 8, Tier.FREE: 2}


def test_settings_name_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"CHUNK_SIZE": "0", "THUMBNAIL_SIZES": "abc"})
    text = str(error.value)
    assert "COSMOS_ENDPOINT" in text and "CHUNK_SIZE" in text and "THUMBNAIL_SIZES" in text


def test_insecure_tls_is_refused_for_a_real_endpoint() -> None:
    with pytest.raises(ConfigError, match="only allowed"):
        settings(COSMOS_ENDPOINT="https://acct.documents.azure.com:443/", COSMOS_EMULATOR_INSECURE_TLS="true")
    assert settings(COSMOS_EMULATOR_INSECURE_TLS="true").cosmos_emulator_insecure_tls


def test_tier_tables_must_cover_every_tier() -> None:
    with pytest.raises(ConfigError, match="missing entries for free"):
        settings(TIER_JOB_CONCURRENCY="new=1,enterprise=2")
    with pytest.raises(ConfigError):
        settings(TIER_LANES="new=high,enterprise=standard,free=nowhere")


# --- planning ------------------------------------------------------------------------------------


def test_chunks_cover_every_image_once_in_order() -> None:
    refs = [ImageRef(index=i, kind="url", ref=f"https://x/{i}.jpg") for i in range(1234)]
    chunks = list(inline_chunks("j1", "t1", Lane.HIGH, JobOptions(), refs, 500))
    assert [c.chunk for c in chunks] == [0, 1, 2] and chunk_count(1234, 500) == 3
    assert [r.index for c in chunks for r in c.images or []] == list(range(1234))


def test_long_references_shrink_chunks_to_fit_a_message() -> None:
    refs = [ImageRef(index=i, kind="url", ref="https://x/" + "a" * 2000) for i in range(500)]
    size = inline_chunk_size(refs, 500)
    assert size < 500
    biggest = max(len(encode(c)) for c in inline_chunks("j", "t", Lane.HIGH, JobOptions(), refs, size))
    assert biggest <= MAX_CHUNK_MESSAGE_BYTES


def test_sessions_spread_a_job_over_its_cap() -> None:
    s = settings()
    assert concurrency_for(Tier.ENTERPRISE, s) == 8 and concurrency_for(Tier.ENTERPRISE, s, total_chunks=3) == 3
    assert {session_id("j", c, 3) for c in range(30)} == {"j.0", "j.1", "j.2"}


def test_job_request_needs_exactly_one_source_and_sane_refs() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JobRequest.model_validate({"urls": ["https://x/a"], "manifest": "m.txt"})
    with pytest.raises(ValueError, match=r"blobs\.1\n.*relative blob name"):
        JobRequest.model_validate({"blobs": ["ok.jpg", "../other-tenant/x.jpg"]})
    assert JobRequest.model_validate({"blobs": ["a/b.jpg"]}).inline_refs == [
        ImageRef(index=0, kind="blob", ref="a/b.jpg")
    ]


# --- manifest line spans -------------------------------------------------------------------------


def test_line_spans_survive_any_block_boundary() -> None:
    data = b"a\n\nbb\r\n  \nccc\nlast-without-newline"
    for block in (1, 2, 3, 7, 100):
        blocks = iter(data[i : i + block] for i in range(0, len(data), block))
        spans = list(iter_line_spans(blocks, 0))
        assert [manifest_lines(data[s.start : s.end]) for s in spans] == [
            ["a"], ["bb"], ["ccc"], ["last-without-newline"]
        ]
    spans = list(iter_line_spans(iter([data[3:]]), 3))  # resuming mid-file keeps absolute offsets
    assert data[spans[0].start : spans[0].end].strip() == b"bb"


# --- folding chunks into a job -------------------------------------------------------------------


def job(total_chunks: int = 3, **extra: object) -> JobDocument:
    return JobDocument(
        id="j", jobId="j", tenantId="t", lane=Lane.HIGH, concurrency=2, source="urls", options=JobOptions(),
        total_images=total_chunks * 10, total_chunks=total_chunks, created_at=T0, **extra,  # type: ignore[arg-type]
    )


def chunk(
    n: int, state: str = "done", ok: int = 10, failed: int = 0, codes: dict[str, int] | None = None
) -> ChunkDocument:
    return ChunkDocument(
        id=f"j.chunk.{n}", jobId="j", chunk=n, state=state, images=10,  # type: ignore[arg-type]
        counts=ImageCounts(succeeded=ok, failed=failed), error_codes=codes or {}, started_at=T0 + timedelta(seconds=n),
        finished_at=T0 + timedelta(seconds=10 + n),
    )


def dead_letter(n: int, replayed: bool = False) -> DeadLetterDocument:
    return DeadLetterDocument(
        id=f"j.deadletter.{n}", jobId="j", chunk=n, lane=Lane.HIGH, reason="MaxDeliveryCountExceeded",
        description="", dead_lettered_at=T0, replayed=replayed,
    )  # fmt: skip


def roll(j: JobDocument, changes: list[JobChange], at: datetime = T0 + timedelta(seconds=30)) -> bool:
    """One roll-up of a job: fold its changes, then decide its progress (as the status timer does)."""
    return apply_progress(j, at, fold_changes(j, changes).newly_finished)


def test_bitmap() -> None:
    bitmap = Bitmap()
    for index in (0, 9, 20000):
        bitmap.add(index)
    again = Bitmap(bitmap.encode())
    assert 9 in again and 20000 in again and 1 not in again
    assert len(again) == 3 and 0 not in Bitmap("")
    again.discard(20000)
    assert list(again.members()) == [0, 9] and len(again.encode()) < 8, "discarding trims the encoding"


def test_a_finished_chunk_is_counted_once_however_often_it_is_read() -> None:
    j = job()
    assert fold_changes(j, [chunk(0), chunk(1, ok=8, failed=2, codes={"corrupt": 2})]).newly_finished == [0, 1]
    assert fold_changes(j, [chunk(0), chunk(1), chunk(0)]).newly_finished == []  # the overlap re-reads them
    assert j.finished_counts == ImageCounts(succeeded=18, failed=2)
    assert j.finished_error_codes == {"corrupt": 2}


def test_state_machine_runs_to_completed_with_errors() -> None:
    j = job()
    assert not roll(j, [], T0)
    assert j.state is JobState.ACCEPTED
    assert not roll(j, [chunk(0, state="running", ok=4)], T0 + timedelta(seconds=2))
    assert j.state is JobState.RUNNING and j.counts.succeeded == 4 and j.eta_seconds and j.eta_seconds > 0
    assert not roll(j, [chunk(0), chunk(1), chunk(2, state="running", ok=5)], T0 + timedelta(seconds=15))
    assert j.counts == ImageCounts(succeeded=25) and set(j.running) == {"2"}
    assert roll(j, [chunk(2, ok=9, failed=1, codes={"timeout": 1})], T0 + timedelta(seconds=20))
    assert j.state is JobState.COMPLETED_WITH_ERRORS and j.counts == ImageCounts(succeeded=29, failed=1)
    assert j.finished_at == T0 + timedelta(seconds=12), "the job ended when its last chunk did, not at the tick"
    assert j.eta_seconds == 0.0 and j.running == {}


def test_dead_letters_end_a_job_and_a_replay_reopens_it() -> None:
    j = job(total_chunks=2)
    assert roll(j, [chunk(0), dead_letter(1)])
    assert j.state is JobState.COMPLETED_WITH_ERRORS and j.dead_lettered[0].reason == "MaxDeliveryCountExceeded"
    assert job_status(j).dead_lettered_count == 1
    assert not roll(j, [dead_letter(1, replayed=True)])
    assert j.state is JobState.RUNNING and j.finished_at is None
    assert roll(j, [chunk(1)]) and j.state is JobState.SUCCEEDED


def test_a_replayed_chunk_that_finished_before_any_roll_up_saw_the_replay_still_ends_the_job_again() -> None:
    j = job(total_chunks=1)
    assert roll(j, [dead_letter(0)]) and j.state is JobState.FAILED
    # The replay and the chunk's processing both happen between two roll-ups.
    assert roll(j, [dead_letter(0, replayed=True), chunk(0)]) and j.state is JobState.SUCCEEDED
    assert not roll(j, [dead_letter(0, replayed=True), chunk(0)]), "ends once"


def test_cancel_and_all_failed_end_states() -> None:
    j = job(total_chunks=1, cancel_requested=True)
    assert roll(j, [chunk(0, ok=3)]) and j.state is JobState.CANCELLED
    j = job(total_chunks=1)
    assert roll(j, [chunk(0, ok=0, failed=10)]) and j.state is JobState.FAILED


def test_a_manifest_job_waits_for_its_expansion() -> None:
    j = job(total_chunks=1, manifest_blob="t/m.txt")
    j.total_images = j.total_chunks = None  # unknown until the expansion ends
    assert not roll(j, [chunk(0)]) and j.state is JobState.RUNNING
    expansion = ExpansionDocument(id="j.expansion", jobId="j", done=True, images=10, chunks=1)
    assert roll(j, [expansion]) and j.state is JobState.SUCCEEDED and j.total_images == 10


def test_a_one_image_job_reports_no_rate_from_a_zero_length_interval() -> None:
    j = job(total_chunks=1)
    one = chunk(0, ok=1)
    one.finished_at = one.started_at + timedelta(milliseconds=40)
    assert roll(j, [one])
    assert j.images_per_second is None and j.eta_seconds == 0.0, "1 image in 40 ms is not 25 images/s of anything"
    j = job(total_chunks=2)
    assert roll(j, [chunk(0), chunk(1)])
    assert j.images_per_second == round(20 / 11, 3), "20 images from the first start (T0) to the last end (T0+11)"


def test_duplicates_and_callback_states_belong_to_the_latest_end() -> None:
    j = job(total_chunks=1)
    assert roll(j, [chunk(0)])
    j.ends = 1
    stale = DuplicatesDocument(id="j.duplicates", jobId="j", end=0, groups=9, images=18)
    assert not fold_changes(j, [stale]).duplicates_ready and j.duplicates.state == "none"
    ready = DuplicatesDocument(id="j.duplicates", jobId="j", end=1, groups=2, images=5)
    assert fold_changes(j, [ready]).duplicates_ready
    assert j.duplicates.groups == 2 and job_status(j).duplicates_url == "/api/jobs/j/duplicates"
    assert not fold_changes(j, [ready]).duplicates_ready, "folded once"
    fold_changes(j, [CallbackDocument(id="j.callback", jobId="j", end=1, status=CallbackStatus(state="delivered"))])
    assert j.callback.state == "delivered"


def test_the_job_document_of_a_ten_million_image_job_stays_small() -> None:
    chunks = 20_000  # 10,000,000 images in chunks of 500
    j = job(total_chunks=chunks)
    j.total_images = 10_000_000
    j.options = JobOptions(thumbnail_sizes=[64, 128, 256, 512, 1024, 2048])
    codes = {"corrupt": 60, "timeout": 40}
    changes: list[JobChange] = [chunk(n, ok=400, failed=100, codes=codes) for n in range(chunks)]
    changes += [dead_letter(n) for n in range(0, chunks, 7)]  # thousands of dead letters
    changes += [chunk(n, state="running", ok=3) for n in range(8)]
    roll(j, changes)
    size = len(json.dumps(j.to_store()))
    assert size < 64 * 1024, size
    assert len(Bitmap(j.finished_chunks)) == chunks and len(j.dead_lettered) == DEAD_LETTER_SAMPLE
    assert job_status(j).dead_lettered_count == len(range(0, chunks, 7))


def test_an_expansion_step_cuts_runs_of_chunk_size_and_stops_at_its_batch_or_the_image_limit() -> None:
    data = b"".join(f"https://x/{n}.jpg\n".encode() for n in range(10))
    line = len(b"https://x/0.jpg\n")

    def spans(offset: int = 0) -> Iterator[LineSpan]:
        return iter_line_spans(iter([data[offset:]]), offset)

    whole = plan_step(spans(), 0, 0, chunk_size=4, max_chunks=10, max_images=100)
    assert whole.runs == [
        ChunkRun(0, 4 * line, 0, 4), ChunkRun(4 * line, 8 * line, 4, 4), ChunkRun(8 * line, 10 * line, 8, 2)
    ]  # fmt: skip
    assert whole.reached_end and not whole.limit_reached and whole.next_index == 10

    first = plan_step(spans(), 0, 0, chunk_size=4, max_chunks=1, max_images=100)
    assert [r.images for r in first.runs] == [4] and not first.reached_end and first.offset == 4 * line
    rest = plan_step(spans(first.offset), first.offset, first.next_index, chunk_size=4, max_chunks=10, max_images=100)
    assert [r.first_index for r in rest.runs] == [4, 8] and rest.reached_end

    capped = plan_step(spans(), 0, 0, chunk_size=4, max_chunks=10, max_images=6)
    assert [r.images for r in capped.runs] == [4, 2] and capped.limit_reached and capped.next_index == 6


def test_a_reference_is_one_clean_manifest_line() -> None:
    assert ref_problem("trip/day 1/a photo.jpg", "blob") is None
    for bad in ("a\nb.jpg", "a\rb.jpg", " a.jpg", "a.jpg ", "a\tb.jpg", "a\x00.jpg"):
        assert ref_problem(bad, "blob") is not None, repr(bad)
    assert ref_problem("https://x/a b.jpg", "url") is None and ref_problem("https://x/a.jpg\n", "url") is not None
