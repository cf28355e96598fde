"""Which format the bytes are, from their magic numbers alone (never from a file name or a content type)."""

from __future__ import annotations

from enum import StrEnum


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    BMP = "bmp"
    TIFF = "tiff"
    AVIF = "avif"

    @property
    def pillow_name(self) -> str:
        """The name of the one Pillow plugin allowed to open it."""
        return self.value.upper()


_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _iso_bmff_brands(data: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF `ftyp` box (HEIF, AVIF), or an empty set."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return set()
    box_size = int.from_bytes(data[0:4], "big")
    end = min(max(box_size, 16), len(data), 256)
    brands = {data[8:12]}
    brands.update(data[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def sniff_format(data: bytes) -> ImageFormat | None:
    """The accepted format the bytes start with, or None."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    if head[:2] == b"BM" and len(head) >= 26:
        return ImageFormat.BMP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageFormat.TIFF
    if _iso_bmff_brands(data) & _AVIF_BRANDS:
        return ImageFormat.AVIF
    return None


def describe_unsupported(data: bytes) -> str:
    """A short human description of bytes that are not an accepted image, for the error message."""
    if _iso_bmff_brands(data) & _HEIF_BRANDS:
        return "HEIC/HEIF is not supported (no HEVC decoder is installed)"
    text = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "SVG (vector graphics) is not accepted"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "the bytes are an HTML document, not an image"
    if data[:4] == b"%PDF":
        return "the bytes are a PDF document, not an image"
    if data[:4] in (b"II+\x00", b"MM\x00+"):
        return "BigTIFF is not supported"
    return "the bytes are not JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF"
