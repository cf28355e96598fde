"""The test corpus, generated in memory from scikit-image's bundled sample photos (nothing is downloaded)."""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data as samples

# Photographs bundled in scikit-image's wheel (those needing a download are left out).
PHOTO_NAMES = (
    "astronaut",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "stereo_motorcycle",
    "brick",
    "gravel",
)


@cache
def photo(name: str, long_side: int = 1200) -> Image.Image:
    """A sample photo as RGB, resized to the given long side, with mild sensor-like grain."""
    pixels = getattr(samples, name)()
    if isinstance(pixels, tuple):  # stereo pairs: the left image
        pixels = pixels[0]
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(sum(map(ord, name)))
    noisy = np.asarray(image).astype(np.int16) + rng.normal(0, 3, (image.height, image.width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg_with_exif(image: Image.Image, **tags: object) -> bytes:
    """A JPEG carrying EXIF tags given as {hex tag id: value} keywords, e.g. t0112=6, plus exif_ifd/gps_ifd."""
    exif = Image.Exif()
    for key, value in tags.items():
        if key.startswith("t"):
            exif[int(key[1:], 16)] = value
    if "exif_ifd" in tags:
        exif.get_ifd(0x8769).update(tags["exif_ifd"])  # type: ignore[call-overload]
    if "gps_ifd" in tags:
        exif.get_ifd(0x8825).update(tags["gps_ifd"])  # type: ignore[call-overload]
    return encode(image, "JPEG", quality=90, exif=exif)


def oriented_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """Stores `upright` so that a viewer applying EXIF `orientation` shows `upright` again."""
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = upright if inverse is None else upright.transpose(inverse)
    return jpeg_with_exif(stored, t0112=orientation)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small PNG whose header declares width x height 8-bit grayscale pixels (the data is a few zero rows)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def cmyk_jpeg() -> bytes:
    return encode(photo("coffee", 600).convert("CMYK"), "JPEG", quality=90)


def png16_gray() -> bytes:
    ramp = (np.linspace(0, 65535, 400, dtype=np.float64)[None, :] * np.ones((300, 1))).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (320, 240), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    for x in range(160, 320):
        for y in range(0, 240, 2):
            image.putpixel((x, y), 1)
    image.info["transparency"] = 0
    return encode(image, "PNG", transparency=0)


def rgba_png() -> bytes:
    image = photo("chelsea", 500).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(image.size)
    image.putalpha(alpha)
    return encode(image, "PNG")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (200, 150), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def near_duplicate_variants(name: str) -> dict[str, bytes]:
    """The original and its edited copies, as JPEG bytes."""
    original = photo(name, 1200)
    width, height = original.size
    dx, dy = round(width * 0.025), round(height * 0.025)
    return {
        "original": encode(original, "JPEG", quality=92),
        "resized_50": encode(original.resize((width // 2, height // 2), Image.Resampling.LANCZOS), "JPEG", quality=92),
        "jpeg_q60": encode(original, "JPEG", quality=60),
        "brightness_110": encode(ImageEnhance.Brightness(original).enhance(1.10), "JPEG", quality=92),
        "crop_5": encode(original.crop((dx, dy, width - dx, height - dy)), "JPEG", quality=92),
        "mirror": encode(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=92),
    }


def adobe_rgb_like_icc_profile() -> bytes:
    """A minimal ICC v2 RGB display profile (Adobe RGB (1998) primaries adapted to D50, gamma 2.2), built here
    because no profile file ships with the installed packages."""

    def s15f16(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + s15f16(x) + s15f16(y) + s15f16(z)

    text = b"Adobe-RGB-like test profile\x00"
    description = (
        b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text)) + text + b"\x00" * 8 + b"\x00\x00\x00" + b"\x00" * 67
    )
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\x00\x00"
    tags = [
        (b"desc", description),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.6097, 0.3111, 0.0195)),
        (b"gXYZ", xyz(0.2053, 0.6257, 0.0609)),
        (b"bXYZ", xyz(0.1492, 0.0632, 0.7446)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, payload = b"", b""
    for signature, body in tags:
        body += b"\x00" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(payload), len(body))
        payload += body
    size = offset + len(payload)
    header = (
        struct.pack(">I", size)
        + b"\x00" * 4
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\x00" * 12
        + b"acsp"
        + b"\x00" * 24
        + b"\x00" * 4
        + xyz(0.9642, 1.0, 0.8249)[8:]
        + b"\x00" * 4
        + b"\x00" * 44
    )
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + payload


def progressive_jpeg_scan_bomb(repeats: int, image: Image.Image | None = None) -> bytes:
    """A progressive JPEG whose last scan (with the Huffman table before it) is repeated `repeats` times. On a flat
    image that scan is a few bytes, yet libjpeg makes one pass over the whole coefficient buffer per copy: the CPU
    bomb that the scan limit refuses (small on the wire, seconds of CPU to decode)."""
    data = encode(image or Image.new("RGB", (4096, 4096), (120, 130, 140)), "JPEG", quality=80, progressive=True)
    assert data.endswith(b"\xff\xd9")
    last_scan = data.rindex(b"\xff\xda")  # entropy-coded data never holds 0xFF 0xDA (0xFF is stuffed as 0xFF 0x00)
    table = data.rfind(b"\xff\xc4", 0, last_scan)
    if table >= 0 and table + 2 + int.from_bytes(data[table + 2 : table + 4], "big") == last_scan:
        last_scan = table
    return data[:-2] + data[last_scan:-2] * repeats + b"\xff\xd9"
