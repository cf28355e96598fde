"""What the pipeline should produce for an image, and the limits it works within."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from shared.config import Settings

# The thumbnail sizes (long side, px) the pipeline makes: the THUMBNAIL_SIZES setting, a job's options and these
# options are all checked against this one range.
THUMBNAIL_SIZE_MIN = 16
THUMBNAIL_SIZE_MAX = 4096


class ThumbnailFormat(StrEnum):
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"


class ImagingOptions(BaseModel):
    model_config = ConfigDict(frozen=True, validate_default=True)

    thumbnail_sizes: tuple[int, ...] = (600, 300, 150)  # long side, px, kept largest first; never upscaled
    thumbnail_formats: tuple[ThumbnailFormat, ...] = (ThumbnailFormat.JPEG, ThumbnailFormat.WEBP)
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    webp_quality: int = Field(default=80, ge=1, le=100)
    # libwebp effort 0..6: 0 costs a third of the default 4 at thumbnail sizes, for files ~20 % larger than 2.
    webp_method: int = Field(default=0, ge=0, le=6)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=100_000_000, ge=1)
    time_budget_seconds: float = Field(default=20.0, gt=0)
    compute_hashes: bool = True
    detect_faces: bool = True
    detect_people: bool = False
    # Long side of the image the Haar cascade runs on: smaller is faster but misses small faces
    # (the cascade's window is 24 px, so faces under ~24/size of the long side are not seen).
    face_detection_size: int = Field(default=320, ge=64, le=2048)

    @field_validator("thumbnail_sizes")
    @classmethod
    def _sizes_valid(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if not all(THUMBNAIL_SIZE_MIN <= s <= THUMBNAIL_SIZE_MAX for s in sizes):
            raise ValueError(f"thumbnail sizes must be between {THUMBNAIL_SIZE_MIN} and {THUMBNAIL_SIZE_MAX} px")
        return tuple(sorted(set(sizes), reverse=True))

    @field_validator("thumbnail_formats")
    @classmethod
    def _formats_unique(cls, formats: tuple[ThumbnailFormat, ...]) -> tuple[ThumbnailFormat, ...]:
        return tuple(dict.fromkeys(formats))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ImagingOptions:
        values: dict[str, object] = {
            "thumbnail_sizes": settings.thumbnail_size_list,
            "max_bytes": settings.image_max_bytes,
            "max_pixels": settings.image_max_pixels,
            "time_budget_seconds": settings.image_time_budget_seconds,
        }
        values.update(overrides)
        return cls.model_validate(values)
