"""The local Cosmos emulator answers as the service does where the app depends on it."""

from __future__ import annotations

import pytest
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from devstack.stack import LocalStack
from shared.adapters.cosmos import make_cosmos_client, provision_local
from shared.adapters.job_store import CosmosJobStore
from shared.config import Settings


@pytest.mark.stack
def test_reading_a_missing_document_is_a_404_even_in_an_empty_partition(storage_stack: LocalStack) -> None:
    # The package's own handler answered 500 here ("Cannot read properties of undefined"), which the SDK retried with
    # back-off: every look-up of a chunk record not written yet cost ~0.5 s. devstack/cosmos_server.js mends it.
    settings = Settings.from_env({**storage_stack.settings_env(), "ServiceBusConnection": "Endpoint=sb://unused;"})
    database = provision_local(make_cosmos_client(settings), settings)
    container = database.get_container_client("jobs")
    with pytest.raises(CosmosResourceNotFoundError):
        container.read_item("nothing-here", partition_key="a-partition-with-no-documents", retry_total=0)
    store = CosmosJobStore(database)
    assert store.get_chunk("job-never-written", 0) is None and store.get_job("job-never-written") is None
