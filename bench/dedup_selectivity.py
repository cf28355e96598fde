"""How selective each band scheme's look-up is on unrelated photos: the share of a library a probe returns.

    .venv/bin/python -m bench.dedup_selectivity [--images 600]

Hashes `--images` random crops (with random vertical flips) of scikit-image's shipped photos with the pipeline's own
perceptual hashes, then, for each scheme, counts the pairs whose look-up (pHash and mirror pHash, as the duplicate
service probes) would return the other image as a candidate. Every candidate costs a read and a comparison, so this
fraction times the tenant's library size is the work of one registration. Also prints the keys a probe looks up and
the pairs actually within the policy's distance (what must be found). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys

from PIL import Image

from devstack.samples import PHOTOS
from shared.dedup import BandScheme, NearDuplicatePolicy
from shared.dedup.hashes import hamming
from shared.imaging.perceptual import perceptual_hashes


def crop_hashes(count: int, seed: int = 1) -> list[tuple[int, int, int]]:
    from skimage import data as samples

    rng = random.Random(seed)
    sources = [Image.fromarray(getattr(samples, name)()).convert("RGB") for name in PHOTOS]
    hashes = []
    for _ in range(count):
        image = rng.choice(sources)
        scale = rng.uniform(0.3, 0.9)
        width, height = int(image.width * scale), int(image.height * scale)
        left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
        crop = image.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        phash, dhash, mirror = perceptual_hashes(crop)
        hashes.append((int(phash, 16), int(dhash, 16), int(mirror, 16)))
    return hashes


def candidate_fraction(scheme: BandScheme, hashes: list[tuple[int, int, int]]) -> float:
    probes = [scheme.probe(phash, mirror) for phash, _, mirror in hashes]
    splits = [scheme.split(phash) for phash, _, _ in hashes]
    pairs = found = 0
    for a, b in itertools.combinations(range(len(hashes)), 2):
        pairs += 1
        found += any(value in keys for value, keys in zip(splits[b], probes[a], strict=True))
    return found / pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    args = parser.parse_args()
    hashes = crop_hashes(args.images)
    policy = NearDuplicatePolicy()
    within = sum(
        hamming(a[0], b[0]) <= policy.max_phash_distance for a, b in itertools.combinations(hashes, 2)
    ) / (len(hashes) * (len(hashes) - 1) / 2)
    default = BandScheme.for_max_distance(policy.max_phash_distance)
    print(f"{args.images} unrelated crops; pairs within pHash {policy.max_phash_distance}: {within:.3%}")
    for scheme in [BandScheme(11), BandScheme(6, 1), BandScheme(4, 2), BandScheme(3, 3)]:
        keys = sum(len(k) for k in scheme.probe(hashes[0][0], hashes[0][2]))
        mark = "  (default)" if scheme == default else ""
        print(
            f"{scheme.name:>7}: guarantees d <= {scheme.guaranteed_distance:2d}; {keys:5d} keys a probe; "
            f"returns {candidate_fraction(scheme, hashes):.1%} of the library{mark}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
