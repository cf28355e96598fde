"""The local Cosmos emulator answers as the service does where the app depends on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from devstack.stack import ROOT, LocalStack
from shared.adapters.cosmos import ThreadLocalDatabase, make_cosmos_client, provision_local
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


QUERY_CHECK = r"""
const { linearQueryCode } = require(process.argv[1]);
const compile = require("@zeit/cosmosdb-query").default;
const executor = require("@zeit/cosmosdb-query/lib/executor");
const docs = [];
for (let i = 0; i < 300; i++) {
  docs.push({ id: `j.${i}`, jobId: i % 2 ? "a" : "b", type: i % 7 ? "image" : "chunk", index: 300 - i, _ts: i,
              _rid: `r${String(i).padStart(6, "0")}`, bands: [i % 5, i % 11], groupKeys: i % 3 ? ["k1"] : [] });
}
const queries = JSON.parse(process.argv[2]);
const out = [];
for (const [text, parameters] of queries) {
  const { code } = compile(text);
  const linear = linearQueryCode(code);
  const run = (c) => JSON.stringify(executor.default(docs, { code: c, parameters, maxItemCount: 50 }));
  out.push({ same: run(code) === run(linear), quadratic: linear.includes("[...$, {"), rows: run(linear).length });
}
console.log(JSON.stringify(out));
"""


def _run_with_the_patches(script: str, queries: list[Any]) -> Any:
    """Runs a node script given devstack/cosmos_patches.js and the queries as JSON; returns what it printed."""
    node = shutil.which("node")
    assert node, "node is installed by devstack/bootstrap"
    done = subprocess.run(
        [node, "-e", script, str(ROOT / "devstack" / "cosmos_patches.js"), json.dumps(queries)],
        cwd=ROOT / "devstack", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_the_emulators_query_compiler_runs_in_one_pass_with_the_same_results() -> None:
    # The compiler copied the collection with `[...$, { c }]` for every document: a query over 40,000 documents took
    # 6 s. devstack/cosmos_patches.js rewrites the code; the results must not change.
    queries = [
        ["SELECT * FROM c WHERE c.jobId = @job AND c.type = 'image' ORDER BY c.index",
         [{"name": "@job", "value": "a"}]],
        ["SELECT c['id'], c['_ts'] FROM c WHERE c._ts >= @since AND c.type IN ('chunk', 'image')",
         [{"name": "@since", "value": 100}]],
        ["SELECT c.id FROM c WHERE ARRAY_CONTAINS(@b, c.bands[0]) OR ARRAY_CONTAINS(@b, c.bands[1])",
         [{"name": "@b", "value": [1, 2]}]],
        ["SELECT c.id FROM c WHERE EXISTS(SELECT VALUE k FROM k IN c.groupKeys WHERE k = 'k1')", []],
        ["SELECT c.id, b FROM c JOIN b IN c.bands WHERE c.type = 'chunk'", []],
    ]  # fmt: skip
    results = _run_with_the_patches(QUERY_CHECK, queries)
    assert all(r["same"] for r in results), results
    assert not any(r["quadratic"] for r in results), results
    assert all(r["rows"] > 2 for r in results), "every query found something, so the comparison means something"


SOURCES_CHECK = r"""
const { readManySources } = require(process.argv[1]);
const compile = require("@zeit/cosmosdb-query").default;
const out = JSON.parse(process.argv[2]).map(text => {
  const sources = readManySources(compile(text).ast);
  return sources && sources.map(s => s.name || s.value);
});
console.log(JSON.stringify(out));
"""


def test_the_emulator_tells_read_many_queries_by_the_ids_they_name() -> None:
    # devstack/cosmos_patches.js runs a query that can only return named ids over those documents alone.
    queries = [
        "SELECT * FROM c WHERE ( ( c.id = @param_id0 AND c[\"jobId\"] = @param_pk00 AND c[\"bucket\"] = @param_pk01 ) "
        "OR ( c.id = @param_id1 AND c[\"jobId\"] = @param_pk10 AND c[\"bucket\"] = @param_pk11 ) )",
        "SELECT * FROM c WHERE c.pk = @pk AND c.id IN (@id1, 'x')",
        "SELECT * FROM c WHERE c.jobId = @job",
        "SELECT * FROM c WHERE c.id = @a OR c.type = 'job'",
        "SELECT * FROM c WHERE NOT (c.id = @a)",
        "SELECT * FROM c WHERE c.id != @a",
    ]
    sources = _run_with_the_patches(SOURCES_CHECK, queries)
    assert sources == [["@param_id0", "@param_id1"], ["@id1", "x"], None, None, None, None]


@pytest.mark.stack
def test_a_read_many_returns_what_point_reads_return(storage_stack: LocalStack) -> None:
    settings = Settings.from_env({**storage_stack.settings_env(), "ServiceBusConnection": "Endpoint=sb://unused;"})
    container = provision_local(make_cosmos_client(settings), settings).get_container_client("jobs")
    for job, bucket in (("jrm-a", 0), ("jrm-b", 0), ("jrm-a", 3)):  # one id in three partitions
        container.upsert_item({"id": "same-id", "jobId": job, "bucket": bucket, "where": f"{job}/{bucket}"})
    for index in range(50):
        container.upsert_item({"id": f"other-{index}", "jobId": "jrm-a", "bucket": 0, "where": "other"})
    asked: list[tuple[str, list[str | int]]] = [
        ("same-id", ["jrm-a", 3]), ("same-id", ["jrm-b", 0]), ("other-7", ["jrm-a", 0]), ("missing", ["jrm-a", 0]),
    ]  # fmt: skip

    found = sorted(row["where"] + ":" + row["id"] for row in container.read_items(asked))

    assert found == ["jrm-a/3:same-id", "jrm-b/0:same-id", "other:other-7"]


@pytest.mark.stack
def test_closing_the_thread_local_database_closes_every_threads_client(storage_stack: LocalStack) -> None:
    settings = Settings.from_env({**storage_stack.settings_env(), "ServiceBusConnection": "Endpoint=sb://unused;"})
    provision_local(make_cosmos_client(settings), settings)
    database = ThreadLocalDatabase(settings)
    store = CosmosJobStore(database)
    release, ready = threading.Event(), threading.Barrier(3)
    clients: list[CosmosClient] = []

    def read_on_a_live_thread() -> None:
        assert store.get_job("job-never-written") is None
        clients.append(database.clients.get().client)
        ready.wait(30)
        release.wait(30)

    threads = [threading.Thread(target=read_on_a_live_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(60)
        assert len({id(c) for c in clients}) == 2 and database.clients.open_count() == 2
        database.close()
        # What CosmosClient.close() ends: the client's hold on the SDK's shared per-endpoint routing caches.
        assert all(c.client_connection._routing_map_provider._released for c in clients)
        assert database.clients.open_count() == 0
        assert store.get_job("job-never-written") is None  # this thread builds a new client and reads on
        assert database.clients.get().client not in clients
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
        database.close()
