"""The few EXIF facts kept: orientation, camera, capture time, and whether GPS data is present (never its value)."""

from __future__ import annotations

import re

from PIL import Image

from shared.imaging.results import ExifFacts

_ORIENTATION = 0x0112
_MAKE = 0x010F
_MODEL = 0x0110
_DATETIME = 0x0132
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011

_EXIF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def _text(value: object, limit: int = 64) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value.replace("\x00", "") if ch.isprintable()).strip()
    return cleaned[:limit] or None


def _iso_datetime(value: object, offset: object) -> str | None:
    text = _text(value)
    match = _EXIF_DATETIME.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61 and year > 0):
        return None
    iso = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    offset_text = _text(offset)
    if offset_text and _OFFSET.match(offset_text):
        iso += offset_text
    return iso


def read_exif_facts(image: Image.Image) -> ExifFacts:
    """Reads the facts from the image's EXIF block; malformed EXIF yields defaults, never an error."""
    try:
        exif = image.getexif()
        orientation = exif.get(_ORIENTATION, 1)
        if not isinstance(orientation, int) or not 1 <= orientation <= 8:
            orientation = 1
        exif_ifd = exif.get_ifd(_EXIF_IFD) if _EXIF_IFD in exif else {}
        taken_at = _iso_datetime(
            exif_ifd.get(_DATETIME_ORIGINAL), exif_ifd.get(_OFFSET_TIME_ORIGINAL)
        ) or _iso_datetime(exif.get(_DATETIME), None)
        has_gps = False
        if _GPS_IFD in exif:
            has_gps = bool(exif.get_ifd(_GPS_IFD)) or bool(exif.get(_GPS_IFD))
        return ExifFacts(
            orientation=orientation,
            camera_make=_text(exif.get(_MAKE)),
            camera_model=_text(exif.get(_MODEL)),
            taken_at=taken_at,
            has_gps=has_gps,
        )
    except Exception:  # malformed EXIF is common in the wild and must not fail the image
        return ExifFacts()
