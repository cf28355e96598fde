"""Pure image work: bytes in, results out. No I/O, no Azure SDKs.

The one entry point is `process_image(data, options) -> ImageResult`; see docs/imaging.md.
"""

from shared.imaging.errors import ErrorCode
from shared.imaging.options import ImagingOptions, ThumbnailFormat
from shared.imaging.pipeline import process_image
from shared.imaging.results import Box, ExifFacts, ImageError, ImageResult, Thumbnail

__all__ = [
    "Box",
    "ErrorCode",
    "ExifFacts",
    "ImageError",
    "ImageResult",
    "ImagingOptions",
    "Thumbnail",
    "ThumbnailFormat",
    "process_image",
]
