"""When two images count as near duplicates. Defaults from distances measured while the pipeline was built:
resized, re-encoded and brightened copies are within pHash 4 (usually 0), mirrored copies within 2 of the mirror's
pHash, 5 % crops within ~7-14, unrelated photos never below pHash 22. The figures on this repository's own corpus
(tests/imaging/test_near_duplicates.py) are in docs/imaging.md, "Thresholds"."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from shared.dedup.hashes import hamming


class PerceptualHashes(BaseModel):
    phash: int
    dhash: int
    phash_mirror: int


class NearMatch(BaseModel):
    phash_distance: int
    dhash_distance: int | None  # None for a mirrored match (no dHash of the mirror is kept)
    mirrored: bool


@dataclass(frozen=True)
class NearDuplicatePolicy:
    phash_max: int = 8  # pHash alone
    combined_phash_max: int = 10  # or pHash and dHash together
    combined_dhash_max: int = 8
    mirror_phash_max: int = 8  # pHash of one against the mirror's pHash of the other

    @property
    def max_phash_distance(self) -> int:
        """The largest pHash distance any rule accepts: what the band index must guarantee to find."""
        return max(self.phash_max, self.combined_phash_max, self.mirror_phash_max)

    def compare(self, a: PerceptualHashes, b: PerceptualHashes) -> NearMatch | None:
        phash_distance = hamming(a.phash, b.phash)
        dhash_distance = hamming(a.dhash, b.dhash)
        if phash_distance <= self.phash_max or (
            phash_distance <= self.combined_phash_max and dhash_distance <= self.combined_dhash_max
        ):
            return NearMatch(phash_distance=phash_distance, dhash_distance=dhash_distance, mirrored=False)
        mirror_distance = min(hamming(a.phash_mirror, b.phash), hamming(a.phash, b.phash_mirror))
        if mirror_distance <= self.mirror_phash_max:
            return NearMatch(phash_distance=mirror_distance, dhash_distance=None, mirrored=True)
        return None
