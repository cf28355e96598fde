"""The per-process wiring of settings and adapters, built once on first use (functions stay thin)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from shared.adapters.blobs import BlobStore
from shared.adapters.cosmos import ThreadLocalDatabase
from shared.adapters.dedup_index import CosmosDuplicateIndexStore
from shared.adapters.job_store import CosmosJobStore
from shared.adapters.limits_store import CosmosLimitsStore
from shared.adapters.servicebus import MessageBus
from shared.config import Settings, get_settings
from shared.dedup.service import DuplicateService


@dataclass
class AppContext:
    settings: Settings
    store: CosmosJobStore
    blobs: BlobStore
    bus: MessageBus
    dedup: DuplicateService
    limits: CosmosLimitsStore

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        database = ThreadLocalDatabase(settings)
        return cls(
            settings=settings,
            store=CosmosJobStore(database),
            blobs=BlobStore.from_settings(settings),
            bus=MessageBus.from_settings(settings),
            dedup=DuplicateService(CosmosDuplicateIndexStore.from_database(database)),
            limits=CosmosLimitsStore(database),
        )


@lru_cache(maxsize=1)
def get_context() -> AppContext:
    return AppContext.from_settings(get_settings())
