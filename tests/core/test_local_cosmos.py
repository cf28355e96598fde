"""The local Cosmos emulator answers as the service does where the app depends on it."""

from __future__ import annotations

import pytest
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from devstack.stack import LocalStack
from shared.adapters.cosmos import make_cosmos_client, provision_local
from shared.adapters.job_store import CosmosJobStore
from shared.config import Settings
from shared.messages import image_result_id
from shared.models import ImageResultDocument, image_bucket, utcnow


@pytest.mark.stack
def test_reading_a_missing_document_is_a_404_even_in_an_empty_partition(storage_stack: LocalStack) -> None:
    # The package's own handler answered 500 here ("Cannot read properties of undefined"), which the SDK retried with
    # back-off: every look-up of a chunk record not written yet cost ~0.5 s. devstack/cosmos_server.js mends it.
    settings = Settings.from_env({**storage_stack.settings_env(), "ServiceBusConnection": "Endpoint=sb://unused;"})
    database = provision_local(make_cosmos_client(settings), settings)
    container = database.get_container_client("jobs")
    with pytest.raises(CosmosResourceNotFoundError):
        container.read_item("nothing-here", partition_key=["a-job-with-no-documents", 0], retry_total=0)
    store = CosmosJobStore(database)
    assert store.get_chunk("job-never-written", 0) is None and store.get_job("job-never-written") is None


@pytest.mark.stack
def test_a_jobs_results_spread_over_buckets_and_still_page_in_order(storage_stack: LocalStack) -> None:
    settings = Settings.from_env({**storage_stack.settings_env(), "ServiceBusConnection": "Endpoint=sb://unused;"})
    store = CosmosJobStore(provision_local(make_cosmos_client(settings), settings))
    job_id = "jbuckets"
    indexes = [3, 999_999, 1_000_000, 2_500_001]
    for index in reversed(indexes):
        store.upsert_image(
            ImageResultDocument(
                id=image_result_id(job_id, index), jobId=job_id, bucket=image_bucket(index), index=index,
                chunk=index // 500, kind="url", ref=f"https://example.com/{index}.jpg", ok=True, processed_at=utcnow(),
            )
        )
    assert [image_bucket(i) for i in indexes] == [1, 1, 2, 3]
    seen, token = [], None
    while True:
        items, token = store.page_images(job_id, 1, token)
        seen += [(item["index"], item["bucket"]) for item in items]
        if not token:
            break
    assert seen == [(3, 1), (999_999, 1), (1_000_000, 2), (2_500_001, 3)]
    assert store.image_outcomes(job_id, 2000) == {1_000_000: None}
