"""Why an image could not be processed: a closed set of codes, reported in the result, never raised out."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    EMPTY = "empty"  # zero bytes
    TOO_LARGE = "too_large"  # more bytes than the byte cap
    UNSUPPORTED_FORMAT = "unsupported_format"  # the bytes are not one of the accepted formats
    TOO_MANY_PIXELS = "too_many_pixels"  # the header declares more pixels than the pixel cap (or Pillow's bomb guard)
    CORRUPT = "corrupt"  # the header or the pixel data cannot be read (truncated, malformed)
    TIMEOUT = "timeout"  # the per-image time budget ran out
    PROCESSING_FAILED = "processing_failed"  # anything else; the message names the exception type


class ImagingFailure(Exception):
    """Raised inside the pipeline and turned into an error result at its boundary."""

    def __init__(self, code: ErrorCode, message: str, declared_size: tuple[int, int] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.declared_size = declared_size  # the header's width and height, when read before failing
