"""Opening (header only, with the caps checked) and the single, reduced-scale decode."""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from shared.imaging.budget import DECODE_NS_PER_PIXEL, Deadline
from shared.imaging.errors import ErrorCode, ImagingFailure
from shared.imaging.jpeg_scans import MAX_JPEG_SCANS, count_jpeg_scans
from shared.imaging.options import ImagingOptions
from shared.imaging.sniff import ImageFormat, describe_unsupported, sniff_format

# What Pillow and its plugins raise on malformed input, besides UnidentifiedImageError (an OSError). The AVIF
# plugin reports decoder failures as RuntimeError; header parsers leak struct.error.
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    RuntimeError,
    struct.error,
)


@dataclass
class OpenedImage:
    """An image whose header is read and checked; no pixel data decoded yet."""

    image: Image.Image
    format: ImageFormat
    width: int
    height: int
    mode: str
    frames: int
    icc_profile: bytes | None


@dataclass
class DecodedImage:
    """The first frame's pixels, possibly at a reduced scale. `box` is the region of `image` that maps onto the
    whole original: a JPEG decoded at 1/2..1/8 scale has its size rounded up, and resizing from the exact region
    (not the rounded one) keeps the thumbnails aligned with a full-decode resize."""

    image: Image.Image
    box: tuple[float, float, float, float]


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def too_many_pixels_message(exc: Image.DecompressionBombError, max_pixels: int) -> str:
    """The message for Pillow's decompression-bomb guard, naming the configured cap (not Pillow's own limit,
    which users cannot set and which is not the cap the service applies)."""
    found = _BOMB_PIXELS.search(str(exc))
    declared = f"{int(found.group(1))} pixels" if found else "more pixels than can be opened"
    return f"the image declares {declared}, more than the cap of {max_pixels}"


def open_header(data: bytes, options: ImagingOptions, deadline: Deadline) -> OpenedImage:
    if not data:
        raise ImagingFailure(ErrorCode.EMPTY, "the image has zero bytes")
    if len(data) > options.max_bytes:
        raise ImagingFailure(ErrorCode.TOO_LARGE, f"{len(data)} bytes exceed the cap of {options.max_bytes}")
    image_format = sniff_format(data)
    if image_format is None:
        raise ImagingFailure(ErrorCode.UNSUPPORTED_FORMAT, describe_unsupported(data))
    if image_format is ImageFormat.JPEG:
        scans = count_jpeg_scans(data)
        if scans > MAX_JPEG_SCANS:
            raise ImagingFailure(
                ErrorCode.CORRUPT,
                f"the JPEG has more than {MAX_JPEG_SCANS} scans (an ordinary progressive JPEG has ~10); "
                "refused before decoding, as each scan costs a pass over the whole image",
            )
    try:
        # Only the sniffed format's plugin may parse the bytes. Pillow's decompression-bomb guard runs here.
        image = Image.open(io.BytesIO(data), formats=[image_format.pillow_name])
        width, height = image.size
    except Image.DecompressionBombError as exc:
        raise ImagingFailure(ErrorCode.TOO_MANY_PIXELS, too_many_pixels_message(exc, options.max_pixels)) from None
    except UnidentifiedImageError:
        raise ImagingFailure(ErrorCode.CORRUPT, f"the {image_format} header cannot be read") from None
    except _DECODER_ERRORS as exc:
        raise ImagingFailure(ErrorCode.CORRUPT, f"the {image_format} header is malformed: {exc}") from None
    if width <= 0 or height <= 0:
        raise ImagingFailure(ErrorCode.CORRUPT, f"the header declares a size of {width}x{height}")
    deadline.check("open")
    if width * height > options.max_pixels:
        raise ImagingFailure(
            ErrorCode.TOO_MANY_PIXELS,
            f"{width}x{height} = {width * height} pixels exceed the cap of {options.max_pixels}",
            declared_size=(width, height),
        )
    try:
        frames = int(getattr(image, "n_frames", 1))
        image.seek(0)
    except Image.DecompressionBombError as exc:
        raise ImagingFailure(ErrorCode.TOO_MANY_PIXELS, too_many_pixels_message(exc, options.max_pixels)) from None
    except _DECODER_ERRORS as exc:
        raise ImagingFailure(ErrorCode.CORRUPT, f"the {image_format} frames are malformed: {exc}") from None
    deadline.check("frames")
    icc = image.info.get("icc_profile")
    return OpenedImage(
        image=image,
        format=image_format,
        width=width,
        height=height,
        mode=image.mode,
        frames=max(frames, 1),
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
    )


def decode_reduced(opened: OpenedImage, long_side: int, deadline: Deadline, max_pixels: int) -> DecodedImage:
    """Decodes the first frame, for JPEG at the smallest DCT scale (1/1..1/8) still >= `long_side`."""
    image = opened.image
    width, height = opened.width, opened.height
    box: tuple[float, float, float, float] = (0.0, 0.0, float(width), float(height))
    decoded_pixels = width * height
    if opened.format is ImageFormat.JPEG and max(width, height) > long_side:
        scale = long_side / max(width, height)
        requested = (max(1, round(width * scale)), max(1, round(height * scale)))
        drafted = image.draft("RGB" if image.mode in ("RGB", "YCbCr") else image.mode, requested)
        if drafted is not None:
            _, draft_box = drafted
            box = (float(draft_box[0]), float(draft_box[1]), float(draft_box[2]), float(draft_box[3]))
            decoded_pixels = image.size[0] * image.size[1]
    ns_per_pixel = DECODE_NS_PER_PIXEL.get(opened.format.value, DECODE_NS_PER_PIXEL["default"])
    deadline.require(decoded_pixels * ns_per_pixel / 1e9, "decode")
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImagingFailure(ErrorCode.TOO_MANY_PIXELS, too_many_pixels_message(exc, max_pixels)) from None
    except MemoryError:
        raise ImagingFailure(ErrorCode.TOO_MANY_PIXELS, "not enough memory to decode the image") from None
    except _DECODER_ERRORS as exc:
        raise ImagingFailure(ErrorCode.CORRUPT, f"the {opened.format} pixel data cannot be decoded: {exc}") from None
    deadline.check("decode")
    return DecodedImage(image=image, box=box)
