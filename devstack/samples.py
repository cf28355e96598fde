"""Sample photos for a first job on a machine without internet: JPEGs cut from scikit-image's bundled photos
(installed with the dev tools by ./devstack/bootstrap), so nothing is downloaded.

    .venv/bin/python -m devstack.samples DIR [--count 12]

Writes `--count` different photos, one exact copy of the first and one smaller re-encode of the second (so the
job shows exact and near duplicates), and one with an EXIF orientation tag (so its thumbnails show the rotation).
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "cat",
          "camera", "moon", "page", "coins", "horse", "clock", "grass", "gravel", "brick"]  # fmt: skip


def photo_jpeg(seed: int, megapixels: float) -> bytes:
    """A camera-like JPEG: a crop (its place and size chosen by `seed`) of one of scikit-image's shipped photos,
    resized to `megapixels`, with a little grain. Different seeds give different bytes and, almost always,
    perceptual hashes that are not near each other (unrelated images for the duplicate index)."""
    import numpy as np
    from PIL import Image
    from skimage import data as samples

    rng = random.Random(seed)
    img = Image.fromarray(getattr(samples, PHOTOS[seed % len(PHOTOS)])()).convert("RGB")
    scale = rng.uniform(0.5, 0.9)
    width, height = int(img.width * scale), int(img.height * scale)
    left, top = rng.randint(0, img.width - width), rng.randint(0, img.height - height)
    img = img.crop((left, top, left + width, top + height))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    scale = (megapixels * 1e6 / (img.width * img.height)) ** 0.5
    img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).integers(-6, 7, (img.height, img.width, 3))
    grainy = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(grainy).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_samples(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: bytes) -> None:
        path = folder / name
        path.write_bytes(data)
        written.append(path)

    photos = [photo_jpeg(seed, 1.0) for seed in range(count)]
    for n, data in enumerate(photos):
        put(f"photo-{n:02d}.jpg", data)
    put("photo-00-copy.jpg", photos[0])  # an exact duplicate
    with Image.open(io.BytesIO(photos[1])) as second:
        smaller = io.BytesIO()
        second.resize((second.width // 2, second.height // 2)).save(smaller, "JPEG", quality=75)
    put("photo-01-small.jpg", smaller.getvalue())  # a near duplicate
    with Image.open(io.BytesIO(photos[2 % count])) as third:
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
        rotated = io.BytesIO()
        third.save(rotated, "JPEG", quality=90, exif=exif)
    put("photo-02-rotated.jpg", rotated.getvalue())
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=12)
    args = parser.parse_args(argv)
    written = write_samples(args.folder, max(3, args.count))
    print(f"wrote {len(written)} JPEGs to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
