"""An in-process BlobStorePort: the stand-in for BlobStore in fast tests of the use cases.

Blobs are bytes by (container, name); staged blocks wait beside them until committed, as in Blob Storage. Signed
URLs are `memory://container/name?...` strings: nothing can fetch them, a test can only compare them.
tests/core/test_port_contracts.py holds it and BlobStore on Azurite to the same checks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

from shared.adapters.blobs import BlobNotFound, BlobTooLarge


class InMemoryBlobStore:
    def __init__(self, stream_block_bytes: int = 64 << 10) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._blocks: dict[tuple[str, str], dict[int, bytes]] = {}
        self._stream_block_bytes = stream_block_bytes

    def _data(self, container: str, name: str) -> bytes:
        with self._lock:
            found = self._blobs.get((container, name))
        if found is None:
            raise BlobNotFound(f"{container}/{name}")
        return found[0]

    def read(self, container: str, name: str, max_bytes: int) -> bytes:
        data = self._data(container, name)
        if len(data) > max_bytes:
            raise BlobTooLarge(f"{len(data)} bytes is over the {max_bytes}-byte limit")
        return data

    def read_range(self, container: str, name: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        return self._data(container, name)[start:end]

    def write(self, container: str, name: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._blobs[(container, name)] = (bytes(data), content_type)

    def size(self, container: str, name: str) -> int:
        return len(self._data(container, name))

    def stream(self, container: str, name: str, offset: int = 0) -> Iterator[bytes]:
        data = self._data(container, name)
        for start in range(offset, len(data), self._stream_block_bytes):
            yield data[start : start + self._stream_block_bytes]

    def exists(self, container: str, name: str) -> bool:
        with self._lock:
            return (container, name) in self._blobs

    def list_sizes(self, container: str, prefix: str) -> Iterator[tuple[str, int]]:
        with self._lock:
            found = sorted(
                (n, len(d)) for (c, n), (d, _) in self._blobs.items() if c == container and n.startswith(prefix)
            )
        yield from found

    def stage_block(self, container: str, name: str, block: int, data: bytes) -> None:
        with self._lock:
            self._blocks.setdefault((container, name), {})[block] = bytes(data)

    def commit_blocks(self, container: str, name: str, blocks: int, content_type: str) -> None:
        with self._lock:
            staged = self._blocks.get((container, name), {})
            missing = [n for n in range(blocks) if n not in staged]
            if missing:
                raise ValueError(f"{container}/{name}: blocks {missing[:5]} were never staged")  # the service: 400
            self._blobs[(container, name)] = (b"".join(staged[n] for n in range(blocks)), content_type)
            del self._blocks[(container, name)]

    def upload_url(self, container: str, name: str, expiry: datetime) -> str:
        return _url(container, name, "cw", expiry)

    def read_url(self, container: str, name: str, expiry: datetime) -> str:
        return _url(container, name, "r", expiry)

    # --- for tests -----------------------------------------------------------------------------------
    def content_type(self, container: str, name: str) -> str:
        with self._lock:
            found = self._blobs.get((container, name))
        if found is None:
            raise BlobNotFound(f"{container}/{name}")
        return found[1]


def _url(container: str, name: str, permissions: str, expiry: datetime) -> str:
    return f"memory://{container}/{quote(name)}?sp={permissions}&se={quote(expiry.isoformat())}"
