"""Pure planning: job ids, chunking, lanes and per-job concurrency. No I/O. (Message and session ids: messages.py.)"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from shared.config import Lane, Settings, Tier
from shared.models import ChunkMessage, ImageRef, JobOptions

# Leave room under Service Bus Standard's 256 KB for the envelope and properties.
MAX_CHUNK_MESSAGE_BYTES = 192 * 1024


def new_job_id(now: datetime | None = None) -> str:
    """Sortable by creation time, unguessable, and safe in session ids and blob names."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return f"j{stamp}{secrets.token_hex(6)}"


def lane_for(tier: Tier, settings: Settings) -> Lane:
    return settings.lane_by_tier[tier]


def concurrency_for(tier: Tier, settings: Settings, total_chunks: int | None = None) -> int:
    """A job's cap on chunks in flight at once: how many sessions its chunks spread over (at most its chunks)."""
    cap = settings.job_concurrency_by_tier[tier]
    return max(1, min(cap, total_chunks)) if total_chunks else cap


def chunk_count(images: int, chunk_size: int) -> int:
    return (images + chunk_size - 1) // chunk_size


def inline_chunk_size(refs: Sequence[ImageRef], chunk_size: int) -> int:
    """The configured chunk size, lowered when long references would push a message over the size limit."""
    longest = max((len(r.ref) for r in refs), default=1)
    per_image = longest + 48  # JSON keys, index and quoting around each reference
    return max(1, min(chunk_size, MAX_CHUNK_MESSAGE_BYTES // per_image))


def inline_chunks(
    job_id: str, tenant_id: str, lane: Lane, options: JobOptions, refs: Sequence[ImageRef], size: int
) -> Iterator[ChunkMessage]:
    express = len(refs) <= size  # a job of one chunk takes the lane's express queue
    for chunk, start in enumerate(range(0, len(refs), size)):
        yield ChunkMessage(
            job_id=job_id,
            tenant_id=tenant_id,
            chunk=chunk,
            lane=lane,
            options=options,
            images=list(refs[start : start + size]),
            express=express,
        )


def encode(message: ChunkMessage) -> str:
    return json.dumps(message.model_dump(mode="json", exclude_none=True), separators=(",", ":"))
