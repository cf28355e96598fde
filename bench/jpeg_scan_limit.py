"""The JPEG scan limit: what the scan bomb costs without it, what the marker walk costs, and that no ordinary JPEG
of the test corpus comes near the limit.

    PYTHONPATH=. .venv/bin/python -m bench.jpeg_scan_limit

Corpus: every photo of tests/imaging/corpus.py at 640 and 2000 px, as baseline, progressive, optimized, 4:4:4,
greyscale progressive, CMYK, with restart markers, with EXIF, plus the corpus's own JPEG generators.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

from PIL import Image

from shared.imaging import ImagingOptions, process_image
from shared.imaging.errors import ErrorCode
from shared.imaging.jpeg_scans import MAX_JPEG_SCANS, count_jpeg_scans
from tests.imaging import corpus

OPTIONS = ImagingOptions(detect_faces=False)


def corpus_jpegs() -> Iterator[tuple[str, bytes]]:
    for name in corpus.PHOTO_NAMES:
        for side in (640, 2000):
            photo = corpus.photo(name, side)
            yield f"{name}@{side} baseline", corpus.encode(photo, "JPEG", quality=90)
            yield f"{name}@{side} progressive", corpus.encode(photo, "JPEG", quality=85, progressive=True)
            yield f"{name}@{side} optimized", corpus.encode(photo, "JPEG", quality=75, optimize=True)
            yield f"{name}@{side} 4:4:4", corpus.encode(photo, "JPEG", quality=95, subsampling=0, progressive=True)
            yield f"{name}@{side} grey", corpus.encode(photo.convert("L"), "JPEG", progressive=True)
            yield f"{name}@{side} restarts", corpus.encode(photo, "JPEG", progressive=True, restart_marker_blocks=8)
        yield f"{name} exif", corpus.jpeg_with_exif(corpus.photo(name, 800), t0112=6)
    yield "cmyk", corpus.cmyk_jpeg()
    for orientation in range(1, 9):
        yield f"oriented {orientation}", corpus.oriented_jpeg(corpus.photo("astronaut", 500), orientation)


def decode_seconds(data: bytes) -> float:
    started = time.process_time()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return time.process_time() - started


def main() -> None:
    files = list(corpus_jpegs())
    most = 0
    refused = []
    walk_ms: list[float] = []
    for label, data in files:
        started = time.perf_counter()
        scans = count_jpeg_scans(data)
        walk_ms.append((time.perf_counter() - started) * 1000)
        most = max(most, scans)
        result = process_image(data, OPTIONS)
        if not result.ok:
            refused.append((label, result.error))
    print(f"corpus: {len(files)} JPEGs, most scans in one file: {most} (limit {MAX_JPEG_SCANS})")
    print(f"corpus: refused by the pipeline: {len(refused)} {refused[:3]}")
    walk_ms.sort()
    print(f"marker walk: median {walk_ms[len(walk_ms) // 2]:.2f} ms, max {walk_ms[-1]:.2f} ms per corpus file")

    for repeats in (100, 1000, 2000):
        bomb = corpus.progressive_jpeg_scan_bomb(repeats)
        started = time.perf_counter()
        result = process_image(bomb, OPTIONS)
        refusal_ms = (time.perf_counter() - started) * 1000
        assert result.error is not None and result.error.code == ErrorCode.CORRUPT
        print(
            f"bomb ({count_jpeg_scans(bomb, 10**9)} scans, {len(bomb) // 1024} KB, 4096x4096): "
            f"libjpeg decode {decode_seconds(bomb):.1f} s CPU without the limit; refused in {refusal_ms:.1f} ms"
        )
    assert not refused and most <= MAX_JPEG_SCANS


if __name__ == "__main__":
    main()
