"""64-bit perceptual hashes as integers, and the Hamming distance between them."""

from __future__ import annotations

HASH_BITS = 64


def parse_hash(hex_digits: str) -> int:
    """A hash given as 16 hex digits (as the imaging pipeline writes it)."""
    if len(hex_digits) != HASH_BITS // 4:
        raise ValueError(f"expected {HASH_BITS // 4} hex digits, got {hex_digits!r}")
    return int(hex_digits, 16)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
