"""Read-modify-write of one small shared document under optimistic concurrency (etags), retried on conflict.

Threads of one process update the same document one at a time (a striped lock on the key): racing each other for
the etag only made them re-read (bench/limits_bench.py measured 5.6 requests a call, and calls losing every race,
with four threads on one tenant's bucket), so only other processes and instances are left to race.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


_STRIPES = [threading.Lock() for _ in range(64)]


def _stripe(key: str) -> threading.Lock:
    return _STRIPES[zlib.crc32(key.encode()) % len(_STRIPES)]


class VersionedStore(Protocol):
    """Documents keyed by a string, each read with a version tag and replaced only if the tag still matches."""

    def read(self, key: str) -> tuple[dict[str, Any], str] | None: ...

    def create(self, key: str, body: dict[str, Any]) -> bool: ...

    def replace(self, key: str, body: dict[str, Any], etag: str) -> bool: ...


class Contended(Exception):
    """Every attempt lost the race to another writer."""


def update(
    store: VersionedStore,
    key: str,
    change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]],
    attempts: int = 12,
) -> T:
    """Applies `change` to the current document (None if there is none) and writes what it returns, unless it
    returns None for the document (nothing to write); a conflict re-reads and re-applies after a short random pause
    (writers that collided once would otherwise collide again). Returns `change`'s answer. Raises Contended after
    `attempts` lost races: twelve, waiting at most about half a second in all, because four processes on two busy
    cores lost eight in a row (a quota check that gives up answers 503, so holding out longer is worth it)."""
    with _stripe(key):
        for attempt in range(attempts):
            if attempt:
                time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))
            found = store.read(key)
            new, answer = change(found[0] if found else None)
            if new is None:
                return answer
            if found is None:
                if store.create(key, new):
                    return answer
            elif store.replace(key, new, found[1]):
                return answer
    raise Contended(key)
