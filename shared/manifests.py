"""Reading manifests (one image reference a line): the references in a run of bytes, and the byte spans of lines.

Chunk messages of a manifest job carry byte ranges of the manifest, not its references: the expander finds the
ranges (`iter_line_spans`), the chunk worker reads its range back as references (`manifest_lines`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LineSpan:
    start: int  # byte offset of the line
    end: int  # byte offset just past its newline


def manifest_lines(data: bytes) -> list[str]:
    """The image references in a run of manifest bytes: one a line, blank lines and whitespace ignored."""
    return [line.strip() for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]


def iter_line_spans(chunks: Iterator[bytes], offset: int) -> Iterator[LineSpan]:
    """Byte spans of the non-blank lines of a stream that starts at `offset`. Linear in the bytes read: each block
    is scanned by index, and only the unfinished last line is carried into the next block."""
    carry = b""
    position = offset  # absolute offset of data[0]
    for block in chunks:
        data = carry + block if carry else block
        start = 0
        while (cut := data.find(b"\n", start)) >= 0:
            if data[start : cut + 1].strip():
                yield LineSpan(position + start, position + cut + 1)
            start = cut + 1
        carry = data[start:]
        position += start
    if carry.strip():
        yield LineSpan(position, position + len(carry))
