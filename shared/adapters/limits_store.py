"""The Cosmos `limits` container: small versioned documents keyed by `key` (its partition key and id), read with
their etag and written back only if nobody changed them since (optimistic concurrency across every instance).

Holds the shared token buckets (`api:<tenant>`, `host:<host>:<port>`) and each tenant's quota usage
(`usage:<tenant>`). One point read and one conditional write per operation; both are a partition's single document.
"""

from __future__ import annotations

import threading
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, DatabaseProxy
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.adapters.cosmos import ContainerSource, SharedDatabase

CONTAINER = "limits"


class CosmosLimitsStore:
    """Implements shared.limits.bucket.VersionedStore on Cosmos."""

    def __init__(self, database: ContainerSource | DatabaseProxy) -> None:
        self._source = SharedDatabase(database) if isinstance(database, DatabaseProxy) else database
        self._requests = 0
        self._lock = threading.Lock()

    @property
    def _container(self) -> ContainerProxy:
        return self._source.container(CONTAINER)

    @property
    def requests(self) -> int:
        """Cosmos requests made so far (for the benchmark)."""
        return self._requests

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    def read(self, key: str) -> tuple[dict[str, Any], str] | None:
        """The document and its etag, or None."""
        self._count()
        try:
            raw = dict(self._container.read_item(key, partition_key=key))
        except CosmosResourceNotFoundError:
            return None
        return {k: v for k, v in raw.items() if not k.startswith("_")}, str(raw["_etag"])

    def create(self, key: str, body: dict[str, Any]) -> bool:
        """Creates the document if there is none. False if another writer created it first."""
        self._count()
        try:
            self._container.create_item({**body, "id": key, "key": key})
        except CosmosResourceExistsError:
            return False
        return True

    def replace(self, key: str, body: dict[str, Any], etag: str) -> bool:
        """Replaces the document if its etag is still `etag`. False on a conflict (or if it was deleted)."""
        self._count()
        try:
            self._container.replace_item(
                key, {**body, "id": key, "key": key}, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
            return False
        return True
