"""process_image: bytes in, an ImageResult out. Bad input never raises; it yields a result with an error code."""

from __future__ import annotations

import hashlib

from PIL import Image

from shared.imaging.budget import Deadline
from shared.imaging.decode import decode_reduced, open_header, too_many_pixels_message
from shared.imaging.errors import ErrorCode, ImagingFailure
from shared.imaging.exif_facts import read_exif_facts
from shared.imaging.faces import detect_faces, detect_people
from shared.imaging.options import ImagingOptions
from shared.imaging.perceptual import HASH_LONG_SIDE, perceptual_hashes
from shared.imaging.results import ImageError, ImageResult
from shared.imaging.thumbnails import encode_thumbnails, upright_size, working_images


def process_image(data: bytes, options: ImagingOptions | None = None) -> ImageResult:
    options = options or ImagingOptions()
    deadline = Deadline(options.time_budget_seconds)
    result = ImageResult(ok=False, byte_size=len(data))
    try:
        _run(data, options, deadline, result)
        result.ok = True
    except ImagingFailure as failure:
        result.error = ImageError(code=failure.code, message=failure.message)
        if failure.declared_size is not None:
            result.width, result.height = failure.declared_size
    except Image.DecompressionBombError as exc:  # from a later frame or a plugin's own check
        result.error = ImageError(
            code=ErrorCode.TOO_MANY_PIXELS, message=too_many_pixels_message(exc, options.max_pixels)
        )
    except MemoryError:
        result.error = ImageError(code=ErrorCode.TOO_MANY_PIXELS, message="not enough memory for the image")
    except Exception as exc:  # a file that trips a library bug must still not fail the chunk
        result.error = ImageError(code=ErrorCode.PROCESSING_FAILED, message=f"{type(exc).__name__}: {str(exc)[:300]}")
    if not result.ok:
        result.thumbnails = []
    result.timings_ms = deadline.timings_ms()
    return result


def _run(data: bytes, options: ImagingOptions, deadline: Deadline, result: ImageResult) -> None:
    if data and len(data) <= options.max_bytes:
        result.sha256 = hashlib.sha256(data).hexdigest()
    opened = open_header(data, options, deadline)
    result.format = opened.format.value
    result.width, result.height = opened.width, opened.height
    result.mode, result.frames = opened.mode, opened.frames
    sides = set(options.thumbnail_sizes)
    if options.compute_hashes:
        sides.add(HASH_LONG_SIDE)
    detection_side: int | None = None
    if options.detect_faces or options.detect_people:
        # Detection reads the smallest working image at least as large as it needs (resized in OpenCV from there).
        detection_side = min((s for s in sides if s >= options.face_detection_size), default=None)
        if detection_side is None:
            detection_side = options.face_detection_size
            sides.add(detection_side)
    # Decoded before the EXIF is read: PNG keeps EXIF after the pixel data, and reading it would decode early.
    decoded = decode_reduced(opened, max(sides, default=HASH_LONG_SIDE), deadline, options.max_pixels)
    exif = read_exif_facts(opened.image)
    result.exif = exif
    upright = upright_size(opened.width, opened.height, exif.orientation)
    result.upright_width, result.upright_height = upright
    deadline.check("facts")
    if not sides:
        return
    images = working_images(
        decoded, (opened.width, opened.height), sides, exif.orientation, opened.icc_profile, deadline
    )
    result.thumbnails = encode_thumbnails(images, options, deadline)

    if options.compute_hashes:
        result.phash, result.dhash, result.phash_mirror = perceptual_hashes(images[HASH_LONG_SIDE])
        deadline.check("hashes")
    if options.detect_faces and detection_side is not None:
        result.faces = detect_faces(images[detection_side], options.face_detection_size, upright)
        deadline.check("faces")
    if options.detect_people and detection_side is not None:
        result.people = detect_people(images[max(sides)], upright)
        deadline.check("people")
