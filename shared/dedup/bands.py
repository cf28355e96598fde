"""Splitting a 64-bit hash into bands for candidate look-ups.

Pigeonhole: if two hashes differ in at most d bits and the hash is split into n > d disjoint bands, at least one
band holds none of the differing bits, so the two hashes have that band's value exactly in common. Candidates for
"within distance d" are therefore found by exact look-ups of (band index, band value) keys, and confirmed on the
full distance afterwards. The price of exactness is selectivity: with n bands of 64/n bits, each look-up returns
about N / 2^(64/n) of N indexed images (n = 11: 6-bit bands, ~N/64 each) — see docs/imaging.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from shared.dedup.hashes import HASH_BITS


@dataclass(frozen=True)
class BandScheme:
    bands: int

    def __post_init__(self) -> None:
        if not 1 <= self.bands <= HASH_BITS:
            raise ValueError(f"between 1 and {HASH_BITS} bands, not {self.bands}")

    @classmethod
    def for_max_distance(cls, distance: int) -> BandScheme:
        """The fewest bands (the most selective look-ups) that still guarantee a shared band within `distance`."""
        return cls(bands=distance + 1)

    @property
    def name(self) -> str:
        return f"{self.bands}x{HASH_BITS}"

    @property
    def guaranteed_distance(self) -> int:
        return self.bands - 1

    @cached_property
    def widths(self) -> tuple[int, ...]:
        base, extra = divmod(HASH_BITS, self.bands)
        return tuple(base + 1 if i < extra else base for i in range(self.bands))

    def split(self, value: int) -> tuple[int, ...]:
        """The value of each band, most significant band first."""
        parts = []
        shift = HASH_BITS
        for width in self.widths:
            shift -= width
            parts.append((value >> shift) & ((1 << width) - 1))
        return tuple(parts)

    def probe(self, *hashes: int) -> tuple[frozenset[int], ...]:
        """Per band, the values to look up to find every indexed hash within the distance of any of `hashes`."""
        splits = [self.split(h) for h in hashes]
        return tuple(frozenset(split[i] for split in splits) for i in range(self.bands))
