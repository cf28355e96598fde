"""What the duplicate index stores and reports."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.dedup.hashes import parse_hash
from shared.dedup.policy import PerceptualHashes


class ImageRef(BaseModel):
    """One image of one job; a tenant's library is all of its jobs' images."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    image_id: str

    @property
    def key(self) -> str:
        return f"{self.job_id}/{self.image_id}"


class MatchKind(StrEnum):
    EXACT = "exact"  # same SHA-256
    NEAR = "near"  # within the perceptual-hash policy


class Match(BaseModel):
    """A confirmed duplicate of the image holding it."""

    model_config = ConfigDict(frozen=True)

    ref: ImageRef
    kind: MatchKind
    phash_distance: int | None = None
    dhash_distance: int | None = None
    mirrored: bool = False


class IndexEntry(BaseModel):
    """One registered image: its hashes, their band values, and the duplicates confirmed for it so far."""

    ref: ImageRef
    sha256: str
    phash: str | None = None
    dhash: str | None = None
    phash_mirror: str | None = None
    bands: tuple[int, ...] = ()  # band values of the pHash under `band_scheme`
    band_scheme: str | None = None
    matches: list[Match] = Field(default_factory=list)

    def perceptual(self) -> PerceptualHashes | None:
        if self.phash is None or self.dhash is None or self.phash_mirror is None:
            return None
        return PerceptualHashes(
            phash=parse_hash(self.phash), dhash=parse_hash(self.dhash), phash_mirror=parse_hash(self.phash_mirror)
        )


class DuplicateHit(BaseModel):
    """What registering one image found: the first image with the same bytes, and near duplicates."""

    exact_of: ImageRef | None = None
    near: list[Match] = Field(default_factory=list)

    @property
    def is_duplicate(self) -> bool:
        return self.exact_of is not None or bool(self.near)


class DuplicatePair(BaseModel):
    a: ImageRef
    b: ImageRef
    kind: MatchKind
    phash_distance: int | None = None
    mirrored: bool = False


class DuplicateGroup(BaseModel):
    """Images connected by confirmed duplicate pairs (exact or near), at least one of them in the job asked about.
    Members from other jobs are the tenant's library images the job's images duplicate."""

    members: list[ImageRef]
    pairs: list[DuplicatePair]
