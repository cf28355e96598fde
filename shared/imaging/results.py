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


class ImageFacts(BaseModel):
    """What was read from one image: the facts an image result reports (also its stored `result`)."""

    byte_size: int = Field(description="Bytes of the original")
    format: str | None = Field(
        default=None, description="Sniffed from the bytes: jpeg, png, webp, gif, bmp, tiff or avif"
    )
    width: int | None = Field(default=None, description="Width as stored, before EXIF rotation")
    height: int | None = Field(default=None, description="Height as stored, before EXIF rotation")
    upright_width: int | None = Field(
        default=None, description="Width after EXIF rotation: the frame thumbnails and face boxes use"
    )
    upright_height: int | None = Field(default=None, description="Height after EXIF rotation")
    mode: str | None = Field(default=None, description="Pillow's mode of the stored image (RGB, CMYK, P, I;16, ...)")
    frames: int | None = Field(default=None, description="Frames of an animated or multi-page image")
    exif: ExifFacts | None = Field(default=None, description="EXIF facts (GPS coordinates are never read)")
    phash: str | None = Field(default=None, description="64-bit perceptual hash, 16 hex digits")
    dhash: str | None = Field(default=None, description="64-bit difference hash, 16 hex digits")
    phash_mirror: str | None = Field(
        default=None, description="pHash of the left-right mirror, to match flipped copies"
    )
    faces: list[Box] | None = Field(default=None, description="Face boxes in the upright frame; absent when not run")
    people: list[Box] | None = Field(default=None, description="Person boxes in the upright frame; absent when not run")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Milliseconds per pipeline step")


class ImageResult(ImageFacts):
    ok: bool
    error: ImageError | None = None
    sha256: str | None = None  # of the original bytes; set whenever the bytes were within the byte cap
    # The encoded thumbnails: uploaded by the caller, never serialised into a document.
    thumbnails: list[Thumbnail] = Field(default_factory=list, exclude=True, repr=False)
