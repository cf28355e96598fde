"""docs/callbacks.md shows the callback body that is actually sent: the example between its markers is checked
against `callback_payload` of the same example job, and the encoding it describes against `encode_payload`.

When the job status changes, regenerate the example with:
    PYTHONPATH=. .venv/bin/python -m tests.unit.test_callback_doc
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.callbacks import encode_payload
from shared.models import (
    DeadLetteredChunk,
    DuplicatesSummary,
    ImageCounts,
    JobDocument,
    JobOptions,
    JobState,
    Lane,
)
from shared.progress import Bitmap
from shared.views import callback_payload

DOC = Path(__file__).resolve().parents[2] / "docs" / "callbacks.md"
BEGIN, END = "<!-- callback-body:begin -->", "<!-- callback-body:end -->"


def example_job() -> JobDocument:
    """A finished job with a little of everything: failed images, a dead-lettered chunk, duplicate groups."""
    created = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    dead = Bitmap()
    dead.add(7)
    return JobDocument(
        id="j3f9c2a7d41b8", jobId="j3f9c2a7d41b8", tenantId="t5e1d0c9b8a7f", lane=Lane.HIGH, concurrency=4,
        source="urls", options=JobOptions(), callback_url="https://example.com/hooks/imagepipe",
        state=JobState.COMPLETED_WITH_ERRORS, total_images=1000, total_chunks=10,
        counts=ImageCounts(succeeded=897, failed=3, skipped=0), error_codes={"corrupt": 2, "fetch_http_error": 1},
        dead_lettered_chunks=dead.encode(),
        dead_lettered=[
            DeadLetteredChunk(chunk=7, reason="MaxDeliveryCountExceeded", description="delivered 10 times",
                              dead_lettered_at=created + timedelta(seconds=40))
        ],
        duplicates=DuplicatesSummary(state="ready", groups=2, images=5),
        created_at=created, started_at=created + timedelta(seconds=1),
        finished_at=created + timedelta(seconds=51), images_per_second=18.0, eta_seconds=0.0,
    )  # fmt: skip


def documented_body() -> str:
    text = DOC.read_text()
    section = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    found = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert found, f"no ```json block between the markers in {DOC}"
    return found.group(1)


def expected_block(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def test_the_documented_callback_body_is_the_one_sent() -> None:
    payload = callback_payload(example_job())
    assert json.loads(documented_body()) == json.loads(encode_payload(payload)), (
        "docs/callbacks.md's example body differs from what is sent; replace the block with:\n"
        + expected_block(payload)
    )
    assert documented_body() == expected_block(payload), "same content, but regenerate it (sorted keys, indent 2)"


def test_the_documented_encoding_is_the_one_used() -> None:
    payload = callback_payload(example_job())
    body = encode_payload(payload)
    assert body == json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    assert b"\n" not in body and b", " not in body
    assert "compact JSON with its keys sorted" in DOC.read_text()


if __name__ == "__main__":
    print(expected_block(callback_payload(example_job())), end="")
