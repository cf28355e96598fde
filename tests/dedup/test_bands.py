"""The band index guarantee: hashes within the scheme's distance are always probed; and the policy's rules."""

from __future__ import annotations

import random

import pytest

from shared.dedup import BandScheme, NearDuplicatePolicy, PerceptualHashes
from shared.dedup.hashes import hamming, parse_hash


def _flip_bits(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


def test_widths_cover_all_64_bits() -> None:
    for bands in range(1, 65):
        scheme = BandScheme(bands)
        assert sum(scheme.widths) == 64
        assert max(scheme.widths) - min(scheme.widths) <= 1


def test_split_round_trips() -> None:
    scheme = BandScheme(11)
    rng = random.Random(3)
    for _ in range(200):
        value = rng.getrandbits(64)
        rebuilt = 0
        for width, part in zip(scheme.widths, scheme.split(value), strict=True):
            assert 0 <= part < (1 << width)
            rebuilt = (rebuilt << width) | part
        assert rebuilt == value


@pytest.mark.parametrize("bands", [4, 9, 11, 16])
def test_any_two_hashes_within_the_guaranteed_distance_share_a_band(bands: int) -> None:
    scheme = BandScheme(bands)
    rng = random.Random(bands)
    for _ in range(3000):
        a = rng.getrandbits(64)
        b = _flip_bits(a, rng.randint(0, scheme.guaranteed_distance), rng)
        assert any(x == y for x, y in zip(scheme.split(a), scheme.split(b), strict=True))


def test_the_guarantee_is_tight_one_more_bit_can_touch_every_band() -> None:
    scheme = BandScheme(11)
    a = random.Random(5).getrandbits(64)
    offsets = [sum(scheme.widths[:i]) for i in range(scheme.bands)]
    b = a
    for offset in offsets:  # one flipped bit in each band: distance 11
        b ^= 1 << (63 - offset)
    assert hamming(a, b) == 11
    assert all(x != y for x, y in zip(scheme.split(a), scheme.split(b), strict=True))


@pytest.mark.parametrize(("bands", "radius"), [(4, 1), (4, 2), (6, 1), (3, 3)])
def test_with_a_radius_hashes_within_the_guaranteed_distance_are_probed(bands: int, radius: int) -> None:
    scheme = BandScheme(bands, radius)
    rng = random.Random(bands * 10 + radius)
    for _ in range(2000):
        a = rng.getrandbits(64)
        b = _flip_bits(a, rng.randint(0, scheme.guaranteed_distance), rng)
        probe = scheme.probe(a)
        assert any(value in keys for value, keys in zip(scheme.split(b), probe, strict=True))


def test_with_a_radius_the_guarantee_is_tight() -> None:
    scheme = BandScheme(4, 2)
    a = random.Random(6).getrandbits(64)
    b = a
    for offset in (0, 16, 32, 48):  # three flipped bits in each 16-bit band: distance 12
        for bit in range(3):
            b ^= 1 << (63 - offset - bit)
    assert (scheme.guaranteed_distance, hamming(a, b)) == (11, 12)
    assert not any(value in keys for value, keys in zip(scheme.split(b), scheme.probe(a), strict=True))


def test_probe_sizes_grow_with_the_radius() -> None:
    one_hash = 0x0123456789ABCDEF
    assert [len(keys) for keys in BandScheme(4, 2).probe(one_hash)] == [1 + 16 + 120] * 4
    assert [len(keys) for keys in BandScheme(4, 1).probe(one_hash)] == [17] * 4
    with pytest.raises(ValueError, match="radius"):
        BandScheme(32, 3)


def test_default_scheme_covers_the_largest_policy_distance() -> None:
    policy = NearDuplicatePolicy()
    scheme = BandScheme.for_max_distance(policy.max_phash_distance)
    assert (policy.max_phash_distance, scheme.bands, scheme.radius, scheme.name) == (10, 4, 2, "4x64r2")
    assert scheme.guaranteed_distance >= policy.max_phash_distance
    assert BandScheme.for_max_distance(3) == BandScheme(4, 0)
    assert BandScheme.for_max_distance(4) == BandScheme(4, 1)


def test_probe_holds_each_hashes_band_values() -> None:
    scheme = BandScheme(4)
    probe = scheme.probe(0x0123456789ABCDEF, 0xFEDCBA9876543210)
    assert probe == (
        frozenset({0x0123, 0xFEDC}),
        frozenset({0x4567, 0xBA98}),
        frozenset({0x89AB, 0x7654}),
        frozenset({0xCDEF, 0x3210}),
    )


def test_parse_hash_requires_16_hex_digits() -> None:
    assert parse_hash("00000000000000ff") == 255
    with pytest.raises(ValueError):
        parse_hash("ff")


def _hashes(phash: int, dhash: int, mirror: int = 0) -> PerceptualHashes:
    return PerceptualHashes(phash=phash, dhash=dhash, phash_mirror=mirror)


@pytest.mark.parametrize(
    ("phash_bits", "dhash_bits", "near"),
    [(0, 40, True), (8, 40, True), (9, 40, False), (9, 8, True), (10, 8, True), (10, 9, False), (11, 0, False)],
)
def test_policy_thresholds(phash_bits: int, dhash_bits: int, near: bool) -> None:
    rng = random.Random(phash_bits * 100 + dhash_bits)
    mirror = rng.getrandbits(64)
    a = _hashes(rng.getrandbits(64), rng.getrandbits(64), mirror)
    b = _hashes(_flip_bits(a.phash, phash_bits, rng), _flip_bits(a.dhash, dhash_bits, rng), ~mirror & (2**64 - 1))

    assert (NearDuplicatePolicy().compare(a, b) is not None) is near


def test_a_mirrored_copy_matches_on_the_mirror_hash() -> None:
    rng = random.Random(9)
    original = _hashes(rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(64))
    # The flipped copy's pHash is near the original's mirror hash, and its mirror hash near the original's pHash.
    flipped = _hashes(
        _flip_bits(original.phash_mirror, 3, rng), rng.getrandbits(64), _flip_bits(original.phash, 2, rng)
    )

    match = NearDuplicatePolicy().compare(flipped, original)

    assert match is not None and match.mirrored and match.phash_distance == 2
