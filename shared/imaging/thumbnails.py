"""Working images and thumbnails: one resize from the decoded image, then a downward cascade, each step from the
previous (smaller) result, so the full-size pixels are resampled only once."""

from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import Image

from shared.imaging.budget import Deadline
from shared.imaging.color import resizable, to_srgb_rgb
from shared.imaging.decode import DecodedImage
from shared.imaging.options import ImagingOptions, ThumbnailFormat
from shared.imaging.results import Thumbnail

_TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The size with the given long side and the same aspect ratio; never larger than the original."""
    longest = max(width, height)
    if longest <= long_side:
        return width, height
    scale = long_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def working_images(
    decoded: DecodedImage,
    stored_size: tuple[int, int],
    long_sides: Iterable[int],
    orientation: int,
    icc_profile: bytes | None,
    deadline: Deadline,
) -> dict[int, Image.Image]:
    """Upright 8-bit sRGB RGB images keyed by requested long side (largest first)."""
    sides = sorted(set(long_sides), reverse=True)
    width, height = stored_size
    source = resizable(decoded.image)
    first_size = fit_long_side(width, height, sides[0])
    full_box = (0.0, 0.0, float(source.width), float(source.height))
    if first_size != source.size or decoded.box != full_box:
        # Bicubic for the one large step (about half the cost of Lanczos, >= 42 dB against a full-decode
        # Lanczos resize in the tests), Lanczos for the cascade. reducing_gap: an integer box reduction first while the
        # remaining factor stays >= 2.
        first = source.resize(first_size, Image.Resampling.BICUBIC, box=decoded.box, reducing_gap=2.0)
    else:
        first = source
    first = to_srgb_rgb(first, icc_profile)
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    if transpose is not None:
        first = first.transpose(transpose)
    deadline.check("resize")
    upright_w, upright_h = upright_size(width, height, orientation)
    images = {sides[0]: first}
    previous = first
    for side in sides[1:]:
        size = fit_long_side(upright_w, upright_h, side)
        current = previous if size == previous.size else previous.resize(size, Image.Resampling.LANCZOS)
        images[side] = current
        previous = current
    deadline.check("resize")
    return images


def encode_thumbnails(images: dict[int, Image.Image], options: ImagingOptions, deadline: Deadline) -> list[Thumbnail]:
    """Encodes each requested size in each format; no metadata (EXIF, GPS, ICC) is written."""
    thumbnails: list[Thumbnail] = []
    for side in options.thumbnail_sizes:
        image = images[side]
        for fmt in options.thumbnail_formats:
            buffer = io.BytesIO()
            if fmt is ThumbnailFormat.JPEG:
                image.save(buffer, "JPEG", quality=options.jpeg_quality)
            else:
                image.save(buffer, "WEBP", quality=options.webp_quality, method=options.webp_method)
            thumbnails.append(Thumbnail(side, fmt, buffer.getvalue(), image.width, image.height))
        deadline.check("encode")
    return thumbnails
