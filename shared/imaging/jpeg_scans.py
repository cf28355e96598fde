"""How many scans a JPEG has, counted from its markers before anything is decoded.

A progressive JPEG is a sequence of scans, and libjpeg passes over the image's whole coefficient buffer once per
scan: a small file that repeats its scans thousands of times costs seconds to tens of seconds of CPU that neither
the byte cap nor the pixel cap bounds (measured here: 14-20 s for such a file; bench/jpeg_scan_limit.py). Pillow
sets no limit, so the count is checked first, from a walk of the marker segments that never decodes a pixel.
"""

from __future__ import annotations

import re

# libjpeg's standard progressive script writes 10 scans for a colour image and 6 for a greyscale one; mozjpeg's
# searched scripts and hand-written jpegtran scripts stay in the tens. libjpeg-turbo caps scans (`-maxscans` in its
# tools, 500 in its fuzzers) and NVIDIA nvImageCodec defaults to 256. 100 is ten times any ordinary encoder's
# output and bounds the worst case to 100 passes over a buffer the pixel cap already bounds.
MAX_JPEG_SCANS = 100

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
# Markers that stand alone (no length field): TEM and RST0..7. SOI/EOI are handled on their own.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# The end of entropy-coded data: 0xFF (after any fill 0xFF bytes) followed by something that is neither a stuffed
# zero nor a restart marker. Searched by the regex engine, not byte by byte in Python.
_MARKER_AFTER_SCAN = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")


def count_jpeg_scans(data: bytes, stop_above: int = MAX_JPEG_SCANS) -> int:
    """The number of start-of-scan (SOS) markers of the first image, stopping once `stop_above` is exceeded.

    Walks the segments by their length fields (so an SOS inside an APP segment, e.g. an EXIF thumbnail, is not
    counted) and skips each scan's entropy-coded data to the next real marker. Stops at EOI or where the structure
    breaks: a malformed file is left to the decoder to refuse, with its own message.
    """
    scans = 0
    pos = 2 if data[:2] == b"\xff\xd8" else 0
    end = len(data)
    while pos + 1 < end and scans <= stop_above:
        if data[pos] != 0xFF:
            return scans
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            return scans
        if marker in _STANDALONE or marker == _SOI:
            pos += 2
            continue
        if pos + 4 > end:
            return scans
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return scans
        pos += 2 + length
        if marker == _SOS:
            scans += 1
            found = _MARKER_AFTER_SCAN.search(data, pos)
            if found is None:
                return scans
            pos = found.end() - 2  # at the 0xFF of the next marker (fill bytes before it are skipped above)
    return scans
