"""Facts: checksum, size, mode, frames, EXIF (orientation, camera, capture time, GPS presence only)."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from shared.imaging import ImagingOptions, process_image
from tests.imaging import corpus

NO_ANALYSES = ImagingOptions(detect_faces=False, compute_hashes=False)


def test_sha256_is_of_the_original_bytes() -> None:
    data = corpus.encode(corpus.photo("coffee", 500), "JPEG")
    assert process_image(data, NO_ANALYSES).sha256 == hashlib.sha256(data).hexdigest()


def test_camera_capture_time_and_gps_presence_are_read_but_gps_is_never_copied() -> None:
    gps = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}
    data = corpus.jpeg_with_exif(
        corpus.photo("chelsea", 800),
        t010f="Canon",
        t0110="EOS 5D\x00",
        exif_ifd={0x9003: "2024:05:17 14:03:22", 0x9011: "+02:00"},
        gps_ifd=gps,
    )
    assert b"EOS 5D" in data

    result = process_image(data, NO_ANALYSES)

    assert result.exif is not None
    assert (result.exif.camera_make, result.exif.camera_model) == ("Canon", "EOS 5D")
    assert result.exif.taken_at == "2024-05-17T14:03:22+02:00"
    assert result.exif.has_gps is True
    assert "52" not in result.model_dump_json(include={"exif"})
    for thumb in result.thumbnails:
        assert not Image.open(io.BytesIO(thumb.data)).getexif(), "thumbnails carry no EXIF at all"
        assert b"Canon" not in thumb.data


def test_no_exif_gives_defaults() -> None:
    result = process_image(corpus.encode(corpus.photo("rocket", 300), "PNG"), NO_ANALYSES)

    assert result.exif is not None
    assert result.exif.model_dump() == {
        "orientation": 1,
        "camera_make": None,
        "camera_model": None,
        "taken_at": None,
        "has_gps": False,
    }


def test_malformed_exif_does_not_fail_the_image() -> None:
    data = corpus.encode(corpus.photo("rocket", 300), "JPEG")
    app1 = b"Exif\x00\x00" + b"II*\x00\xff\xff\xff\x7f" + b"\x01" * 40
    broken = data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]

    result = process_image(broken, NO_ANALYSES)

    assert result.ok, result.error
    assert result.exif is not None and result.exif.orientation == 1


def test_mode_and_frames_of_an_animated_gif_first_frame_is_used() -> None:
    result = process_image(corpus.animated_gif(), NO_ANALYSES)

    assert result.ok, result.error
    assert (result.format, result.frames, result.mode) == ("gif", 3, "P")
    first = Image.open(io.BytesIO(result.thumbnails[0].data)).convert("RGB")
    red, green, blue = first.getpixel((first.width // 2, first.height // 2))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60, "the first (red) frame"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_are_applied_to_thumbnails(orientation: int) -> None:
    upright = corpus.photo("astronaut", 400).crop((0, 0, 400, 300))  # landscape, so rotations show in the size
    data = corpus.oriented_jpeg(upright, orientation)

    result = process_image(data, ImagingOptions(detect_faces=False, thumbnail_sizes=(200,)))

    assert result.ok and result.exif is not None
    assert result.exif.orientation == orientation
    assert (result.upright_width, result.upright_height) == (400, 300)
    stored = (result.width, result.height)
    assert stored == ((300, 400) if orientation >= 5 else (400, 300))
    thumb = Image.open(io.BytesIO(result.thumbnails[0].data)).convert("L")
    assert thumb.size == (200, 150)
    expected = upright.convert("L").resize((200, 150), Image.Resampling.LANCZOS)
    mean_abs_diff = sum(abs(a - b) for a, b in zip(thumb.getdata(), expected.getdata(), strict=True)) / (200 * 150)
    assert mean_abs_diff < 6, f"orientation {orientation}: the thumbnail is not upright ({mean_abs_diff:.1f})"
