"""Validation: formats are sniffed from bytes, caps are checked from the header, and bad input never raises."""

from __future__ import annotations

import io
import json
import random

import pytest
from PIL import Image

from shared.imaging import ErrorCode, ImagingOptions, ThumbnailFormat, process_image
from tests.imaging import corpus

SMALL = ImagingOptions(detect_faces=False)


def _accepted_samples() -> dict[str, bytes]:
    image = corpus.photo("rocket", 640)
    return {
        "jpeg": corpus.encode(image, "JPEG", quality=90),
        "png": corpus.encode(image, "PNG"),
        "webp": corpus.encode(image, "WEBP", quality=85),
        "gif": corpus.encode(image.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "bmp": corpus.encode(image, "BMP"),
        "tiff": corpus.encode(image, "TIFF", compression="tiff_lzw"),
        "avif": corpus.encode(image, "AVIF", quality=70),
    }


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "gif", "bmp", "tiff", "avif"])
def test_every_accepted_format_yields_facts_and_all_thumbnails(fmt: str) -> None:
    result = process_image(_accepted_samples()[fmt], SMALL)

    assert result.ok, result.error
    assert result.format == fmt
    assert (result.width, result.height) == (640, 427)
    assert [(t.size, t.format) for t in result.thumbnails] == [
        (size, f) for size in (600, 300, 150) for f in (ThumbnailFormat.JPEG, ThumbnailFormat.WEBP)
    ]
    for thumb in result.thumbnails:
        decoded = Image.open(io.BytesIO(thumb.data))
        assert decoded.format == thumb.format.name
        assert decoded.mode == "RGB"
        assert decoded.size == (thumb.width, thumb.height)
        assert max(decoded.size) == thumb.size


def test_thumbnails_are_never_upscaled() -> None:
    result = process_image(corpus.encode(corpus.photo("coffee", 200), "PNG"), SMALL)

    assert result.ok
    assert {(t.size, t.width, t.height) for t in result.thumbnails} == {
        (600, 200, 133),
        (300, 200, 133),
        (150, 150, 100),
    }


def test_thumbnail_sizes_and_formats_are_configurable() -> None:
    options = ImagingOptions(thumbnail_sizes=(64, 1000), thumbnail_formats=(ThumbnailFormat.WEBP,), detect_faces=False)
    result = process_image(corpus.encode(corpus.photo("coffee", 1200), "JPEG"), options)

    assert [(t.size, t.format, max(t.width, t.height)) for t in result.thumbnails] == [
        (1000, ThumbnailFormat.WEBP, 1000),
        (64, ThumbnailFormat.WEBP, 64),
    ]


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_INPUTS: dict[str, tuple[bytes, ErrorCode]] = {
    "zero bytes": (b"", ErrorCode.EMPTY),
    "random bytes": (random.Random(1).randbytes(5000), ErrorCode.UNSUPPORTED_FORMAT),
    "html named .jpg": (b"<!DOCTYPE html><html><body>not an image</body></html>", ErrorCode.UNSUPPORTED_FORMAT),
    "svg named .jpg": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        ErrorCode.UNSUPPORTED_FORMAT,
    ),
    "heic brand": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100, ErrorCode.UNSUPPORTED_FORMAT),
    "jpeg magic then garbage": (b"\xff\xd8\xff\xe0" + random.Random(2).randbytes(3000), ErrorCode.CORRUPT),
    "png signature only": (b"\x89PNG\r\n\x1a\n", ErrorCode.CORRUPT),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_an_error_result_not_an_exception(name: str) -> None:
    data, code = BAD_INPUTS[name]
    result = process_image(data, SMALL)

    assert not result.ok
    assert result.error is not None and result.error.code == code, result.error
    assert result.error.message
    assert result.thumbnails == []


def test_unsupported_format_messages_name_what_the_bytes_are() -> None:
    assert "HTML" in (process_image(BAD_INPUTS["html named .jpg"][0]).error or pytest.fail()).message
    assert "SVG" in (process_image(BAD_INPUTS["svg named .jpg"][0]).error or pytest.fail()).message
    assert "HEIC" in (process_image(BAD_INPUTS["heic brand"][0]).error or pytest.fail()).message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated_files_are_corrupt(fmt: str) -> None:
    image = corpus.photo("chelsea", 400)
    if fmt == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    result = process_image(_truncated(corpus.encode(image, fmt)), SMALL)

    assert result.error is not None and result.error.code == ErrorCode.CORRUPT, result.error


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = corpus.png_bomb(100_000, 100_000)
    assert len(bomb) < 2000

    result = process_image(bomb)

    assert result.error is not None and result.error.code == ErrorCode.TOO_MANY_PIXELS
    assert "decode" not in result.timings_ms  # refused before any pixel was decoded


def test_pixel_cap_is_checked_before_decoding() -> None:
    result = process_image(corpus.encode(corpus.photo("coffee", 1000), "PNG"), ImagingOptions(max_pixels=500_000))

    assert result.error is not None and result.error.code == ErrorCode.TOO_MANY_PIXELS
    assert (result.width, result.height) == (1000, 667)
    assert "decode" not in result.timings_ms


def test_byte_cap() -> None:
    data = corpus.encode(corpus.photo("coffee", 600), "PNG")
    result = process_image(data, ImagingOptions(max_bytes=len(data) - 1))

    assert result.error is not None and result.error.code == ErrorCode.TOO_LARGE
    assert result.sha256 is None


def test_an_image_that_cannot_fit_the_time_budget_times_out_instead_of_starting() -> None:
    data = corpus.encode(Image.new("RGB", (6000, 4000), "gray"), "PNG", compress_level=1)
    result = process_image(data, ImagingOptions(time_budget_seconds=0.05))

    assert result.error is not None and result.error.code == ErrorCode.TIMEOUT, result.error
    assert "decode" not in result.timings_ms


def test_a_spent_budget_between_stages_is_a_timeout() -> None:
    result = process_image(corpus.encode(corpus.photo("coffee", 600), "JPEG"), ImagingOptions(time_budget_seconds=1e-9))

    assert result.error is not None and result.error.code == ErrorCode.TIMEOUT
    assert result.thumbnails == []


def test_mutated_files_never_raise() -> None:
    rng = random.Random(7)
    sources = [
        corpus.encode(corpus.photo("rocket", 300), "JPEG"),
        corpus.encode(corpus.photo("rocket", 300), "PNG"),
        corpus.animated_gif(),
        corpus.encode(corpus.photo("rocket", 300), "WEBP"),
        corpus.encode(corpus.photo("rocket", 300), "TIFF"),
        corpus.encode(corpus.photo("rocket", 300), "BMP"),
        corpus.encode(corpus.photo("rocket", 300), "AVIF"),  # its decoder reports damage as RuntimeError
        corpus.cmyk_jpeg(),
    ]
    codes = set()
    for _ in range(400):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(8, min(len(data), 400) if rng.random() < 0.7 else len(data))] = rng.randrange(256)
        result = process_image(bytes(data), SMALL)
        codes.add(result.error.code if result.error else "ok")
    assert ErrorCode.PROCESSING_FAILED not in codes, codes
    assert ErrorCode.CORRUPT in codes


def test_result_is_json_without_the_thumbnail_bytes() -> None:
    result = process_image(corpus.encode(corpus.photo("astronaut", 800), "JPEG"))

    document = json.loads(result.model_dump_json())
    assert "thumbnails" not in document
    assert document["ok"] is True
    assert document["error"] is None
    assert len(document["sha256"]) == 64
    assert all(len(document[key]) == 16 for key in ("phash", "dhash", "phash_mirror"))
    assert document["faces"] and set(document["faces"][0]) == {"x", "y", "width", "height"}
    assert len(result.thumbnails) == 6


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (1, 5000), (5000, 1), (63, 127), (17, 4000)])
def test_tiny_and_extreme_aspect_images_with_every_analysis(size: tuple[int, int]) -> None:
    """OpenCV 4.14's HOG aborts the whole process (double free) on images smaller than its window: guarded."""
    data = corpus.encode(Image.new("RGB", size, (10, 200, 30)), "PNG")

    result = process_image(data, ImagingOptions(detect_people=True))

    assert result.ok, result.error
    assert result.faces == [] and result.people == []
    assert all(min(t.width, t.height) >= 1 and max(t.width, t.height) <= t.size for t in result.thumbnails)
