"""Splitting a 64-bit hash into bands for candidate look-ups (multi-index hashing).

Pigeonhole: if two hashes differ in at most d bits and the hash is split into n disjoint bands, some band holds at
most floor(d / n) of the differing bits. So with a search radius r per band, any two hashes within
d = n * (r + 1) - 1 bits have, in at least one band, values within r bits of each other. Candidates for "within
distance d" are therefore found by exact look-ups of (band index, value) keys — every value within r bits of the
probing hash's own band value — and confirmed on the full distance afterwards.

Selectivity is what the scheme is chosen for. With r = 0 (plain bands), d = 10 needs 11 bands of ~6 bits: each key
matches ~1/64 of the indexed images and a probe returned 37 % of a library of unrelated photos (measured,
bench/dedup_selectivity.py). Four 16-bit bands with r = 2 guarantee d = 11 with 4 x 137 keys a hash, each matching
~1/65,536 of uniformly spread hashes: 2-3 % of that library.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

from shared.dedup.hashes import HASH_BITS

DEFAULT_BANDS = 4


@dataclass(frozen=True)
class BandScheme:
    bands: int
    radius: int = 0  # bits a band value may differ by and still be looked up

    def __post_init__(self) -> None:
        if not 1 <= self.bands <= HASH_BITS:
            raise ValueError(f"between 1 and {HASH_BITS} bands, not {self.bands}")
        if not 0 <= self.radius <= min(self.widths):
            raise ValueError(f"a radius between 0 and {min(self.widths)} bits, not {self.radius}")

    @classmethod
    def for_max_distance(cls, distance: int, bands: int = DEFAULT_BANDS) -> BandScheme:
        """`bands` bands with the smallest radius that still guarantees finding every hash within `distance`."""
        return cls(bands=bands, radius=max(0, -(-(distance + 1) // bands) - 1))

    @property
    def name(self) -> str:
        """Stored with every entry: entries indexed under another scheme are never compared by band."""
        return f"{self.bands}x{HASH_BITS}" + (f"r{self.radius}" if self.radius else "")

    @property
    def guaranteed_distance(self) -> int:
        return self.bands * (self.radius + 1) - 1

    @cached_property
    def widths(self) -> tuple[int, ...]:
        base, extra = divmod(HASH_BITS, self.bands)
        return tuple(base + 1 if i < extra else base for i in range(self.bands))

    @cached_property
    def _flip_masks(self) -> tuple[tuple[int, ...], ...]:
        """Per band, every mask of at most `radius` set bits within the band's width (0 first)."""
        masks = []
        for width in self.widths:
            band_masks = [0]
            for flips in range(1, self.radius + 1):
                band_masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), flips)]
            masks.append(tuple(band_masks))
        return tuple(masks)

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
        return tuple(
            frozenset(split[i] ^ mask for split in splits for mask in self._flip_masks[i]) for i in range(self.bands)
        )
