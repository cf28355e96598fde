"""Every input mode ends as 8-bit sRGB RGB thumbnails, with the right colours."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from shared.imaging import ImagingOptions, process_image
from tests.imaging import corpus

OPTIONS = ImagingOptions(detect_faces=False, thumbnail_sizes=(300,))


def _thumbnail_pixels(data: bytes) -> np.ndarray:
    result = process_image(data, OPTIONS)
    assert result.ok, result.error
    image = Image.open(io.BytesIO(result.thumbnails[0].data))
    assert image.mode == "RGB"
    return np.asarray(image).astype(np.int32)


def test_cmyk_jpeg_becomes_rgb_with_the_same_colours() -> None:
    source = corpus.photo("coffee", 600)
    pixels = _thumbnail_pixels(corpus.encode(source.convert("CMYK"), "JPEG", quality=95))

    expected = np.asarray(source.convert("CMYK").convert("RGB").resize((300, 200))).astype(np.int32)
    assert np.abs(pixels.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 6


def test_16_bit_grayscale_png_is_scaled_not_clipped() -> None:
    result = process_image(corpus.png16_gray(), OPTIONS)
    assert result.mode is not None and result.mode.startswith("I")

    pixels = _thumbnail_pixels(corpus.png16_gray())

    row = pixels[pixels.shape[0] // 2, :, 0]
    assert row[0] < 10 and row[-1] > 245
    assert 110 < row[len(row) // 2] < 145, "a 16-bit ramp's middle is mid-gray, not white"


def test_palette_with_transparency_is_flattened_on_white() -> None:
    pixels = _thumbnail_pixels(corpus.palette_png_with_transparency())

    left = pixels[:, : pixels.shape[1] // 2 - 4].reshape(-1, 3)
    assert left.mean() > 250 and left.min() > 225, "the transparent half is white (up to JPEG ringing)"
    right_mean = pixels[:, pixels.shape[1] // 2 + 4 :].reshape(-1, 3).mean(axis=0)
    assert right_mean[2] > 100 and right_mean[0] > 100, "the right half mixes blue and white rows"


def test_alpha_is_composited_on_white() -> None:
    pixels = _thumbnail_pixels(corpus.rgba_png())

    assert pixels[:4].mean() > 245, "alpha 0 at the top shows the white background"
    assert pixels[-4:].mean() < 200, "the opaque bottom shows the photo"


def test_grayscale_and_progressive_jpeg() -> None:
    gray = _thumbnail_pixels(corpus.encode(corpus.photo("camera", 600).convert("L"), "JPEG"))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()

    progressive = corpus.encode(corpus.photo("rocket", 900), "JPEG", progressive=True, quality=85)
    assert b"\xff\xc2" in progressive  # SOF2: progressive DCT
    assert _thumbnail_pixels(progressive).shape == (200, 300, 3)


def test_embedded_non_srgb_icc_profile_is_converted_to_srgb() -> None:
    source = Image.new("RGB", (400, 300), (200, 120, 40))
    tagged = corpus.encode(source, "PNG", icc_profile=corpus.adobe_rgb_like_icc_profile())

    untagged_pixel = _thumbnail_pixels(corpus.encode(source, "PNG"))[150, 150]
    tagged_pixel = _thumbnail_pixels(tagged)[150, 150]

    assert np.abs(untagged_pixel - (200, 120, 40)).max() <= 3
    # littleCMS maps this Adobe-RGB orange to sRGB (224, 121, 25).
    assert np.abs(tagged_pixel - (224, 121, 25)).max() <= 3, tagged_pixel
