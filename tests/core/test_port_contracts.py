"""The in-memory stand-ins keep the contract of the adapters they stand in for: each check here runs on both, the
stand-in (fast) and the adapter on its emulator (`stack`). tests/unit/test_use_cases.py trusts the stand-ins only as
far as these checks hold."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devstack.stack import LocalStack
from shared.adapters.blobs import BlobNotFound, BlobStore, BlobStorePort, BlobTooLarge
from shared.adapters.job_store import CosmosJobStore, JobStorePort, RequestMeter
from shared.adapters.memory_blobs import InMemoryBlobStore
from shared.adapters.memory_job_store import InMemoryJobStore
from shared.config import MANIFESTS_CONTAINER, Lane, Settings
from shared.messages import chunk_document_id, image_result_id
from shared.models import ChunkDocument, ImageCounts, ImageResultDocument, JobDocument, JobOptions, utcnow


@pytest.fixture(scope="module")
def emulator_settings(storage_stack: LocalStack) -> Settings:
    return Settings.from_env({**storage_stack.settings_env(), "ServiceBusConnection": "Endpoint=sb://unused;"})


@pytest.fixture(scope="module")
def cosmos_job_store(emulator_settings: Settings) -> CosmosJobStore:
    from shared.adapters.cosmos import make_cosmos_client, provision_local

    return CosmosJobStore(provision_local(make_cosmos_client(emulator_settings), emulator_settings))


@pytest.fixture(scope="module")
def azurite_blob_store(emulator_settings: Settings) -> Iterator[BlobStore]:
    blobs = BlobStore.from_settings(emulator_settings)
    blobs.provision_local()
    yield blobs


@pytest.fixture(params=["memory", pytest.param("cosmos", marks=pytest.mark.stack)])
def job_store(request: pytest.FixtureRequest) -> JobStorePort:
    if request.param == "memory":
        return InMemoryJobStore()
    cosmos: JobStorePort = request.getfixturevalue("cosmos_job_store")
    return cosmos


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.stack)])
def blob_store(request: pytest.FixtureRequest) -> BlobStorePort:
    if request.param == "memory":
        return InMemoryBlobStore()
    azurite: BlobStorePort = request.getfixturevalue("azurite_blob_store")
    return azurite


def _job(job_id: str) -> JobDocument:
    return JobDocument(
        id=job_id, jobId=job_id, tenantId="tcontract", lane=Lane("high"), concurrency=1, source="urls",
        options=JobOptions(), created_at=utcnow(),
    )  # fmt: skip


def _chunk(job_id: str, chunk: int, succeeded: int = 0) -> ChunkDocument:
    return ChunkDocument(
        id=chunk_document_id(job_id, chunk), jobId=job_id, chunk=chunk, state="running", images=3,
        counts=ImageCounts(succeeded=succeeded), attempts=1, started_at=utcnow(),
    )  # fmt: skip


def _new_id() -> str:
    return f"j{uuid.uuid4().hex[:16]}"


# --- the job store -------------------------------------------------------------------------------------------------


def test_replacing_a_job_is_guarded_by_the_etag_it_was_read_with(job_store: JobStorePort) -> None:
    job_id = _new_id()
    job_store.create_job(_job(job_id))
    found = job_store.get_job(job_id)
    assert found is not None
    job, etag = found

    job.total_images = 5
    assert job_store.replace_job(job, etag)
    job.total_images = 6
    assert not job_store.replace_job(job, etag), "a replace with an etag from before the last write must lose"

    current = job_store.get_job(job_id)
    assert current is not None and current[0].total_images == 5 and current[1] != etag
    assert job_store.patch_job(job_id, {"cancel_requested": True})
    assert not job_store.replace_job(current[0], current[1]), "a patch changes the etag too"
    after = job_store.get_job(job_id)
    assert after is not None and after[0].cancel_requested and after[0].total_images == 5
    assert job_store.get_job(_new_id()) is None and not job_store.patch_job(_new_id(), {"cancel_requested": True})


def test_first_chunks_of_many_jobs_come_in_one_read(job_store: JobStorePort) -> None:
    with_chunk, second_only, without = _new_id(), _new_id(), _new_id()
    for job_id in (with_chunk, second_only, without):
        job_store.create_job(_job(job_id))
    job_store.upsert_chunk(_chunk(with_chunk, 0, succeeded=2))
    job_store.upsert_chunk(_chunk(with_chunk, 1))
    job_store.upsert_chunk(_chunk(second_only, 1))
    meter = RequestMeter()

    with job_store.metered(meter):
        found = job_store.get_first_chunks([with_chunk, second_only, without, _new_id()])

    assert meter.count == 1
    assert list(found) == [with_chunk], "chunk 0 only, of the jobs that have one"
    assert found[with_chunk].chunk == 0 and found[with_chunk].counts.succeeded == 2
    assert job_store.get_first_chunks([]) == {}


def test_results_page_in_index_order_with_a_token_until_the_last_page(job_store: JobStorePort) -> None:
    job_id = _new_id()
    for index in (4, 0, 3, 1, 2):
        job_store.upsert_image(
            ImageResultDocument(
                id=image_result_id(job_id, index), jobId=job_id, bucket=0, index=index, chunk=0, kind="url",
                ref=f"https://example.com/{index}.jpg", ok=True, processed_at=utcnow(),
            )
        )  # fmt: skip
    pages, token = [], None
    while True:
        items, token = job_store.page_images(job_id, 2, token)
        pages.append([item["index"] for item in items])
        assert all(not key.startswith("_") for item in items for key in item)
        if token is None:
            break
        assert isinstance(token, str)
    assert pages == [[0, 1], [2, 3], [4]]
    assert job_store.page_images(_new_id(), 2, None) == ([], None)


def test_changes_carry_stamps_that_never_go_down_and_a_rewrite_is_a_new_change(job_store: JobStorePort) -> None:
    job_id = _new_id()
    job_store.create_job(_job(job_id))  # the job document itself is never a change
    job_store.upsert_chunk(_chunk(job_id, 0))
    job_store.upsert_chunk(_chunk(job_id, 1))

    mine = [c for c in job_store.changes_since(0) if c.job_id == job_id]
    assert [c.document_id for c in mine] == [chunk_document_id(job_id, 0), chunk_document_id(job_id, 1)]
    first, second = mine
    assert first.ts <= second.ts and first.etag != second.etag
    assert isinstance(second.document, ChunkDocument) and second.document.chunk == 1

    job_store.upsert_chunk(_chunk(job_id, 0, succeeded=2))
    again = {c.document_id: c for c in job_store.changes_since(second.ts) if c.job_id == job_id}
    rewritten = again[chunk_document_id(job_id, 0)]
    assert rewritten.ts >= second.ts and rewritten.etag != first.etag
    assert isinstance(rewritten.document, ChunkDocument) and rewritten.document.counts.succeeded == 2


# --- the blob store ------------------------------------------------------------------------------------------------


def test_blobs_read_whole_in_ranges_and_streamed(blob_store: BlobStorePort) -> None:
    name = f"contract/{uuid.uuid4().hex}/a.txt"
    data = b"".join(b"line %d\n" % i for i in range(1000))
    blob_store.write(MANIFESTS_CONTAINER, name, data, "text/plain")

    assert blob_store.exists(MANIFESTS_CONTAINER, name) and blob_store.size(MANIFESTS_CONTAINER, name) == len(data)
    assert blob_store.read(MANIFESTS_CONTAINER, name, len(data)) == data
    with pytest.raises(BlobTooLarge):
        blob_store.read(MANIFESTS_CONTAINER, name, len(data) - 1)
    assert blob_store.read_range(MANIFESTS_CONTAINER, name, 7, 20) == data[7:20]
    assert blob_store.read_range(MANIFESTS_CONTAINER, name, 20, 20) == b""
    assert b"".join(blob_store.stream(MANIFESTS_CONTAINER, name, 100)) == data[100:]

    blob_store.write(MANIFESTS_CONTAINER, name, b"new", "text/plain")
    assert blob_store.read(MANIFESTS_CONTAINER, name, 10) == b"new"


def test_a_missing_blob_is_blob_not_found_for_every_read(blob_store: BlobStorePort) -> None:
    name = f"contract/{uuid.uuid4().hex}/missing"
    assert not blob_store.exists(MANIFESTS_CONTAINER, name)
    for read in (
        lambda: blob_store.read(MANIFESTS_CONTAINER, name, 10),
        lambda: blob_store.read_range(MANIFESTS_CONTAINER, name, 0, 10),
        lambda: blob_store.size(MANIFESTS_CONTAINER, name),
        lambda: b"".join(blob_store.stream(MANIFESTS_CONTAINER, name)),
    ):
        with pytest.raises(BlobNotFound):
            read()


def test_blocks_are_invisible_until_committed_and_listing_is_by_prefix(blob_store: BlobStorePort) -> None:
    folder = f"contract/{uuid.uuid4().hex}"
    blob_store.stage_block(MANIFESTS_CONTAINER, f"{folder}/built", 1, b"world")
    blob_store.stage_block(MANIFESTS_CONTAINER, f"{folder}/built", 0, b"hello ")
    assert not blob_store.exists(MANIFESTS_CONTAINER, f"{folder}/built")
    blob_store.commit_blocks(MANIFESTS_CONTAINER, f"{folder}/built", 2, "text/plain")
    assert blob_store.read(MANIFESTS_CONTAINER, f"{folder}/built", 100) == b"hello world"

    blob_store.write(MANIFESTS_CONTAINER, f"{folder}/x/1", b"1", "text/plain")
    blob_store.write(MANIFESTS_CONTAINER, f"{folder}/x/22", b"22", "text/plain")
    blob_store.write(MANIFESTS_CONTAINER, f"{folder}/y", b"333", "text/plain")
    assert sorted(blob_store.list_sizes(MANIFESTS_CONTAINER, f"{folder}/x/")) == [
        (f"{folder}/x/1", 1),
        (f"{folder}/x/22", 2),
    ]
    expiry = datetime.now(UTC) + timedelta(minutes=5)
    assert blob_store.read_url(MANIFESTS_CONTAINER, f"{folder}/y", expiry) != blob_store.upload_url(
        MANIFESTS_CONTAINER, f"{folder}/y", expiry
    )
