"""Faces (OpenCV Haar frontal-face cascade) and, optionally, people (HOG), on a small grayscale image.

The cascade XML ships in the opencv-python-headless 4.x wheel (`cv2.data.haarcascades`); nothing is downloaded.
OpenCV is limited to one thread: the workers scale by processes (FUNCTIONS_WORKER_PROCESS_COUNT), and OpenCV's own
thread pool would only make them fight for the same cores.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import cv2.data
import numpy as np
from PIL import Image

from shared.imaging.results import Box

FACE_CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Measured at 320 px (astronaut composites): 1.2 finds faces down to ~10 % of the long side in ~17-22 ms;
# 1.1 (OpenCV's default) also finds ~7 % faces but costs ~1.8x; 1.25 saves ~25 % and already misses 10 % faces.
FACE_SCALE_FACTOR = 1.2
FACE_MIN_NEIGHBORS = 4
FACE_MIN_SIZE = 24  # the cascade's own window
PEOPLE_LONG_SIDE = 640
PEOPLE_WINDOW = (64, 128)  # the default people detector's window (width, height)

cv2.setNumThreads(1)
_local = threading.local()  # detectors are not documented as thread-safe: one per thread


def _face_cascade() -> cv2.CascadeClassifier:
    cascade = getattr(_local, "face_cascade", None)
    if cascade is None:
        path = Path(cv2.data.haarcascades) / FACE_CASCADE_FILE
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise RuntimeError(f"the Haar cascade {path} could not be loaded (opencv-python-headless 4.x needed)")
        _local.face_cascade = cascade
    return cascade


def _people_detector() -> cv2.HOGDescriptor:
    hog = getattr(_local, "people_hog", None)
    if hog is None:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        _local.people_hog = hog
    return hog


def _gray_at(image: Image.Image, long_side: int) -> tuple[np.ndarray, float]:
    """The image as 8-bit grayscale with at most `long_side`, and the factor from it back to `image`."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    scale = min(1.0, long_side / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray, width / gray.shape[1]


def _to_boxes(rects: object, factor: float, bounds: tuple[int, int]) -> list[Box]:
    boxes = []
    for x, y, w, h in np.asarray(rects, dtype=np.float64).reshape(-1, 4):
        left, top = max(0, round(x * factor)), max(0, round(y * factor))
        right, bottom = min(bounds[0], round((x + w) * factor)), min(bounds[1], round((y + h) * factor))
        if right > left and bottom > top:
            boxes.append(Box(x=left, y=top, width=right - left, height=bottom - top))
    return sorted(boxes, key=lambda b: (b.y, b.x))


def detect_faces(image: Image.Image, detect_long_side: int, upright_size: tuple[int, int]) -> list[Box]:
    """Frontal faces in `image` (an upright working image), as boxes in the upright original's pixels."""
    gray, to_image = _gray_at(image, detect_long_side)
    if min(gray.shape) < FACE_MIN_SIZE:
        return []
    rects = _face_cascade().detectMultiScale(
        gray,
        scaleFactor=FACE_SCALE_FACTOR,
        minNeighbors=FACE_MIN_NEIGHBORS,
        minSize=(FACE_MIN_SIZE, FACE_MIN_SIZE),
    )
    return _to_boxes(rects, to_image * upright_size[0] / image.width, upright_size)


def detect_people(image: Image.Image, upright_size: tuple[int, int]) -> list[Box]:
    """Standing people (HOG + linear SVM); full bodies only, and false positives happen."""
    gray, to_image = _gray_at(image, PEOPLE_LONG_SIDE)
    height, width = gray.shape
    if width < PEOPLE_WINDOW[0] or height < PEOPLE_WINDOW[1]:
        return []  # smaller than the detector's window: OpenCV 4.14 aborts the process (double free) on these
    rects, _weights = _people_detector().detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.1)
    return _to_boxes(rects, to_image * upright_size[0] / image.width, upright_size)
