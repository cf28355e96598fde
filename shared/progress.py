"""Pure folding of changed documents into a job document, and the job state machine. No I/O.

accepted -> running -> succeeded | completed_with_errors | failed | cancelled

The status timer hands over the documents of a job that changed since its last tick (chunk records, dead letters,
the manifest expansion, the reconciled duplicates summary, the callback's delivery state). A chunk's final counts
enter the job once: a bitmap of finished chunks (base64, one bit a chunk; the 20,000 chunks of a 10-million-image
job take 3.4 KB) says which are already in `finished_counts`, so a change seen twice is never counted twice.
Everything the job document keeps is bounded whatever the job's size: bitmaps, the chunks in flight, a sample of
dead letters, counts.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from shared.models import (
    DEAD_LETTER_SAMPLE,
    CallbackDocument,
    ChunkDocument,
    DeadLetterDocument,
    DeadLetteredChunk,
    DuplicatesDocument,
    DuplicatesSummary,
    ExpansionDocument,
    ImageCounts,
    JobDocument,
    JobState,
    RunningChunk,
)

JobChange = ChunkDocument | DeadLetterDocument | ExpansionDocument | DuplicatesDocument | CallbackDocument

# Throughput over a shorter interval than this is noise (a one-image job's start and end are milliseconds apart).
MIN_RATE_INTERVAL_SECONDS = 1.0


class Bitmap:
    """A set of small non-negative integers stored as a base64 bitmap (one bit each)."""

    def __init__(self, encoded: str = "") -> None:
        self._bits = bytearray(base64.b64decode(encoded) if encoded else b"")

    def __contains__(self, index: int) -> bool:
        byte = index // 8
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (index % 8)))

    def add(self, index: int) -> None:
        byte = index // 8
        if byte >= len(self._bits):
            self._bits.extend(b"\0" * (byte + 1 - len(self._bits)))
        self._bits[byte] |= 1 << (index % 8)

    def discard(self, index: int) -> None:
        byte = index // 8
        if byte < len(self._bits):
            self._bits[byte] &= ~(1 << (index % 8)) & 0xFF

    def __len__(self) -> int:
        return sum(bin(b).count("1") for b in self._bits)

    def members(self) -> Iterable[int]:
        return (i for i in range(len(self._bits) * 8) if i in self)

    def encode(self) -> str:
        return base64.b64encode(bytes(self._bits.rstrip(b"\0"))).decode()


@dataclass
class FoldResult:
    newly_finished: list[int] = field(default_factory=list)
    duplicates_ready: bool = False  # the duplicates summary of the job's latest end arrived


@dataclass
class Settled:
    folded: FoldResult
    ended: bool  # the job ended with these changes (its `ends` counts it; duplicates wait to be reconciled)


def settle(job: JobDocument, changes: Iterable[JobChange], now: datetime) -> Settled:
    """The job document with its changes folded in and its progress, state and figures decided: what the status
    timer writes, and what a status read of a one-chunk job shows before the timer has come by."""
    changes = list(changes)
    folded = fold_changes(job, changes)
    ended = apply_progress(job, now, folded.newly_finished)
    if ended:
        job.ends += 1
        if "dedup" in job.options.analyses and job.state != JobState.CANCELLED:
            job.duplicates = DuplicatesSummary(state="pending")
            # A one-chunk job's worker reconciles before recording the chunk's end (shared/services/chunks.py):
            # the summary for this new end may come with it. Otherwise the finish queue reconciles.
            for change in changes:
                if isinstance(change, DuplicatesDocument) and change.end == job.ends:
                    job.duplicates = DuplicatesSummary(state="ready", groups=change.groups, images=change.images)
                    folded.duplicates_ready = True
    return Settled(folded, ended)


def as_seen(job: JobDocument, read_only_chunk: Callable[[], ChunkDocument | None], now: datetime) -> JobDocument:
    """The job as a tenant sees it. A one-chunk job (a single image, a small upload) shows its finished chunk at once
    rather than after the status timer's next tick: its chunk record (one more read) is settled in memory exactly as
    the timer will settle it. Whatever acts on a job's state (cancel, export, the active-jobs quota) starts from this
    view, so none acts on an older state than a status read has shown."""
    if settles_on_read(job):
        chunk = read_only_chunk()
        if chunk is not None and chunk.state == "done":
            settle(job, [chunk], now)
    return job


def settles_on_read(job: JobDocument) -> bool:
    """Whether a status read of the job reads its chunk record too (`as_seen`)."""
    return job.total_chunks == 1 and not job.state.terminal and not job.cancel_requested


def as_seen_all(
    jobs: Mapping[str, JobDocument],
    read_first_chunks: Callable[[list[str]], Mapping[str, ChunkDocument]],
    now: datetime,
) -> dict[str, JobDocument]:
    """`as_seen` for many jobs, keyed by id: the chunk records it needs are read in one call, not one a job (a list
    of a hundred unfinished one-image jobs costs two reads in all, not a hundred and one)."""
    wanted = [job_id for job_id, job in jobs.items() if settles_on_read(job)]
    chunks = read_first_chunks(wanted) if wanted else {}
    return {job_id: as_seen(job, partial(chunks.get, job_id), now) for job_id, job in jobs.items()}


def fold_changes(job: JobDocument, changes: Iterable[JobChange]) -> FoldResult:
    """Brings the job document up to date with its changed documents. Idempotent: folding a change again (the
    timer re-reads an overlap) changes nothing."""
    result = FoldResult()
    finished = Bitmap(job.finished_chunks)
    dead = Bitmap(job.dead_lettered_chunks)
    replayed = Bitmap(job.replayed_chunks)
    codes = Counter(job.finished_error_codes)
    samples = {d.chunk: d for d in job.dead_lettered}
    for change in changes:
        if isinstance(change, ChunkDocument):
            _fold_chunk(job, change, finished, codes, result)
        elif isinstance(change, DeadLetterDocument):
            dead.add(change.chunk)
            if change.replayed:
                replayed.add(change.chunk)
            else:
                replayed.discard(change.chunk)
            samples[change.chunk] = DeadLetteredChunk(
                chunk=change.chunk,
                reason=change.reason,
                description=change.description,
                dead_lettered_at=change.dead_lettered_at,
                replayed=change.replayed,
            )
        elif isinstance(change, ExpansionDocument):
            if change.done:
                job.expansion_done = True
                job.total_images, job.total_chunks = change.images, change.chunks
                if change.error:
                    codes["expansion"] = 1
        elif isinstance(change, DuplicatesDocument):
            if change.end == job.ends and job.duplicates.state != "ready":
                job.duplicates = DuplicatesSummary(state="ready", groups=change.groups, images=change.images)
                result.duplicates_ready = True
        elif change.end == job.ends:  # CallbackDocument: the delivery state of the latest end's callback
            job.callback = change.status
    for chunk in result.newly_finished:
        job.running.pop(str(chunk), None)
    job.finished_chunks = finished.encode()
    job.finished_error_codes = dict(codes)
    job.dead_lettered_chunks = dead.encode()
    job.replayed_chunks = replayed.encode()
    job.dead_lettered = [samples[c] for c in sorted(samples)[:DEAD_LETTER_SAMPLE]]
    return result


def _fold_chunk(
    job: JobDocument, chunk: ChunkDocument, finished: Bitmap, codes: Counter[str], result: FoldResult
) -> None:
    if job.started_at is None or chunk.started_at < job.started_at:
        job.started_at = chunk.started_at
    if chunk.chunk in finished:
        return
    if chunk.state == "running":
        job.running[str(chunk.chunk)] = RunningChunk(
            counts=chunk.counts, error_codes=chunk.error_codes, started_at=chunk.started_at
        )
        return
    finished.add(chunk.chunk)
    job.finished_counts = job.finished_counts + chunk.counts
    codes.update(chunk.error_codes)
    result.newly_finished.append(chunk.chunk)
    if chunk.finished_at is not None and (
        job.last_chunk_finished_at is None or chunk.finished_at > job.last_chunk_finished_at
    ):
        job.last_chunk_finished_at = chunk.finished_at


def _dead_letter_state(job: JobDocument, finished: Bitmap) -> tuple[set[int], set[int]]:
    """Dead-lettered chunks neither replayed nor finished (they count as accounted for, with errors), and replayed
    chunks not finished yet (the job runs until they are)."""
    replayed = Bitmap(job.replayed_chunks)
    unresolved = {c for c in Bitmap(job.dead_lettered_chunks).members() if c not in replayed and c not in finished}
    replaying = {c for c in replayed.members() if c not in finished}
    return unresolved, replaying


def apply_progress(job: JobDocument, now: datetime, newly_finished: Iterable[int] = ()) -> bool:
    """Sets counts, state, throughput and ETA from what the job document knows now. Returns True if the job just
    ended. `newly_finished`: the chunks fold_changes has just added."""
    counts = _sum_counts(job)
    finished = Bitmap(job.finished_chunks)
    unresolved, replaying = _dead_letter_state(job, finished)
    _reopen_if_replayed(job, bool(replaying) or bool(list(newly_finished)))
    _mark_started(job, now, started=bool(job.running) or len(finished) > 0)
    _throughput(job, counts, now)
    if job.state.terminal or not _every_chunk_accounted_for(job, len(finished) + len(unresolved)):
        return False
    job.state = end_state(job, counts, bool(unresolved))
    job.finished_at = job.last_chunk_finished_at or now
    job.running = {}
    if job.started_at is None:
        job.started_at = job.finished_at
    _throughput(job, counts, job.finished_at)
    return True


def _sum_counts(job: JobDocument) -> ImageCounts:
    """The job's counts and error codes: its finished chunks' final ones plus its running chunks' latest ones."""
    counts = job.finished_counts
    codes = Counter(job.finished_error_codes)
    for running in job.running.values():
        counts = counts + running.counts
        codes.update(running.error_codes)
    job.counts = counts
    job.error_codes = dict(codes)
    return counts


def _reopen_if_replayed(job: JobDocument, chunks_came_back: bool) -> None:
    """Dead-lettered chunks were re-sent: the job runs again until they are accounted for. A replayed chunk may also
    have finished before any roll-up saw it re-sent (then it arrives as newly finished, and the end state must be
    decided again). An ended job has every other chunk folded already."""
    if job.state.terminal and job.state != JobState.CANCELLED and chunks_came_back:
        job.state, job.finished_at = JobState.RUNNING, None


def _mark_started(job: JobDocument, now: datetime, started: bool) -> None:
    if job.started_at is None and started:
        job.started_at = min((r.started_at for r in job.running.values()), default=now)
    if job.state == JobState.ACCEPTED and job.started_at is not None:
        job.state = JobState.RUNNING


def _every_chunk_accounted_for(job: JobDocument, finished_or_dead: int) -> bool:
    """Every chunk of the job is finished or dead-lettered (and not being replayed), and the count is final."""
    expansion_done = job.manifest_blob is None or job.expansion_done
    return expansion_done and job.total_chunks is not None and finished_or_dead >= job.total_chunks


def _throughput(job: JobDocument, counts: ImageCounts, now: datetime) -> None:
    """Images/s from the first chunk's start to `now` (to the job's end once it has ended), and the ETA from it.

    - None until the interval is long enough to mean something: a rate from a near-zero interval is noise, not a
      figure (a one-image job's start and end can be the same instant).
    - An ended job's figures are final: measured to its end, never to the tick that happens to re-read it (a later
      tick that folds its duplicates summary or callback state would otherwise shrink the rate towards zero).
    - The ETA is None while it cannot be known (no rate yet, or the total is unknown while a manifest expands),
      0 once nothing is left.
    """
    if job.state.terminal:
        job.eta_seconds = 0.0
    until = job.finished_at if job.state.terminal and job.finished_at is not None else now
    if job.started_at is None or not counts.done:
        job.images_per_second = None
        if not job.state.terminal:
            job.eta_seconds = None
        return
    elapsed = (until - job.started_at).total_seconds()
    if elapsed < MIN_RATE_INTERVAL_SECONDS:
        job.images_per_second = None
        if not job.state.terminal:
            job.eta_seconds = None
        return
    job.images_per_second = round(counts.done / elapsed, 3)
    if job.state.terminal:
        return
    if job.total_images is None:
        job.eta_seconds = None
        return
    remaining = max(job.total_images - counts.done, 0)
    job.eta_seconds = round(remaining * elapsed / counts.done, 1)


def end_state(job: JobDocument, counts: ImageCounts, has_dead_letters: bool) -> JobState:
    if job.cancel_requested:
        return JobState.CANCELLED
    if counts.succeeded == 0 and (counts.failed or has_dead_letters):
        return JobState.FAILED
    if counts.failed or has_dead_letters:
        return JobState.COMPLETED_WITH_ERRORS
    return JobState.SUCCEEDED
