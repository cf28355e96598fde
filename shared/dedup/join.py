"""Connecting near duplicates in memory, in bulk: what reconcile_job does instead of one band look-up an image.

Given hashes of n entries, a query subset (the job's) and an index subset (everything they could duplicate), and a
union-find that already holds the known connections, this unions every query entry with every index entry the
policy calls a near duplicate, and reports the pairs that joined two sets. Pairs within one set are never needed
for the groups, so a dense group (n near copies of one image: n²/2 pairs within the policy) costs O(n) comparisons
of n hashes each, in numpy, not n²/2 comparisons in Python.

Candidates. The generalised pigeonhole principle: split the 64 bits into bands i with thresholds t_i,
Σ(t_i + 1) > d; two hashes within d bits then differ by at most t_i bits in some band i. For each band and each mask
e of at most t_i bits, the query entries whose band value XOR e is an index entry's band value are candidates: one
vectorised pass over the query entries a mask, then a vectorised comparison of the candidates. Four bands of 16 bits
cover pHash distance 10 with thresholds (2, 2, 2, 1) (428 masks) and the mirror distance 8 with (2, 1, 1, 1) (188);
three bands of 22/21/21 bits need ~4,300 masks but give ~40 times fewer candidates: `_layout` picks whichever
costs less for the sizes at hand (16-bit bands up to several hundred thousand entries).

Dense buckets. A band value shared by more than FAT_BUCKET index entries is not expanded into pairs: each query entry
whose band value is within the threshold of it is compared with all the bucket's entries at once, and unioned with
one near entry of each set among them (a label array of the bucket's sets keeps that one numpy pass an entry). Query
entries already in the set of the whole bucket are skipped without comparing.

Exact: every pair within the policy is a candidate in some band (pigeonhole); a candidate in a small bucket is
compared; in a dense bucket the query entry is compared with every entry of the bucket whose set it has not joined.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from shared.dedup.policy import NearDuplicatePolicy
from shared.dedup.union_find import UnionFind

FAT_BUCKET = 48  # index entries sharing one band value: more, and the bucket is compared entry by entry
_LAYOUTS = ((16, 16, 16, 16), (22, 21, 21))  # band widths to choose from (see _layout)
_CHUNK = 1 << 18  # query values looked up in one numpy pass (masks are batched up to this)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Hashes:
    """Aligned arrays over n entries: pHash, dHash and mirrored pHash."""

    phash: U64
    dhash: U64
    mirror: U64

    def near(self, a: I64, b: I64, policy: NearDuplicatePolicy) -> npt.NDArray[np.bool_]:
        """policy.compare(a[k], b[k]) is not None, for every k."""
        pa, pb = self.phash[a], self.phash[b]
        phash = np.bitwise_count(pa ^ pb)
        dhash = np.bitwise_count(self.dhash[a] ^ self.dhash[b])
        mirror = np.minimum(np.bitwise_count(self.mirror[a] ^ pb), np.bitwise_count(pa ^ self.mirror[b]))
        return (
            (phash <= policy.phash_max)
            | ((phash <= policy.combined_phash_max) & (dhash <= policy.combined_dhash_max))
            | (mirror <= policy.mirror_phash_max)
        )


def thresholds(distance: int, bands: int) -> tuple[int, ...]:
    """Per band, the bits it may differ by, so that any two hashes within `distance` differ by no more in some band:
    Σ(t_i + 1) = distance + 1 (a threshold of -1: the band is not needed)."""
    base, extra = divmod(distance + 1 - bands, bands)
    return tuple(base + 1 if i < extra else base for i in range(bands))


@cache
def _masks(width: int, bits: int) -> U64:
    """Every value of `width` bits with at most `bits` set, 0 first."""
    masks = [0]
    for count in range(1, bits + 1):
        masks += [sum(1 << b for b in combo) for combo in itertools.combinations(range(width), count)]
    return np.array(masks, dtype=np.uint64)


def _band_values(values: U64, widths: tuple[int, ...], band: int) -> I64:
    shift = sum(widths[band + 1 :])
    return ((values >> np.uint64(shift)) & np.uint64((1 << widths[band]) - 1)).astype(np.int64)


def _layout(probes: int, targets: int, distances: list[int]) -> tuple[int, ...]:
    """The band widths with the least estimated work: a look-up a probe entry and mask, and a comparison a
    candidate (probes x targets / 2^width a mask, for spread hashes). Wide bands need many masks but give few
    candidates; 16-bit bands are cheaper up to a few hundred thousand entries, 21-bit ones beyond."""

    def cost(widths: tuple[int, ...]) -> float:
        total = 0.0
        for distance in distances:
            for width, limit in zip(widths, thresholds(distance, len(widths)), strict=True):
                masks = len(_masks(width, limit)) if limit >= 0 else 0
                total += masks * (probes + 2.0 * probes * targets / (1 << width))
        return total

    return min(_LAYOUTS, key=cost)


def connect_near_duplicates(
    hashes: Hashes,
    query: I64,
    index: I64,
    policy: NearDuplicatePolicy,
    sets: UnionFind[int],
    linked: Callable[[int, int], None],
) -> None:
    """Unions every query entry with every index entry within the policy (entries are positions in `hashes`, and
    the items of `sets`); calls linked(a, b) for each pair whose union joined two sets (either may be the query
    entry)."""
    if len(query) == 0 or len(index) == 0:
        return
    indexed_query = np.isin(query, index)
    index_only = index[~np.isin(index, query)]
    phash_distance = max(policy.phash_max, policy.combined_phash_max)
    passes = [
        # (probe entries, their hash, target entries, their hash, distance): pHash against pHash (rules 1 and 2),
        # then the mirror rule both ways round: a query mirror against an index pHash, and an index mirror against a
        # query pHash. The latter is needed only where the former does not already cover the pair with the two
        # swapped: for index entries that are not query entries, and for query entries that are not indexed (an
        # older band scheme) against the indexed ones.
        (query, hashes.phash, index, hashes.phash, phash_distance),
        (query, hashes.mirror, index, hashes.phash, policy.mirror_phash_max),
        (index_only, hashes.mirror, query, hashes.phash, policy.mirror_phash_max),
        (query[indexed_query], hashes.mirror, query[~indexed_query], hashes.phash, policy.mirror_phash_max),
    ]
    widths = _layout(len(query), len(index), [phash_distance, policy.mirror_phash_max])
    bands = [
        (probe_entries, probe_hash, target_entries, target_hash, distance, widths, band, limit)
        for probe_entries, probe_hash, target_entries, target_hash, distance in passes
        if len(probe_entries) and len(target_entries)
        for band, limit in enumerate(thresholds(distance, len(widths)))
        if limit >= 0
    ]
    # Dense buckets first: they join a dense group's members in a few comparisons each, after which the small
    # buckets' candidates inside that group are dropped before any comparison (their sets are the same).
    for spec in bands:
        table = _BandTable(*spec)
        for members, probes in table.dense():
            _connect_dense(hashes, policy, members, probes, sets, linked)
    n = len(hashes.phash)
    roots = np.fromiter((sets.find(i) for i in range(n)), dtype=np.int64, count=n)
    # Pass 1 keeps the pairs near by rules 1 and 2, passes 2 and 3 those near by the mirror rule: every pair near
    # by some rule is kept by the pass of that rule.
    pairs = [codes for spec in bands for codes in _BandTable(*spec).near_pairs(hashes, policy, roots)]
    if not pairs:
        return
    codes = np.unique(np.concatenate(pairs))
    for a, b in zip((codes // n).tolist(), (codes % n).tolist(), strict=True):
        if sets.union(a, b):
            linked(a, b)


class _BandTable:
    """One band of one pass: the target entries by band value (a table of 2^width counts), and the probe entries
    sorted by band value (neighbouring values: the table look-ups stay local)."""

    def __init__(
        self,
        probe_entries: I64,
        probe_hash: U64,
        target_entries: I64,
        target_hash: U64,
        distance: int,
        widths: tuple[int, ...],
        band: int,
        limit: int,
    ):
        self.distance = distance
        self.pass_hashes = (probe_hash, target_hash)  # (pHash, pHash) for rules 1 and 2, else the mirror rule
        width = widths[band]
        target_values = _band_values(target_hash[target_entries], widths, band)
        order = np.argsort(target_values, kind="stable")
        self.sorted_targets, self.sorted_values = target_entries[order], target_values[order]
        firsts = np.flatnonzero(np.diff(self.sorted_values, prepend=-1))
        values = self.sorted_values[firsts]
        counts = np.diff(firsts, append=len(self.sorted_values))
        fat = counts > FAT_BUCKET
        self.fat = list(zip(firsts[fat].tolist(), counts[fat].tolist(), values[fat].tolist(), strict=True))
        # Entries a value, a byte each (dense buckets 0): a table of 2^22 bytes stays in the cache.
        self.small_counts = np.zeros(1 << width, dtype=np.uint8)
        self.small_counts[values[~fat]] = counts[~fat]
        self.starts = np.zeros(1 << width, dtype=np.int32)
        self.starts[values] = firsts
        probe_values = _band_values(probe_hash[probe_entries], widths, band)
        probe_order = np.argsort(probe_values, kind="stable")
        self.probe_values, self.probe_sorted = probe_values[probe_order], probe_entries[probe_order]
        # The compared hashes in the same orders: candidates are compared before their entries are looked up.
        self.probe_hashes, self.target_hashes = probe_hash[self.probe_sorted], target_hash[self.sorted_targets]
        self.masks = _masks(width, limit).astype(np.int64)

    def dense(self) -> Iterator[tuple[I64, I64]]:
        """Each dense bucket's entries, with the probe entries within the threshold of its value."""
        for first, count, value in self.fat:
            members = self.sorted_targets[first : first + count]
            near_values = value ^ self.masks
            lo = np.searchsorted(self.probe_values, near_values, side="left")
            hi = np.searchsorted(self.probe_values, near_values, side="right")
            ranges = [self.probe_sorted[x:y] for x, y in zip(lo.tolist(), hi.tolist(), strict=True) if y > x]
            if ranges:
                yield members, np.concatenate(ranges)

    def near_pairs(self, hashes: Hashes, policy: NearDuplicatePolicy, roots: I64) -> Iterator[I64]:
        """Near pairs from the small buckets whose entries are in different sets (`roots`), as codes
        min * n + max."""
        n = len(hashes.phash)
        probes = len(self.probe_values)
        per_pass = max(1, _CHUNK // probes)
        for start in range(0, len(self.masks), per_pass):
            block = self.masks[start : start + per_pass]
            looked_up = (self.probe_values[None, :] ^ block[:, None]).ravel()
            hits = np.take(self.small_counts, looked_up)
            where = np.flatnonzero(hits)
            if len(where) == 0:
                continue
            sizes = hits[where].astype(np.int64)
            ends = np.cumsum(sizes)
            offsets = np.repeat(self.starts[looked_up[where]] - (ends - sizes), sizes) + np.arange(int(ends[-1]))
            distances = np.bitwise_count(
                np.repeat(self.probe_hashes[where % probes], sizes) ^ self.target_hashes[offsets]
            )
            close = np.flatnonzero(distances <= self.distance)
            if len(close) == 0:
                continue
            a = self.probe_sorted[where[np.searchsorted(ends, close, side="right")] % probes]
            b = self.sorted_targets[offsets[close]]
            if self.pass_hashes[0] is hashes.phash:
                # pHash against pHash: rule 1 (pHash alone), or rule 2 (with the dHash)
                phash = np.bitwise_count(hashes.phash[a] ^ hashes.phash[b])
                dhash = np.bitwise_count(hashes.dhash[a] ^ hashes.dhash[b])
                near = (phash <= policy.phash_max) | (dhash <= policy.combined_dhash_max)
                a, b = a[near], b[near]
            apart = (roots[a] != roots[b]) & (a != b)
            if apart.any():
                a, b = a[apart], b[apart]
                yield np.minimum(a, b) * n + np.maximum(a, b)


def _connect_dense(
    hashes: Hashes,
    policy: NearDuplicatePolicy,
    members: I64,
    probes: I64,
    sets: UnionFind[int],
    linked: Callable[[int, int], None],
) -> None:
    """Unions each probe entry with the bucket's entries it is near: one vectorised comparison a probe entry, and
    one union a set among the near ones. `labels` holds each member's set (kept exact: every union here joins a
    probe's set with a member's, and both are relabelled); once the whole bucket is one set, probes already in it
    cost a dictionary look-up."""
    labels = np.fromiter((sets.find(int(m)) for m in members), dtype=np.int64, count=len(members))
    uniform = _uniform(labels)
    for probe in _unique(probes):
        root = sets.find(probe)
        if root == uniform:
            continue  # the whole bucket is in the probe's set already
        near = hashes.near(np.full(len(members), probe, dtype=np.int64), members, policy) & (members != probe)
        if not near.any():
            continue
        near_labels = labels[near]
        one = _uniform(near_labels)
        distinct = [one] if one is not None else np.unique(near_labels).tolist()
        joined = [label for label in distinct if label != root]
        if not joined:
            continue
        near_members = members[near]
        for label in joined:
            member = int(near_members[np.argmax(near_labels == label)])
            if sets.union(probe, member):
                linked(probe, member)
        new_root = sets.find(probe)
        if new_root == uniform:
            continue  # the probe joined the bucket's one set, which kept its root: no member's label changes
        for label in [*joined, root]:
            if label != new_root:
                labels[labels == label] = new_root
        uniform = _uniform(labels)


def _uniform(labels: I64) -> int | None:
    """The label if all are the same, else None."""
    first = int(labels[0])
    return first if bool((labels == first).all()) else None


def _unique(values: I64) -> Iterator[int]:
    yield from dict.fromkeys(values.tolist())
