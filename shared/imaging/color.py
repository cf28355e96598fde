"""Bringing any decoded mode to what thumbnails are: 8-bit sRGB RGB, no alpha.

Work is split so that the costly part runs on the smallest image: `resizable` does only what must happen at full
size (palette and high-bit-depth images cannot be resampled as they are); `to_srgb_rgb` runs on the largest
working image after the first resize (ICC conversion, flattening alpha, CMYK and grayscale to RGB).
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

# Modes Pillow resamples directly (LA/RGBA premultiplied by Pillow itself).
_RESIZABLE = {"L", "LA", "RGB", "RGBA", "CMYK"}
_BACKGROUND = (255, 255, 255)


def resizable(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in _RESIZABLE:
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_bit_depth_to_l(image)
    if mode in ("RGBX", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    if mode in ("RGBa", "La"):
        return image.convert("RGBA" if mode == "RGBa" else "LA")
    return image.convert("RGBA" if "A" in mode else "RGB")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale scaled (not clipped, as Image.convert would) to 8 bits."""
    values = np.asarray(image)
    if image.mode == "F":
        peak = float(values.max()) if values.size else 1.0
        scaled = values * (255.0 / peak) if peak > 255.0 else values
    elif image.mode == "I":
        scaled = values / 257.0 if values.size and int(values.max()) > 255 else values
    else:  # I;16, I;16B, I;16L, I;16N
        scaled = values / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=32)
def _transform_to_srgb(icc_profile: bytes, in_mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached ICC transform to sRGB, or None for an sRGB, unusable or mismatched profile."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        description = (ImageCms.getProfileDescription(profile) or "").lower()
        if "srgb" in description:
            return None
        # NOCACHE: the transform is shared by threads, and littleCMS's one-pixel cache is per transform.
        return ImageCms.buildTransform(
            profile,
            _srgb_profile(),
            in_mode,
            "RGB",
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            flags=ImageCms.Flags.NOCACHE,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def to_srgb_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB" if image.mode == "RGBA" else "L")
    if icc_profile and image.mode in ("RGB", "CMYK", "L"):
        transform = _transform_to_srgb(icc_profile, image.mode)
        if transform is not None:
            try:
                return ImageCms.applyTransform(image, transform) or image.convert("RGB")
            except (ImageCms.PyCMSError, OSError, ValueError):
                pass
    return image if image.mode == "RGB" else image.convert("RGB")
