"""The per-process wiring of settings and adapters, built once on first use (functions stay thin).

AppContext holds its stores and bus as ports (Protocols, each beside its adapter): `from_settings` wires the Azure
adapters, and fast tests wire the in-memory stand-ins beside them (shared/adapters/memory_*.py). mypy checks here
that each adapter still satisfies its port.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from shared.adapters.blobs import BlobStore, BlobStorePort
from shared.adapters.cosmos import ThreadLocalDatabase
from shared.adapters.dedup_index import CosmosDuplicateIndexStore
from shared.adapters.job_store import CosmosJobStore, JobStorePort
from shared.adapters.limits_store import CosmosLimitsStore
from shared.adapters.servicebus import MessageBus, MessageBusPort
from shared.config import ALL_QUEUES, Settings, get_settings
from shared.dedup.service import DuplicateService
from shared.limits.versioned import VersionedStore


@dataclass
class AppContext:
    settings: Settings
    store: JobStorePort
    blobs: BlobStorePort
    bus: MessageBusPort
    dedup: DuplicateService
    limits: VersionedStore  # the shared token buckets and quota usage (the limits store's port, in shared/limits)

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


_context_lock = threading.Lock()


def get_context() -> AppContext:
    """The process's one context, built on first use: the first requests may arrive on several threads at once,
    and each build opens clients, so it is built under a lock, once."""
    with _context_lock:
        return _build_context()


@lru_cache(maxsize=1)
def _build_context() -> AppContext:
    return AppContext.from_settings(get_settings())


log = logging.getLogger(__name__)


def warm_up(timeout_seconds: float = 15.0) -> None:
    """Builds this process's context and opens its connections before the first invocation, so a route's first call
    costs what later ones do (the first manifest submit took ~500 ms, almost all of it the Service Bus connection).

    Called when a worker imports the app, before it reports ready. Best effort and bounded: an unreachable service
    is logged and left for the first call to report, it never fails or stalls a start for longer than the timeout.
    """
    started = time.perf_counter()
    failures: list[str] = []

    def run() -> None:
        try:
            ctx = get_context()
        except Exception as exc:  # settings the start itself will report, or a client that cannot be built
            failures.append(f"context: {type(exc).__name__}: {exc}")
            return
        for name, step in (
            ("cosmos", ctx.store.get_rollup_cursor),  # TLS connection, account and container metadata caches
            # The first cross-partition query fetches the query plan and partition key ranges (~140 ms here).
            ("cosmos query", lambda: ctx.store.page_images("warm-up", 1, None)),
            ("servicebus", lambda: ctx.bus.open_senders(ALL_QUEUES)),
        ):
            try:
                step()
            except Exception as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")

    worker = threading.Thread(target=run, name="warm-up", daemon=True)
    worker.start()
    worker.join(timeout_seconds)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if worker.is_alive():
        log.warning("warm-up still running after %.0f ms; the first calls will finish it", elapsed_ms)
    elif failures:
        log.warning("warm-up: %s (%.0f ms)", "; ".join(failures), elapsed_ms)
    else:
        log.info("warm-up done in %.0f ms", elapsed_ms)
