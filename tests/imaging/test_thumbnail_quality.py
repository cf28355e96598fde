"""The one reduced decode + cascade stays within 40 dB PSNR of a full decode resized with Lanczos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.imaging import ImagingOptions
from shared.imaging.budget import Deadline
from shared.imaging.decode import decode_reduced, open_header
from shared.imaging.thumbnails import fit_long_side, working_images
from tests.imaging import corpus

SIDES = (600, 300, 150)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float((diff**2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize(
    ("name", "size", "fmt"),
    [
        ("astronaut", (1732, 1155), "JPEG"),  # 2 MP: decoded at 1/2, rounded-up size
        ("coffee", (4000, 3000), "JPEG"),  # 12 MP: decoded at 1/4
        ("rocket", (2401, 1601), "JPEG"),  # odd sizes: the DCT-scaled box is fractional
        ("chelsea", (3001, 2001), "PNG"),  # no reduced decode: integer pre-reduction then resampling
        ("camera", (1500, 1500), "WEBP"),
    ],
)
def test_cascade_matches_a_full_decode_lanczos_resize(name: str, size: tuple[int, int], fmt: str) -> None:
    source = corpus.photo(name, max(size)).resize(size)
    data = corpus.encode(source, fmt, quality=92) if fmt != "PNG" else corpus.encode(source, fmt)
    options = ImagingOptions()
    deadline = Deadline(30)
    opened = open_header(data, options, deadline)
    decoded = decode_reduced(opened, max(SIDES), deadline, options.max_pixels)
    if fmt == "JPEG":
        assert max(decoded.image.size) < max(size), "the JPEG was decoded at a reduced scale"

    images = working_images(decoded, size, SIDES, 1, None, deadline)

    full = Image.open(io.BytesIO(data)).convert("RGB")
    for side in SIDES:
        expected_size = fit_long_side(*size, side)
        assert images[side].size == expected_size
        reference = full.resize(expected_size, Image.Resampling.LANCZOS)
        assert _psnr(images[side], reference) >= 40.0, f"{side} px"
