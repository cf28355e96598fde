"""What the duplicate index stores and reports."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.dedup.hashes import parse_hash
from shared.dedup.policy import NearMatch, PerceptualHashes


class LibraryImage(BaseModel):
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

    ref: LibraryImage
    kind: MatchKind
    phash_distance: int | None = None
    dhash_distance: int | None = None
    mirrored: bool = False

    @classmethod
    def near(cls, ref: LibraryImage, found: NearMatch) -> Match:
        """A near duplicate as the policy confirmed it."""
        return cls(
            ref=ref,
            kind=MatchKind.NEAR,
            phash_distance=found.phash_distance,
            dhash_distance=found.dhash_distance,
            mirrored=found.mirrored,
        )


class IndexEntry(BaseModel):
    """One registered image: its hashes, their band values, the duplicates confirmed for it so far, and the keys of
    the duplicate groups reconcile_job found it in.

    `group_keys` only grows: a reconciliation that finds the image in a group whose key it does not carry yet adds
    that key and keeps the earlier ones, so every group it was ever seen in still reaches it (see
    DuplicateService.reconcile_job). Its current group's key is the smallest (`group_key`).
    """

    ref: LibraryImage
    sha256: str
    phash: str | None = None
    dhash: str | None = None
    phash_mirror: str | None = None
    bands: tuple[int, ...] = ()  # band values of the pHash under `band_scheme`
    band_scheme: str | None = None
    matches: list[Match] = Field(default_factory=list)
    group_keys: tuple[str, ...] = ()

    @property
    def group_key(self) -> str | None:
        return min(self.group_keys) if self.group_keys else None

    def perceptual(self) -> PerceptualHashes | None:
        if self.phash is None or self.dhash is None or self.phash_mirror is None:
            return None
        return PerceptualHashes(
            phash=parse_hash(self.phash), dhash=parse_hash(self.dhash), phash_mirror=parse_hash(self.phash_mirror)
        )


class DuplicateHit(BaseModel):
    """What registering one image found: the first image with the same bytes, and near duplicates."""

    exact_of: LibraryImage | None = None
    near: list[Match] = Field(default_factory=list)

    @property
    def is_duplicate(self) -> bool:
        return self.exact_of is not None or bool(self.near)


class DuplicatePair(BaseModel):
    a: LibraryImage
    b: LibraryImage
    kind: MatchKind
    phash_distance: int | None = None
    mirrored: bool = False


class DuplicateGroup(BaseModel):
    """Images connected by confirmed duplicate pairs (exact or near), at least one of them in the job asked about.
    Members from other jobs are the tenant's library images in the same group, whichever job brought them.

    `members` are sorted by (job, image); `pairs` are the confirmed pairs between members (each pair once, sorted):
    every pair a registration found, and the pairs reconciliation needed to connect what registrations missed
    (not every pair within the policy: a dense group of n near copies would have n²/2). `key` is the group's key in
    the index once reconcile_job has written it (the smallest member's LibraryImage.key, or a smaller key the group
    already carried)."""

    members: list[LibraryImage]
    pairs: list[DuplicatePair]
    key: str | None = None
