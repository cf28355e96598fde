"""Pure folding of chunk records into a job document, and the job state machine. No I/O.

accepted -> running -> succeeded | completed_with_errors | failed | cancelled

A chunk's final counts enter the job once: a bitmap of finished chunks (base64, one bit a chunk; 20,000 chunks
of a 10-million-image job take 2.5 KB) says which are already in `finished_counts`, so the timer may read the same
finished chunk twice (its query window overlaps, to tolerate clock skew between workers) without counting twice.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Collection, Iterable
from datetime import datetime

from shared.models import ChunkDocument, DeadLetterDocument, DeadLetteredChunk, ImageCounts, JobDocument, JobState


def bitmap_has(bitmap: str, index: int) -> bool:
    raw = base64.b64decode(bitmap) if bitmap else b""
    byte = index // 8
    return byte < len(raw) and bool(raw[byte] & (1 << (index % 8)))


def bitmap_add(bitmap: str, indexes: Iterable[int]) -> str:
    raw = bytearray(base64.b64decode(bitmap) if bitmap else b"")
    for index in indexes:
        byte = index // 8
        if byte >= len(raw):
            raw.extend(b"\0" * (byte + 1 - len(raw)))
        raw[byte] |= 1 << (index % 8)
    return base64.b64encode(bytes(raw)).decode()


def bitmap_count(bitmap: str) -> int:
    return sum(bin(b).count("1") for b in (base64.b64decode(bitmap) if bitmap else b""))


def fold_finished(job: JobDocument, finished: Iterable[ChunkDocument]) -> list[int]:
    """Adds the final counts of finished chunks not yet in the job. Returns the chunks newly added."""
    added: list[int] = []
    codes = Counter(job.finished_error_codes)
    for chunk in finished:
        if chunk.state != "done" or chunk.chunk in added or bitmap_has(job.finished_chunks, chunk.chunk):
            continue
        job.finished_counts = job.finished_counts + chunk.counts
        codes.update(chunk.error_codes)
        added.append(chunk.chunk)
    job.finished_chunks = bitmap_add(job.finished_chunks, added)
    job.finished_error_codes = dict(codes)
    return added


def apply_progress(
    job: JobDocument,
    running: Iterable[ChunkDocument],
    dead_letters: Iterable[DeadLetterDocument],
    now: datetime,
    expansion_done: bool,
    newly_finished: Collection[int] = (),
) -> bool:
    """Sets counts, state, throughput and ETA from what is known now. Returns True if the job just ended.
    `newly_finished`: the chunks fold_finished has just added."""
    in_progress = [c for c in running if not bitmap_has(job.finished_chunks, c.chunk)]
    counts = job.finished_counts
    codes = Counter(job.finished_error_codes)
    for chunk in in_progress:
        counts = counts + chunk.counts
        codes.update(chunk.error_codes)
    job.counts = counts
    job.error_codes = dict(codes)

    dead = list(dead_letters)
    job.dead_lettered = [
        DeadLetteredChunk(
            chunk=d.chunk,
            reason=d.reason,
            description=d.description,
            dead_lettered_at=d.dead_lettered_at,
            replayed=d.replayed,
        )
        for d in sorted(dead, key=lambda d: d.chunk)
    ]
    unresolved = {d.chunk for d in dead if not d.replayed and not bitmap_has(job.finished_chunks, d.chunk)}
    replaying = {d.chunk for d in dead if d.replayed and not bitmap_has(job.finished_chunks, d.chunk)}
    if job.state.terminal and (replaying or newly_finished) and job.state != JobState.CANCELLED:
        # Dead-lettered chunks were re-sent: the job runs again until they are accounted for. A replayed chunk may
        # also have finished before any roll-up saw it re-sent (then it arrives here as newly finished, and the end
        # state must be decided again). An ended job has every other chunk folded already.
        job.state, job.finished_at = JobState.RUNNING, None

    started = [c.started_at for c in in_progress]
    if job.started_at is None and (started or bitmap_count(job.finished_chunks)):
        job.started_at = min(started) if started else now
    if job.state == JobState.ACCEPTED and job.started_at is not None:
        job.state = JobState.RUNNING

    if job.started_at is not None and counts.done:
        elapsed = max((now - job.started_at).total_seconds(), 1e-3)
        job.images_per_second = round(counts.done / elapsed, 3)
        remaining = (job.total_images or 0) - counts.done
        job.eta_seconds = round(remaining / job.images_per_second, 1) if job.total_images and remaining > 0 else 0.0

    if job.state.terminal or not expansion_done or job.total_chunks is None:
        return False
    accounted = bitmap_count(job.finished_chunks) + len(unresolved)
    if accounted < job.total_chunks:
        return False
    job.state = end_state(job, counts, bool(unresolved))
    job.finished_at = now
    job.eta_seconds = 0.0
    if job.started_at is None:
        job.started_at = now
    return True


def end_state(job: JobDocument, counts: ImageCounts, has_dead_letters: bool) -> JobState:
    if job.cancel_requested:
        return JobState.CANCELLED
    if counts.succeeded == 0 and (counts.failed or has_dead_letters):
        return JobState.FAILED
    if counts.failed or has_dead_letters:
        return JobState.COMPLETED_WITH_ERRORS
    return JobState.SUCCEEDED
