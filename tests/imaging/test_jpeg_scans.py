"""The scan limit: a progressive JPEG that repeats its scans is refused from its markers, before any decode."""

from __future__ import annotations

import time

from PIL import Image

from shared.imaging import ErrorCode, ImagingOptions, process_image
from shared.imaging.jpeg_scans import MAX_JPEG_SCANS, count_jpeg_scans
from tests.imaging import corpus

SMALL = ImagingOptions(detect_faces=False)


def test_scan_bomb_is_refused_before_decoding() -> None:
    bomb = corpus.progressive_jpeg_scan_bomb(3000)  # ~10 s of libjpeg CPU per 1,000 copies on a 4096 px image
    assert len(bomb) < 400_000

    started = time.process_time()
    result = process_image(bomb, SMALL)
    cpu_seconds = time.process_time() - started

    assert result.error is not None and result.error.code == ErrorCode.CORRUPT, result.error
    assert f"more than {MAX_JPEG_SCANS} scans" in result.error.message
    assert "decode" not in result.timings_ms
    assert cpu_seconds < 2.0  # generous: the refusal costs milliseconds; the decode would cost ~30 s


def test_a_jpeg_at_the_limit_is_accepted_and_one_past_it_refused() -> None:
    image = Image.new("RGB", (256, 256), (10, 200, 90))
    base_scans = count_jpeg_scans(corpus.progressive_jpeg_scan_bomb(0, image))
    at_limit = corpus.progressive_jpeg_scan_bomb(MAX_JPEG_SCANS - base_scans, image)
    past_limit = corpus.progressive_jpeg_scan_bomb(MAX_JPEG_SCANS - base_scans + 1, image)

    assert count_jpeg_scans(at_limit) == MAX_JPEG_SCANS
    assert process_image(at_limit, SMALL).ok
    refused = process_image(past_limit, SMALL)
    assert refused.error is not None and refused.error.code == ErrorCode.CORRUPT


def test_scans_are_counted_from_the_segment_structure() -> None:
    photo = corpus.photo("rocket", 640)
    assert count_jpeg_scans(corpus.encode(photo, "JPEG", quality=90)) == 1
    assert count_jpeg_scans(corpus.encode(photo, "JPEG", quality=90, progressive=True)) == 10
    assert count_jpeg_scans(corpus.encode(photo.convert("L"), "JPEG", progressive=True)) == 6


def test_scans_inside_an_embedded_thumbnail_are_not_counted() -> None:
    # An APP1 segment carrying a JPEG (as an EXIF thumbnail does) with hundreds of scans of its own: skipped by length.
    embedded = corpus.progressive_jpeg_scan_bomb(500, Image.new("RGB", (64, 64)))
    assert len(embedded) < 65_000
    outer = corpus.encode(corpus.photo("coffee", 400), "JPEG", quality=85, progressive=True)
    app1 = b"\xff\xe1" + (len(embedded) + 2).to_bytes(2, "big") + embedded
    with_thumbnail = outer[:2] + app1 + outer[2:]

    assert count_jpeg_scans(with_thumbnail) == 10
    assert process_image(with_thumbnail, SMALL).ok


def test_restart_markers_and_fill_bytes_do_not_end_a_scan() -> None:
    photo = corpus.photo("chelsea", 300)
    with_restarts = corpus.encode(photo, "JPEG", quality=90, progressive=True, restart_marker_blocks=4)
    assert b"\xff\xd0" in with_restarts
    assert count_jpeg_scans(with_restarts) == 10
    padded = with_restarts[:-2] + b"\xff\xff\xff" + with_restarts[-2:]  # fill bytes before EOI
    assert count_jpeg_scans(padded) == 10


def test_malformed_structure_is_left_to_the_decoder() -> None:
    data = corpus.encode(corpus.photo("coffee", 300), "JPEG", quality=90, progressive=True)
    assert count_jpeg_scans(data[: len(data) // 2]) <= 10
    assert count_jpeg_scans(b"\xff\xd8\xff") == 0
    assert count_jpeg_scans(b"\xff\xd8\xff\xc0\x00\x01") == 0
    result = process_image(data[: len(data) // 2], SMALL)
    assert result.error is not None and result.error.code == ErrorCode.CORRUPT


def test_too_many_pixels_names_the_configured_cap() -> None:
    bomb = corpus.png_bomb(100_000, 100_000)  # past Pillow's own guard (178,956,970 pixels), which fires first

    result = process_image(bomb, ImagingOptions(max_pixels=50_000_000))

    assert result.error is not None and result.error.code == ErrorCode.TOO_MANY_PIXELS
    assert "50000000" in result.error.message
    assert "178956970" not in result.error.message
    assert "10000000000 pixels" in result.error.message
