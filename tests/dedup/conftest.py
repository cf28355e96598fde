"""Stores under test: the in-process reference store, and the Cosmos store on the local Cosmos emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import LocalStack
from shared.dedup import DuplicateIndexStore, InMemoryDuplicateIndexStore


@pytest.fixture(scope="session")
def cosmos_dedup_store(storage_stack: LocalStack) -> Iterator[DuplicateIndexStore]:
    from shared.adapters.cosmos import ThreadLocalDatabase, make_cosmos_client, provision_local
    from shared.adapters.dedup_index import CosmosDuplicateIndexStore
    from shared.config import Settings

    settings = Settings.from_env(storage_stack.settings_env())
    provision_local(make_cosmos_client(settings), settings)
    # A client per thread, as the app has: the concurrency tests query from several threads at once.
    yield CosmosDuplicateIndexStore.from_database(ThreadLocalDatabase(settings))


@pytest.fixture(params=["memory", pytest.param("cosmos", marks=pytest.mark.stack)])
def store(request: pytest.FixtureRequest) -> DuplicateIndexStore:
    if request.param == "memory":
        return InMemoryDuplicateIndexStore()
    cosmos: DuplicateIndexStore = request.getfixturevalue("cosmos_dedup_store")
    return cosmos
