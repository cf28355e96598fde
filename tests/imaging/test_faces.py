"""Faces: the Haar cascade finds the astronaut's face, in original coordinates, whatever the EXIF orientation."""

from __future__ import annotations

import pytest
from PIL import Image

from shared.imaging import ImagingOptions, process_image
from tests.imaging import corpus

# The astronaut's face in skimage's 512x512 original spans about x 170-280, y 60-170.
FACE_512 = (170, 60, 280, 170)


def _face_region(long_side: int) -> tuple[float, float, float, float]:
    scale = long_side / 512
    return tuple(v * scale for v in FACE_512)  # type: ignore[return-value]


@pytest.mark.parametrize("long_side", [512, 1600, 3000])
def test_the_astronauts_face_is_found_in_original_coordinates(long_side: int) -> None:
    data = corpus.encode(corpus.photo("astronaut", long_side), "JPEG", quality=90)

    result = process_image(data)

    assert result.ok and result.faces is not None
    assert len(result.faces) == 1, result.faces
    face = result.faces[0]
    left, top, right, bottom = _face_region(long_side)
    center_x, center_y = face.x + face.width / 2, face.y + face.height / 2
    assert left < center_x < right and top < center_y < bottom, (face, long_side)
    assert 0.5 < face.width / (right - left) < 1.6


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_face_boxes_are_in_the_upright_frame(orientation: int) -> None:
    upright = corpus.photo("astronaut", 1024)
    result = process_image(corpus.oriented_jpeg(upright, orientation))

    assert result.faces is not None and len(result.faces) == 1
    face = result.faces[0]
    left, top, right, bottom = _face_region(1024)
    assert left < face.x + face.width / 2 < right and top < face.y + face.height / 2 < bottom


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_no_faces_in_photos_without_people(name: str) -> None:
    result = process_image(corpus.encode(corpus.photo(name, 1200), "JPEG"))

    assert result.faces == []


def test_analyses_run_only_when_asked() -> None:
    data = corpus.encode(corpus.photo("astronaut", 800), "JPEG")

    off = process_image(data, ImagingOptions(detect_faces=False, compute_hashes=False))
    assert off.faces is None and off.people is None and off.phash is None

    people = process_image(data, ImagingOptions(detect_people=True))
    assert people.people is not None and people.faces is not None


def test_two_faces_side_by_side_and_a_face_a_tenth_of_the_image() -> None:
    astronaut = corpus.photo("astronaut", 512)
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    canvas = Image.new("RGB", (1024, 682), (90, 110, 130))
    canvas.paste(astronaut, (340, 40))  # the face is ~100 px of 1024: about the smallest found at 320 px

    pair_faces = process_image(corpus.encode(pair, "JPEG")).faces
    canvas_faces = process_image(corpus.encode(canvas, "JPEG")).faces

    assert pair_faces is not None and sorted(f.x // 512 for f in pair_faces) == [0, 1]
    assert canvas_faces is not None and len(canvas_faces) == 1
    assert 340 + 170 < canvas_faces[0].x + canvas_faces[0].width / 2 < 340 + 280
