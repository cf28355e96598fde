"""Dedup precision and recall on generated variants of scikit-image's photos, hashed by the real pipeline."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from shared.dedup import DuplicateService, InMemoryDuplicateIndexStore, NearDuplicatePolicy, PerceptualHashes
from shared.dedup.hashes import parse_hash
from shared.imaging import ImagingOptions, process_image
from tests.imaging import corpus

HASHES_ONLY = ImagingOptions(thumbnail_sizes=(), detect_faces=False)
ALWAYS_CAUGHT = ("resized_50", "jpeg_q60", "brightness_110", "mirror")


@cache
def _results() -> dict[tuple[str, str], tuple[str, PerceptualHashes]]:
    results = {}
    for name in corpus.PHOTO_NAMES:
        for kind, data in corpus.near_duplicate_variants(name).items():
            result = process_image(data, HASHES_ONLY)
            assert result.ok and result.sha256 and result.phash and result.dhash and result.phash_mirror
            hashes = PerceptualHashes(
                phash=parse_hash(result.phash),
                dhash=parse_hash(result.dhash),
                phash_mirror=parse_hash(result.phash_mirror),
            )
            results[(name, kind)] = (result.sha256, hashes)
    return results


@pytest.mark.parametrize("kind", ALWAYS_CAUGHT)
def test_recall_is_complete_for_resized_reencoded_brightened_and_mirrored_copies(kind: str) -> None:
    results, policy = _results(), NearDuplicatePolicy()
    missed = [
        name
        for name in corpus.PHOTO_NAMES
        if policy.compare(results[(name, "original")][1], results[(name, kind)][1]) is None
    ]
    assert missed == []


def test_most_5_percent_crops_are_caught() -> None:
    results, policy = _results(), NearDuplicatePolicy()
    caught = sum(
        policy.compare(results[(name, "original")][1], results[(name, "crop_5")][1]) is not None
        for name in corpus.PHOTO_NAMES
    )
    # Measured 12 of 14 here (the figures: 7 of 8); crops move every DCT coefficient, so this is a floor.
    assert caught >= 0.7 * len(corpus.PHOTO_NAMES)


def test_precision_is_complete_on_unrelated_pairs() -> None:
    results, policy = _results(), NearDuplicatePolicy()
    false_matches = [
        (a, b)
        for (a, (_, ha)), (b, (_, hb)) in itertools.combinations(results.items(), 2)
        if a[0] != b[0] and policy.compare(ha, hb) is not None
    ]
    assert len(results) == 6 * len(corpus.PHOTO_NAMES)
    assert false_matches == []


def test_registered_variants_group_by_photo() -> None:
    service, results = DuplicateService(InMemoryDuplicateIndexStore()), _results()
    for (name, kind), (sha256, hashes) in results.items():
        service.register_image(
            "tenant",
            "job",
            f"{name}.{kind}",
            sha256,
            f"{hashes.phash:016x}",
            f"{hashes.dhash:016x}",
            f"{hashes.phash_mirror:016x}",
        )

    groups = service.reconcile_job("tenant", "job")

    photos_per_group = [{m.image_id.split(".")[0] for m in group.members} for group in groups]
    assert all(len(photos) == 1 for photos in photos_per_group), "no group mixes two photos"
    assert sorted(p.pop() for p in photos_per_group) == sorted(corpus.PHOTO_NAMES), "one group per photo"
    for group in groups:
        kinds = {m.image_id.split(".", 1)[1] for m in group.members}
        assert {"original", *ALWAYS_CAUGHT} <= kinds
