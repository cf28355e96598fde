"""The chunk worker's bridge to the image pipeline (`shared/imaging`) and the duplicate index (`shared/dedup`).

It turns job options and settings into pipeline options and the pipeline's result into what the worker stores,
so the worker does not depend on the pipeline's internals.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from shared.config import Settings
from shared.models import ChunkMessage, JobDocument, JobOptions


@dataclass(frozen=True)
class Thumbnail:
    size: int
    format: str
    data: bytes
    width: int
    height: int


@dataclass
class Analysis:
    ok: bool
    sha256: str | None = None
    error_code: str = ""
    error_message: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    thumbnails: list[Thumbnail] = field(default_factory=list)


def analyse(data: bytes, options: JobOptions, settings: Settings) -> Analysis:
    # Provisional until shared/imaging lands: validate, checksum and read the dimensions.
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return Analysis(ok=False, sha256=sha, error_code="empty", error_message="the image has no bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            facts = {"format": img.format, "width": img.width, "height": img.height, "sha256": sha}
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return Analysis(ok=False, sha256=sha, error_code="corrupt", error_message=str(exc))
    return Analysis(ok=True, sha256=sha, facts=facts)


def register_duplicates(ctx: Any, message: ChunkMessage, index: int, analysis: Analysis) -> list[str]:
    return []


def job_duplicate_groups(ctx: Any, job: JobDocument) -> list[list[str]]:
    return []
