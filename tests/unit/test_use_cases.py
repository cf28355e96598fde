"""The use cases on the in-memory stand-ins (no emulator, no network): submit, expand, process a chunk (its
time-budget continuation and its cancel exit included) and roll up. The same use cases run end to end on the
emulators in tests/core; here each exit is driven on purpose and looked at directly.

Images are real: tiny PNGs made with Pillow, stored as blobs in the in-memory blob store and analysed by the real
imaging pipeline (its isolated child process).
"""

from __future__ import annotations

import io
import json
import types
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from shared.adapters.memory_blobs import InMemoryBlobStore
from shared.adapters.memory_bus import InMemoryMessageBus
from shared.adapters.memory_job_store import InMemoryJobStore
from shared.adapters.memory_limits_store import InMemoryLimitsStore
from shared.adapters.servicebus import OutgoingMessage
from shared.config import EXPAND_QUEUE, FINISH_QUEUE, MANIFESTS_CONTAINER, ORIGINALS_CONTAINER, Lane, Settings
from shared.dedup import InMemoryDuplicateIndexStore
from shared.dedup.service import DuplicateService
from shared.messages import upload_record_name
from shared.models import ChunkMessage, ExpandMessage, JobDocument, JobState, TenantDocument, utcnow
from shared.services import chunks
from shared.services.chunks import process_chunk
from shared.services.context import AppContext
from shared.services.expand import expand_manifest
from shared.services.jobs import submit_job
from shared.services.rollup import roll_up_status

# Connection settings are required but never used: every adapter here is an in-memory stand-in.
BASE_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ServiceBusConnection": "Endpoint=sb://unused.invalid/;SharedAccessKeyName=x;SharedAccessKey=y",
    "COSMOS_ENDPOINT": "https://unused.invalid:8081/",
    "CHUNK_SIZE": "3",
    "EXPAND_BATCH_CHUNKS": "2",
    "TIER_JOB_CONCURRENCY": "new=2,enterprise=2,free=1",
    "TIER_MAX_ACTIVE_JOBS": "new=0,enterprise=0,free=0",  # the quotas have their own tests (tests/core/test_limits.py)
}
HIGH = Lane("high")
FAST_ANALYSES = ["thumbnails", "hashes"]  # real pipeline work, without the face detector's model load


class Stack:
    """The context the use cases run in, and the stand-ins behind it for the test to look into."""

    def __init__(self, **settings: str) -> None:
        self.store = InMemoryJobStore()
        self.blobs = InMemoryBlobStore(stream_block_bytes=7)  # small blocks: a line crosses block edges
        self.bus = InMemoryMessageBus()
        self.limits = InMemoryLimitsStore()
        self.ctx = AppContext(
            settings=Settings.from_env({**BASE_ENV, **settings}),
            store=self.store,
            blobs=self.blobs,
            bus=self.bus,
            dedup=DuplicateService(InMemoryDuplicateIndexStore()),
            limits=self.limits,
        )
        self.tenant = TenantDocument(
            id="tunit", tenantId="tunit", name="unit", tier="new", keyHash="x", callbackSecret="y", created_at=utcnow()
        )
        self.store.create_tenant(self.tenant)

    def submit(self, body: dict[str, Any]) -> str:
        return submit_job(self.ctx, self.tenant, json.dumps(body).encode()).job_id

    def job(self, job_id: str) -> JobDocument:
        found = self.store.get_job(job_id)
        assert found is not None
        return found[0]

    def original(self, name: str, shade: int) -> str:
        """Stores a tiny PNG in the tenant's originals folder; returns the blob reference a job names."""
        self.blobs.write(ORIGINALS_CONTAINER, f"{self.tenant.tenant_id}/{name}", _png(shade), "image/png")
        return name


def _png(shade: int) -> bytes:
    image = Image.new("RGB", (40, 30), (shade, 255 - shade, (shade * 7) % 256))
    for x in range(0, 40, 4):  # some structure, so the perceptual hashes differ between shades
        image.putpixel((x, (x + shade) % 30), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _refusal(call: Callable[[], object]) -> tuple[str, Any]:
    """The code and details a use case refused with (whatever error type carries them to the edge)."""
    with pytest.raises(Exception) as refused:
        call()
    return refused.value.code, refused.value.details  # type: ignore[attr-defined]


def _chunks(bus: InMemoryMessageBus, queue: str) -> list[ChunkMessage]:
    return [ChunkMessage.model_validate_json(m.body) for m in bus.messages(queue)]


@pytest.fixture
def stack() -> Stack:
    return Stack()


# --- submit ------------------------------------------------------------------------------------------------------


def test_an_inline_job_becomes_chunk_messages_on_its_lane_one_session_per_shard(stack: Stack) -> None:
    job_id = stack.submit({"urls": [f"https://images.example.com/{i}.jpg" for i in range(7)]})

    job = stack.job(job_id)
    assert (job.state, job.total_images, job.total_chunks, job.lane) == (JobState.ACCEPTED, 7, 3, HIGH)
    sent = stack.bus.messages(HIGH.queue_name)
    assert [m.message_id for m in sent] == [f"{job_id}.0", f"{job_id}.1", f"{job_id}.2"]
    assert [m.session_id for m in sent] == [f"{job_id}.0", f"{job_id}.1", f"{job_id}.0"]  # 2 shards for tier new
    messages = _chunks(stack.bus, HIGH.queue_name)
    assert [[r.index for r in m.images or []] for m in messages] == [[0, 1, 2], [3, 4, 5], [6]]
    assert not any(m.express for m in messages)
    assert stack.bus.messages(HIGH.express_queue_name) == []
    assert stack.store.page_job_entries("tunit", None, None, None, 10, None) == ([job_id], None)


def test_a_one_chunk_job_takes_the_express_queue_without_a_session(stack: Stack) -> None:
    job_id = stack.submit({"blobs": ["a.png", "b.png"]})

    (sent,) = stack.bus.messages(HIGH.express_queue_name)
    assert (sent.message_id, sent.session_id) == (f"{job_id}.0", None)
    assert ChunkMessage.model_validate_json(sent.body).express
    assert stack.bus.messages(HIGH.queue_name) == []


def test_a_manifest_job_is_one_expand_message_and_an_open_expansion(stack: Stack) -> None:
    stack.blobs.write(MANIFESTS_CONTAINER, "tunit/list.txt", b"a.png\nb.png\n", "text/plain")

    job_id = stack.submit({"manifest": "list.txt"})

    (sent,) = stack.bus.messages(EXPAND_QUEUE)
    assert sent.message_id == f"{job_id}.expand.0"
    expand = ExpandMessage.model_validate_json(sent.body)
    assert (expand.job_id, expand.manifest_blob, expand.byte_offset) == (job_id, "tunit/list.txt", 0)
    expansion = stack.store.get_expansion(job_id)
    assert expansion is not None and not expansion.done
    assert stack.job(job_id).manifest_blob == "tunit/list.txt"


def test_a_missing_manifest_is_refused_before_any_job_exists(stack: Stack) -> None:
    code, _ = _refusal(lambda: stack.submit({"manifest": "absent.txt"}))
    assert code == "manifest_not_found"
    assert stack.store.page_job_entries("tunit", None, None, None, 10, None) == ([], None)
    assert stack.bus.messages(EXPAND_QUEUE) == []


def test_an_upload_with_files_missing_is_refused_naming_them(stack: Stack) -> None:
    upload = "u" + "0" * 24
    files = [f"uploads/{upload}/{name}" for name in ("one.png", "two.png", "three.png")]
    stack.blobs.write(MANIFESTS_CONTAINER, upload_record_name("tunit", upload), "\n".join(files).encode(), "text/plain")
    stack.original(files[1], 10)

    code, details = _refusal(lambda: stack.submit({"upload": upload}))
    assert (code, details) == ("upload_incomplete", {"missing": ["one.png", "three.png"], "count": 2})
    assert stack.bus.messages(HIGH.express_queue_name) == []

    stack.original(files[0], 20)
    stack.original(files[2], 30)
    job_id = stack.submit({"upload": upload})
    (chunk,) = _chunks(stack.bus, HIGH.express_queue_name)
    assert chunk.job_id == job_id and [r.ref for r in chunk.images or []] == files


# --- expand ------------------------------------------------------------------------------------------------------


def _run_expansion(stack: Stack) -> list[int]:
    """Delivers expand messages until none is left; returns the chunks each step sent."""
    per_step = []
    while pending := stack.bus.take(EXPAND_QUEUE):
        for message in pending:
            before = len(stack.bus.messages(HIGH.queue_name))
            expand_manifest(stack.ctx, ExpandMessage.model_validate_json(message.body))
            per_step.append(len(stack.bus.messages(HIGH.queue_name)) - before)
    return per_step


def test_a_manifest_expands_in_bounded_steps_into_chunks_of_byte_ranges(stack: Stack) -> None:
    lines = [f"img{i}.png" for i in range(14)]
    manifest = ("\n".join(lines[:5]) + "\n\n  \n" + "\n".join(lines[5:])).encode()  # blank lines are not images
    stack.blobs.write(MANIFESTS_CONTAINER, "tunit/big.txt", manifest, "text/plain")
    job_id = stack.submit({"manifest": "big.txt"})

    # 14 images, 3 a chunk: 5 chunks, at most 2 a step (EXPAND_BATCH_CHUNKS).
    assert _run_expansion(stack) == [2, 2, 1]

    messages = _chunks(stack.bus, HIGH.queue_name)
    assert [m.chunk for m in messages] == [0, 1, 2, 3, 4]
    refs = []
    for message in messages:
        assert message.manifest_range is not None and message.images is None
        refs.append([r.ref for r in chunks.chunk_images(stack.ctx, message)])
    assert refs == [lines[0:3], lines[3:6], lines[6:9], lines[9:12], lines[12:14]]
    assert [r.index for r in chunks.chunk_images(stack.ctx, messages[1])] == [3, 4, 5]
    expansion = stack.store.get_expansion(job_id)
    assert expansion is not None
    assert (expansion.done, expansion.images, expansion.chunks, expansion.steps) == (True, 14, 5, 3)


def test_a_redelivered_expand_step_resends_identical_messages_that_duplicate_detection_drops(stack: Stack) -> None:
    stack.blobs.write(MANIFESTS_CONTAINER, "tunit/m.txt", b"".join(b"i%d.png\n" % i for i in range(9)), "text/plain")
    job_id = stack.submit({"manifest": "m.txt"})
    (first,) = stack.bus.take(EXPAND_QUEUE)
    step = ExpandMessage.model_validate_json(first.body)

    expand_manifest(stack.ctx, step)
    expand_manifest(stack.ctx, step)  # the same step delivered again (a lost lock)

    assert [m.message_id for m in stack.bus.messages(HIGH.queue_name)] == [f"{job_id}.0", f"{job_id}.1"]
    assert [m.message_id for m in stack.bus.messages(EXPAND_QUEUE)] == [f"{job_id}.expand.1"]
    assert _run_expansion(stack) == [1]
    expansion = stack.store.get_expansion(job_id)
    assert expansion is not None and (expansion.done, expansion.chunks, expansion.images) == (True, 3, 9)


def test_a_manifest_of_one_chunk_takes_the_express_queue(stack: Stack) -> None:
    stack.blobs.write(MANIFESTS_CONTAINER, "tunit/one.txt", b"a.png\nb.png", "text/plain")  # no final newline
    stack.submit({"manifest": "one.txt"})

    assert _run_expansion(stack) == [0]  # nothing on the session queue
    (chunk,) = _chunks(stack.bus, HIGH.express_queue_name)
    assert chunk.express and [r.ref for r in chunks.chunk_images(stack.ctx, chunk)] == ["a.png", "b.png"]


# --- process a chunk ---------------------------------------------------------------------------------------------


def _one_chunk_job(stack: Stack, images: int) -> tuple[str, OutgoingMessage]:
    """A job of `images` stored originals in one chunk (CHUNK_SIZE allowing), and its chunk message, taken."""
    refs = [stack.original(f"p{i}.png", 20 * i) for i in range(images)]
    job_id = stack.submit({"blobs": refs, "options": {"analyses": FAST_ANALYSES, "thumbnail_sizes": [16]}})
    (message,) = stack.bus.take(HIGH.express_queue_name)
    return job_id, message


class SlowReads:
    """A monotonic clock for the chunk worker that advances one second whenever an original is read: each image
    takes a second of the chunk's time budget, whatever this machine's speed (only the chunk worker's clock is
    replaced; the pipeline's own budget runs on real time)."""

    def __init__(self, blobs: InMemoryBlobStore) -> None:
        self.now = 1000.0
        self.reads: list[str] = []
        read: Callable[[str, str, int], bytes] = blobs.read

        def slow_read(container: str, name: str, max_bytes: int) -> bytes:
            if container == ORIGINALS_CONTAINER:
                self.reads.append(name.rpartition("/")[2])
                self.now += 1.0
            return read(container, name, max_bytes)

        blobs.read = slow_read  # type: ignore[method-assign]

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def slow_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Stack], SlowReads]:
    """Gives a stack's chunk worker the SlowReads clock (for this test only)."""

    def install(stack: Stack) -> SlowReads:
        clock = SlowReads(stack.blobs)
        monkeypatch.setattr(chunks, "time", types.SimpleNamespace(monotonic=clock.monotonic))
        return clock

    return install


def test_a_chunk_records_every_image_and_finishes(stack: Stack) -> None:
    job_id, message = _one_chunk_job(stack, 3)

    outcome = process_chunk(stack.ctx, message.body)

    assert (outcome.finished, outcome.cancelled, outcome.processed) == (True, False, 3)
    assert (outcome.counts.succeeded, outcome.counts.failed) == (3, 0)
    chunk = stack.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.state == "done" and chunk.counts.succeeded == 3
    items, _ = stack.store.page_images(job_id, 10, None)
    assert [(i["index"], i["ok"]) for i in items] == [(0, True), (1, True), (2, True)]
    named = {t["blob"] for i in items for t in i["thumbnails"]}
    assert {t["size"] for i in items for t in i["thumbnails"]} == {16} and len(named) >= 3
    assert named == {name for name, _ in stack.blobs.list_sizes("thumbnails", "tunit/thumbs/")}


def test_a_chunk_out_of_time_continues_later_and_the_next_delivery_skips_what_is_recorded(
    slow_reads: Callable[[Stack], SlowReads],
) -> None:
    stack = Stack(CHUNK_TIME_BUDGET_SECONDS="2.5", CHUNK_SIZE="10")
    clock = slow_reads(stack)  # each image costs a second of the budget: three fit
    job_id, message = _one_chunk_job(stack, 5)

    first = process_chunk(stack.ctx, message.body, delivery_count=1)

    assert (first.finished, first.cancelled, first.processed, first.skipped_as_done) == (False, False, 3, 0)
    assert clock.reads == ["p0.png", "p1.png", "p2.png"]
    (continuation,) = stack.bus.take(HIGH.express_queue_name)
    assert continuation.message_id.startswith(f"{job_id}.0.cont.") and continuation.session_id is None
    assert continuation.properties["continuation"] == 1
    assert ChunkMessage.model_validate_json(continuation.body) == ChunkMessage.model_validate_json(message.body)
    recorded = stack.store.get_chunk(job_id, 0)
    assert recorded is not None and recorded.state == "running" and recorded.counts.succeeded == 3
    assert sorted(stack.store.image_outcomes(job_id, 0)) == [0, 1, 2]

    second = process_chunk(stack.ctx, continuation.body, delivery_count=1)

    assert (second.finished, second.processed, second.skipped_as_done) == (True, 2, 3)
    assert clock.reads[3:] == ["p3.png", "p4.png"]  # the recorded images were not fetched again
    assert second.counts.succeeded == 5
    done = stack.store.get_chunk(job_id, 0)
    assert done is not None and done.state == "done" and done.counts.succeeded == 5
    assert stack.bus.messages(HIGH.express_queue_name) == []


def test_a_chunk_on_a_session_continues_on_the_same_session(slow_reads: Callable[[Stack], SlowReads]) -> None:
    stack = Stack(CHUNK_TIME_BUDGET_SECONDS="0.5")
    slow_reads(stack)  # one image fits
    refs = [stack.original(f"s{i}.png", i) for i in range(6)]
    job_id = stack.submit({"blobs": refs, "options": {"analyses": FAST_ANALYSES}})
    sent = stack.bus.take(HIGH.queue_name)
    assert [m.session_id for m in sent] == [f"{job_id}.0", f"{job_id}.1"]

    outcome = process_chunk(stack.ctx, sent[1].body)

    assert (outcome.finished, outcome.processed) == (False, 1)
    (continuation,) = stack.bus.take(HIGH.queue_name)
    assert continuation.session_id == f"{job_id}.1" and continuation.message_id != sent[1].message_id


def test_a_cancelled_job_skips_the_rest_of_a_chunk_in_progress(slow_reads: Callable[[Stack], SlowReads]) -> None:
    stack = Stack(CHUNK_SIZE="10")
    clock = slow_reads(stack)
    job_id, message = _one_chunk_job(stack, 6)
    read = stack.blobs.read

    def read_then_cancel(container: str, name: str, max_bytes: int) -> bytes:
        data = read(container, name, max_bytes)
        if clock.reads == ["p0.png", "p1.png", "p2.png"]:  # the cancel lands while the third image is worked on
            stack.store.patch_job(job_id, {"cancel_requested": True})
        return data

    stack.blobs.read = read_then_cancel  # type: ignore[method-assign]

    outcome = process_chunk(stack.ctx, message.body)

    # Seen at the next check (CANCEL_CHECK_EVERY_SECONDS = 2 s of the chunk's clock): before the fourth image.
    assert (outcome.finished, outcome.cancelled, outcome.processed) == (True, True, 3)
    assert clock.reads == ["p0.png", "p1.png", "p2.png"]
    chunk = stack.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.state == "done"
    assert (chunk.counts.succeeded, chunk.counts.skipped) == (3, 3)
    assert stack.bus.messages(HIGH.express_queue_name) == []  # no continuation


def test_a_chunk_of_a_job_cancelled_before_it_started_does_no_work(stack: Stack) -> None:
    job_id, message = _one_chunk_job(stack, 3)
    stack.store.patch_job(job_id, {"cancel_requested": True})

    outcome = process_chunk(stack.ctx, message.body)

    assert (outcome.finished, outcome.cancelled, outcome.processed, outcome.counts.skipped) == (True, True, 0, 3)
    assert stack.store.image_outcomes(job_id, 0) == {}


def test_a_missing_original_is_an_error_result_not_a_failed_chunk(stack: Stack) -> None:
    stack.original("there.png", 5)
    job_id = stack.submit({"blobs": ["there.png", "gone.png"], "options": {"analyses": FAST_ANALYSES}})
    (message,) = stack.bus.take(HIGH.express_queue_name)

    outcome = process_chunk(stack.ctx, message.body)

    assert (outcome.counts.succeeded, outcome.counts.failed) == (1, 1)
    assert stack.store.image_outcomes(job_id, 0) == {0: None, 1: "not_found"}


# --- roll-up -----------------------------------------------------------------------------------------------------


def test_the_roll_up_folds_finished_chunks_into_the_job_and_ends_it(stack: Stack) -> None:
    refs = [stack.original(f"r{i}.png", 30 * i) for i in range(4)]
    job_id = stack.submit({"blobs": refs, "options": {"analyses": FAST_ANALYSES}})
    messages = stack.bus.take(HIGH.queue_name)
    assert len(messages) == 2

    process_chunk(stack.ctx, messages[0].body)
    first = roll_up_status(stack.ctx)
    assert (first.jobs_changed, first.jobs_updated, first.jobs_finished) == (1, 1, [])
    running = stack.job(job_id)
    assert running.state == JobState.RUNNING and running.counts.succeeded == 3

    process_chunk(stack.ctx, messages[1].body)
    second = roll_up_status(stack.ctx)
    assert second.jobs_finished == [job_id]
    ended = stack.job(job_id)
    assert ended.state == JobState.SUCCEEDED and ended.counts.succeeded == 4
    assert stack.store.page_job_entries("tunit", ["succeeded"], None, None, 10, None) == ([job_id], None)
    assert stack.bus.messages(FINISH_QUEUE) == []  # no dedup analysis, no callback: nothing follows

    again = roll_up_status(stack.ctx)
    assert (again.changes, again.jobs_changed, again.jobs_updated) == (0, 0, 0)


def test_a_finished_job_of_several_chunks_with_dedup_asks_for_reconciliation(stack: Stack) -> None:
    refs = [stack.original(f"d{i}.png", 40 * i) for i in range(4)]
    job_id = stack.submit({"blobs": refs, "options": {"analyses": ["hashes", "dedup"]}})
    for message in stack.bus.take(HIGH.queue_name):
        process_chunk(stack.ctx, message.body)

    report = roll_up_status(stack.ctx)

    assert report.jobs_finished == [job_id] and report.follow_ups_sent == 1
    (follow_up,) = stack.bus.messages(FINISH_QUEUE)
    assert follow_up.message_id == f"{job_id}.reconcile.1"
    assert stack.job(job_id).duplicates.state == "pending"


def test_a_one_chunk_job_reconciles_its_own_duplicates_and_ends_with_them_in_one_tick(stack: Stack) -> None:
    options = {"analyses": ["hashes", "dedup"]}
    first = stack.submit({"blobs": [stack.original("same.png", 5)], "options": options})
    process_chunk(stack.ctx, stack.bus.take(HIGH.express_queue_name)[0].body)
    assert roll_up_status(stack.ctx).jobs_finished == [first]
    job_id = stack.submit({"blobs": [stack.original("same-again.png", 5)], "options": options})
    (message,) = stack.bus.take(HIGH.express_queue_name)
    process_chunk(stack.ctx, message.body)

    report = roll_up_status(stack.ctx)

    assert report.jobs_finished == [job_id] and report.follow_ups_sent == 0
    assert stack.bus.messages(FINISH_QUEUE) == []  # no reconcile message for either job
    job = stack.job(job_id)
    assert job.state == JobState.SUCCEEDED
    # The group is whole: the first job's copy is in it.
    assert (job.duplicates.state, job.duplicates.groups, job.duplicates.images) == ("ready", 1, 2)
    assert (stack.job(first).duplicates.state, stack.job(first).duplicates.groups) == ("ready", 0)


def test_a_one_chunk_job_with_a_callback_sends_the_callback_at_its_end(stack: Stack) -> None:
    job_id = stack.submit(
        {
            "blobs": [stack.original("cb.png", 7)],
            "options": {"analyses": ["hashes", "dedup"]},
            "callback_url": "https://hooks.example.com/done",
        }
    )
    process_chunk(stack.ctx, stack.bus.take(HIGH.express_queue_name)[0].body)

    roll_up_status(stack.ctx)

    (follow_up,) = stack.bus.messages(FINISH_QUEUE)
    assert follow_up.message_id == f"{job_id}.callback.1"


def test_idle_jobs_cost_the_roll_up_nothing(stack: Stack) -> None:
    for i in range(50):
        stack.submit({"urls": [f"https://images.example.com/{i}.jpg"]})
    roll_up_status(stack.ctx)  # the first tick sees nothing: no chunk has changed
    job_id = stack.submit({"blobs": [stack.original("busy.png", 9)], "options": {"analyses": FAST_ANALYSES}})
    express = stack.bus.take(HIGH.express_queue_name)
    process_chunk(stack.ctx, express[-1].body)

    before = stack.store.requests
    report = roll_up_status(stack.ctx)

    assert (report.jobs_changed, report.jobs_finished) == (1, [job_id])
    # the cursor, the change query, one job read and replace, the job-list entry, the cursor written back
    assert report.cosmos_requests == stack.store.requests - before <= 6
    idle = roll_up_status(stack.ctx)
    assert (idle.changes, idle.cosmos_requests) == (0, 3)
