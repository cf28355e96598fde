"""Every document id, blob name, limits key and outgoing Service Bus message of a job, in one place.

Ids are deterministic, so a repeated write is an overwrite and a repeated send is dropped by duplicate detection:
chunk messages `{job}.{chunk}` in session `{job}.{chunk mod concurrency}`, expand steps `{job}.expand.{step}`, finish
follow-ups `{job}.{action}.{end}[.{n}]`. Continuations and replays carry a time stamp instead: they are meant to be
sent again.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TypeVar

from shared.adapters.servicebus import OutgoingMessage
from shared.models import ChunkMessage, ExpandMessage, FinishMessage, utcnow
from shared.planning import encode
from shared.tracing import current_traceparent

M = TypeVar("M", ChunkMessage, ExpandMessage)

# --- document ids (Cosmos `jobs` container, partition = job id) ----------------------------------------------


def chunk_document_id(job_id: str, chunk: int) -> str:
    return f"{job_id}.chunk.{chunk}"


def image_result_id(job_id: str, index: int) -> str:
    return f"{job_id}.{index}"


def expansion_document_id(job_id: str) -> str:
    return f"{job_id}.expansion"


def dead_letter_document_id(job_id: str, chunk: int) -> str:
    return f"{job_id}.deadletter.{chunk}"


def duplicates_document_id(job_id: str) -> str:
    return f"{job_id}.duplicates"


def duplicate_group_document_id(job_id: str, end: int, group: int, part: int) -> str:
    return f"{job_id}.group.{end}.{group:07d}.{part:04d}"


def callback_document_id(job_id: str) -> str:
    return f"{job_id}.callback"


# --- keys of the limits container (one versioned document each) --------------------------------------------


def api_bucket_key(tenant_id: str) -> str:
    """A tenant's API rate bucket."""
    return f"api:{tenant_id}"


def usage_key(tenant_id: str) -> str:
    """A tenant's quota use (its unfinished jobs, the day's images)."""
    return f"usage:{tenant_id}"


def host_bucket_key(host: str) -> str:
    """An image host's fetch rate bucket (polite fetching), shared by every worker."""
    return f"host:{host}"


# --- messages -----------------------------------------------------------------------------------------------


def session_id(job_id: str, chunk: int, concurrency: int) -> str:
    """The session of a chunk: a job's chunks spread over `concurrency` sessions, its cap on chunks in flight."""
    return f"{job_id}.{chunk % concurrency}"


def message_id(job_id: str, chunk: int) -> str:
    return f"{job_id}.{chunk}"


def chunk_queue(message: ChunkMessage) -> str:
    return message.lane.express_queue_name if message.express else message.lane.queue_name


def chunk_message(message: ChunkMessage, concurrency: int) -> OutgoingMessage:
    """A chunk as first sent. An express chunk has no session: any consumer of the lane's express queue takes it.
    It carries the trace context it was sent in (the submit's), unless it already names one."""
    return _chunk(_traced(message), concurrency, message_id(message.job_id, message.chunk), {})


def continuation_message(message: ChunkMessage, concurrency: int, delivery_count: int) -> OutgoingMessage:
    """The same chunk again (its recorded images are skipped on pickup), on the same session, with a fresh id."""
    return _chunk(
        message,
        concurrency,
        f"{message_id(message.job_id, message.chunk)}.cont.{_stamp()}",
        {"continuation": delivery_count},
    )


def replay_message(message: ChunkMessage, body: str, concurrency: int) -> OutgoingMessage:
    """A dead-lettered chunk re-sent as it was, with a fresh id (duplicate detection would drop the original)."""
    attempt = _stamp()
    return OutgoingMessage(
        body=body,
        message_id=f"{message_id(message.job_id, message.chunk)}.replay.{attempt}",
        session_id=None if message.express else session_id(message.job_id, message.chunk, concurrency),
        subject="chunk",
        properties={"jobId": message.job_id, "chunk": message.chunk, "replay": attempt},
    )


def expand_message(message: ExpandMessage) -> OutgoingMessage:
    """A manifest expansion step, for EXPAND_QUEUE."""
    return OutgoingMessage(
        body=_traced(message).model_dump_json(exclude_none=True),
        message_id=f"{message.job_id}.expand.{message.step}",
        subject="expand",
        properties={"jobId": message.job_id},
    )


def finish_message(message: FinishMessage) -> OutgoingMessage:
    """A finished job's follow-up, for FINISH_QUEUE."""
    suffix = (
        ("" if message.attempt == 1 else f".{message.attempt}")
        + (f".w{message.waits}" if message.waits else "")
        + (f".b{message.export_blocks}" if message.export_blocks else "")
    )
    return OutgoingMessage(
        body=message.model_dump_json(),
        message_id=f"{message.job_id}.{message.action}.{message.end}{suffix}",
        subject=message.action,
        properties={"jobId": message.job_id},
    )


def _chunk(message: ChunkMessage, concurrency: int, msg_id: str, extra: dict[str, str | int]) -> OutgoingMessage:
    return OutgoingMessage(
        body=encode(message),
        message_id=msg_id,
        session_id=None if message.express else session_id(message.job_id, message.chunk, concurrency),
        subject="chunk",
        properties={"jobId": message.job_id, "chunk": message.chunk, **extra},
    )


def _traced(message: M) -> M:
    if message.traceparent is not None:
        return message
    traceparent = current_traceparent()
    return message if traceparent is None else message.model_copy(update={"traceparent": traceparent})


def _stamp(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y%m%d%H%M%S%f")


# --- blob names in a tenant's folders (every container is divided by tenant id) ------------------------------


def original_blob_name(tenant_id: str, ref: str) -> str:
    """An image a job names by blob reference (relative to the tenant's originals folder)."""
    return f"{tenant_id}/{ref}"


def manifest_blob_name(tenant_id: str, name: str) -> str:
    """A manifest, in the tenant's manifests folder."""
    return f"{tenant_id}/{name}"


def upload_id() -> str:
    return f"u{secrets.token_hex(12)}"


def upload_blob_name(tenant_id: str, upload: str, name: str) -> str:
    """An uploaded file, in the tenant's originals folder."""
    return f"{tenant_id}/{upload_file_ref(upload, name)}"


def upload_file_ref(upload: str, name: str) -> str:
    """An uploaded file as a job names it: relative to the tenant's originals folder."""
    return f"uploads/{upload}/{name}"


def upload_record_name(tenant_id: str, upload: str) -> str:
    """An upload's file list (one blob reference a line, in order), in the tenant's manifests folder: a job of the
    upload reads it, and it is a manifest the tenant can submit as one."""
    return f"{tenant_id}/uploads/{upload}.txt"


def single_image_ref(job_id: str) -> str:
    """The original of a job made by POST /api/images, relative to the tenant's originals folder."""
    return f"images/{job_id}"


def thumbnail_blob_name(tenant_id: str, sha256: str, size: int, fmt: str) -> str:
    """Thumbnails are named by content within a tenant: the same image in two jobs is stored once."""
    return f"{tenant_id}/thumbs/{sha256}/{size}.{fmt}"


def export_blob_name(tenant_id: str, job_id: str, end: int) -> str:
    """A finished job's results as JSON lines, for its `end`-th end (a replay ends it again, with more results)."""
    return f"{tenant_id}/{job_id}/results-{end}.jsonl"
