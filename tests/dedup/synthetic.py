"""Synthetic index entries for large reconciliations: written straight into a store, as registrations would have
left them, without paying for a look-up an image (which is what reconcile_job repeats).

`racing=True` leaves every entry without matches: what registrations that all ran at the same moment on replicas
that had not caught up would leave, so reconcile_job has to find every pair itself.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Iterator, Sequence

import numpy as np

from shared.dedup import (
    BandScheme,
    DuplicateIndexStore,
    IndexEntry,
    LibraryImage,
    Match,
    MatchKind,
    NearDuplicatePolicy,
)

SCHEME = BandScheme.for_max_distance(NearDuplicatePolicy().max_phash_distance)


def flip(value: int, bits: Sequence[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def entry(
    ref: LibraryImage, phash: int, dhash: int, mirror: int, sha256: str, matches: Sequence[Match] = ()
) -> IndexEntry:
    return IndexEntry(
        ref=ref,
        sha256=sha256,
        phash=f"{phash:016x}",
        dhash=f"{dhash:016x}",
        phash_mirror=f"{mirror:016x}",
        bands=SCHEME.split(phash),
        band_scheme=SCHEME.name,
        matches=list(matches),
    )


def _sha(rng: random.Random) -> str:
    return uuid.UUID(int=rng.getrandbits(128)).hex * 2


@functools.cache
def _code(dimension: int = 17, distance: int = 13, offset_distance: int = 11) -> tuple[tuple[int, ...], int]:
    """A binary linear code of 64-bit words (the XOR of the rows picked by an index's bits) whose distinct words
    differ in at least `distance` bits, and an offset at least `offset_distance` bits from every word. Found by
    trying seeded random rows: a random [64, 17] code has minimum distance 13 or more with probability ~0.97."""
    for seed in range(100):
        rng = random.Random(seed)
        rows = [rng.getrandbits(64) for _ in range(dimension)]
        words = np.zeros(1, dtype=np.uint64)
        for row in rows:
            words = np.concatenate((words, words ^ np.uint64(row)))
        if int(np.bitwise_count(words[1:]).min()) < distance:
            continue
        offset = rng.getrandbits(64)
        if int(np.bitwise_count(words ^ np.uint64(offset)).min()) >= offset_distance:
            return tuple(rows), offset
    raise AssertionError("no code found")


def _word(rows: Sequence[int], index: int) -> int:
    word = 0
    for bit, row in enumerate(rows):
        if index >> bit & 1:
            word ^= row
    return word


def near_pair_entries(job_id: str, pairs: int, *, seed: int = 1, racing: bool = False) -> Iterator[IndexEntry]:
    """`pairs` unrelated images, each with one near copy (1 pHash bit, 2 dHash bits apart): images `{n}.a` and
    `{n}.b`. Unless racing, each copy holds its match, as its registration found it.

    The originals' pHashes are the words of a code with minimum distance 13 (spread like uniformly random hashes,
    band by band), and their mirror pHashes those words moved by an offset 11 bits from every word: so no two
    images of different pairs are within the policy (pHash distance >= 11, mirror distance >= 9), which uniformly
    random hashes would not guarantee (~200 chance pHash matches among 200,000 of them)."""
    rows, offset = _code()
    if pairs >= 1 << len(rows):
        raise ValueError(f"at most {(1 << len(rows)) - 1} pairs")
    rng = random.Random(seed)
    for number in range(pairs):
        phash = _word(rows, number + 1)
        mirror, dhash = phash ^ offset, rng.getrandbits(64)
        original = LibraryImage(job_id=job_id, image_id=f"{number}.a")
        yield entry(original, phash, dhash, mirror, _sha(rng))
        found = [] if racing else [Match(ref=original, kind=MatchKind.NEAR, phash_distance=1, dhash_distance=2)]
        yield entry(
            LibraryImage(job_id=job_id, image_id=f"{number}.b"),
            flip(phash, rng.sample(range(64), 1)),
            flip(dhash, rng.sample(range(64), 2)),
            flip(mirror, rng.sample(range(64), 1)),
            _sha(rng),
            found,
        )


def star_entries(job_id: str, members: int, *, seed: int = 2) -> Iterator[IndexEntry]:
    """One image (`0`) and `members - 1` near copies of it (distinct SHA-256s; pHash, dHash and mirror pHash each
    within 2 bits of the centre's), all written without matches (racing registrations): one group, dense (every
    two copies are within the policy too)."""
    rng = random.Random(seed)
    phash, dhash, mirror = rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(64)
    yield entry(LibraryImage(job_id=job_id, image_id="0"), phash, dhash, mirror, _sha(rng))
    for number in range(1, members):
        yield entry(
            LibraryImage(job_id=job_id, image_id=str(number)),
            flip(phash, rng.sample(range(64), rng.randint(0, 2))),
            flip(dhash, rng.sample(range(64), rng.randint(0, 2))),
            flip(mirror, rng.sample(range(64), rng.randint(0, 2))),
            _sha(rng),
        )


def put_all(store: DuplicateIndexStore, tenant_id: str, entries: Iterator[IndexEntry]) -> int:
    count = 0
    for item in entries:
        store.put_entry(tenant_id, item)
        count += 1
    return count
