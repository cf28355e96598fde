"""An in-process VersionedStore (shared/limits/versioned.py): the stand-in for CosmosLimitsStore in fast tests of
the use cases that take from the shared token buckets and quota usage. Each write gets a new etag."""

from __future__ import annotations

import itertools
import threading
from typing import Any


class InMemoryLimitsStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[dict[str, Any], str]] = {}
        self._versions = itertools.count(1)
        self.requests = 0

    def read(self, key: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            self.requests += 1
            found = self._docs.get(key)
            return None if found is None else (dict(found[0]), found[1])

    def create(self, key: str, body: dict[str, Any]) -> bool:
        with self._lock:
            self.requests += 1
            if key in self._docs:
                return False
            self._docs[key] = ({**body, "id": key, "key": key}, str(next(self._versions)))
            return True

    def replace(self, key: str, body: dict[str, Any], etag: str) -> bool:
        with self._lock:
            self.requests += 1
            found = self._docs.get(key)
            if found is None or found[1] != etag:
                return False
            self._docs[key] = ({**body, "id": key, "key": key}, str(next(self._versions)))
            return True
