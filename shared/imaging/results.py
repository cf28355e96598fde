"""What the pipeline reports for one image: JSON-serialisable facts, plus the thumbnail bytes kept apart."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel, Field

from shared.imaging.errors import ErrorCode
from shared.imaging.options import ThumbnailFormat


class ImageError(BaseModel):
    code: ErrorCode
    message: str


class ExifFacts(BaseModel):
    orientation: int = 1  # EXIF orientation 1-8 (1 when absent or invalid)
    camera_make: str | None = None
    camera_model: str | None = None
    taken_at: str | None = None  # ISO 8601 from DateTimeOriginal (or DateTime); offset only if EXIF gives one
    has_gps: bool = False  # the coordinates themselves are never read or copied


class Box(BaseModel):
    """A rectangle in the upright (EXIF-rotated) original image, in full-resolution pixels."""

    x: int
    y: int
    width: int
    height: int


class Thumbnail(NamedTuple):
    size: int  # the requested long side
    format: ThumbnailFormat
    data: bytes
    width: int
    height: int


class ImageResult(BaseModel):
    ok: bool
    error: ImageError | None = None
    byte_size: int
    sha256: str | None = None  # of the original bytes; set whenever the bytes were within the byte cap
    format: str | None = None  # sniffed from the bytes: jpeg, png, webp, gif, bmp, tiff, avif
    width: int | None = None  # as stored (before EXIF rotation)
    height: int | None = None
    upright_width: int | None = None  # after EXIF rotation: the frame thumbnails and boxes use
    upright_height: int | None = None
    mode: str | None = None  # Pillow's mode of the stored image (RGB, CMYK, P, I;16, ...)
    frames: int | None = None
    exif: ExifFacts | None = None
    phash: str | None = None  # 64-bit, 16 hex digits
    dhash: str | None = None
    phash_mirror: str | None = None  # pHash of the left-right mirror, to match flipped copies
    faces: list[Box] | None = None  # None when not run
    people: list[Box] | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    # The encoded thumbnails: uploaded by the caller, never serialised into a document.
    thumbnails: list[Thumbnail] = Field(default_factory=list, exclude=True, repr=False)
