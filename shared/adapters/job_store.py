"""Job, chunk, image-result, expansion, dead-letter, duplicate-group and callback documents in the Cosmos `jobs`
container, keyed hierarchically by (`jobId`, `bucket`): job-wide documents in bucket 0, image results in buckets of
a million images (so a job of any size fits the 20 GB of a logical partition; queries filtered on `jobId` are still
routed to the job's partitions only).

Queries stay within what both Cosmos DB and the local emulator run: filters written as `WHERE c.jobId = @job` with
cross-partition enabled (the emulator cannot page with `partition_key=`), no aggregates, no GROUP BY, no
OFFSET/LIMIT (see "The local stack" in the README).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, DatabaseProxy
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.adapters.cosmos import ContainerSource, SharedDatabase
from shared.messages import chunk_document_id, expansion_document_id, image_result_id
from shared.models import (
    CallbackDocument,
    ChunkDocument,
    DeadLetterDocument,
    Document,
    DuplicatesDocument,
    ExpansionDocument,
    ImageResultDocument,
    JobDocument,
    JobEntryDocument,
    RollUpCursor,
    TenantDocument,
    image_bucket,
)
from shared.paging import ContinuationRejected

# The documents whose changes the status timer folds into job documents (never the job document itself, which the
# timer writes, nor image results, which chunk documents summarise).
CHANGE_TYPES = ("chunk", "deadletter", "expansion", "duplicates", "callback")
StoredChange = ChunkDocument | DeadLetterDocument | ExpansionDocument | DuplicatesDocument | CallbackDocument
_CHANGE_MODELS: dict[str, type[Document]] = {
    "chunk": ChunkDocument,
    "deadletter": DeadLetterDocument,
    "expansion": ExpansionDocument,
    "duplicates": DuplicatesDocument,
    "callback": CallbackDocument,
}
# What the timer reads of a change: every stored field of those documents (from the models, so none is forgotten),
# but a dead letter's body (up to 192 KB), plus the service's etag and write time.
_CHANGE_FIELDS = sorted(
    {field.alias or name for model in _CHANGE_MODELS.values() for name, field in model.model_fields.items()}
    - {"body"}
    | {"_etag", "_ts"}
)


class VersionedJob(NamedTuple):
    """A job document as read, with the etag a guarded replace must match."""

    job: JobDocument
    etag: str


class RequestMeter:
    """Requests counted by the threads that carry it (CosmosJobStore.metered)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self._count += n

    @property
    def count(self) -> int:
        return self._count


@dataclass(frozen=True)
class Change:
    """One changed document as the timer's change query saw it."""

    document_id: str
    job_id: str
    etag: str
    ts: int
    document: StoredChange


class JobStorePort(Protocol):
    """What the use cases need of the `jobs` and `tenants` documents: the contract CosmosJobStore keeps and
    InMemoryJobStore (shared/adapters/memory_job_store.py) stands in for in fast tests.

    It sits beside its adapter, as BlobStorePort and MessageBusPort do, because it speaks the adapter module's own
    value types (Change, RequestMeter, ContinuationRejected) and a change to the adapter is a change to this
    contract: one module to read for both. Semantics every implementation keeps: `replace_job` is guarded by the
    etag `get_job` returned; every write gets a new etag and a `_ts` stamp that never goes down, which
    `changes_since` filters on; paged reads return an opaque continuation token (None after the last page) and
    raise ContinuationRejected for a token they did not make.
    """

    def metered(self, meter: RequestMeter) -> contextlib.AbstractContextManager[None]: ...

    def create_job(self, job: JobDocument) -> None: ...
    def get_job(self, job_id: str) -> VersionedJob | None: ...
    def replace_job(self, job: JobDocument, etag: str) -> bool: ...
    def patch_job(self, job_id: str, fields: dict[str, Any]) -> bool: ...
    def get_jobs(self, job_ids: list[str]) -> dict[str, JobDocument]: ...
    def upsert_job_entry(self, entry: JobEntryDocument) -> None: ...
    def page_job_entries(
        self,
        tenant_id: str,
        states: list[str] | None,
        created_after: str | None,
        created_before: str | None,
        page_size: int,
        continuation: str | None,
    ) -> tuple[list[str], str | None]: ...

    def active_jobs(self, limit: int) -> tuple[list[dict[str, Any]], bool]: ...
    def chunk_outcomes_since(self, since_epoch: float) -> list[dict[str, Any]]: ...

    def changes_since(self, since_ts: int) -> list[Change]: ...
    def get_rollup_cursor(self) -> RollUpCursor | None: ...
    def put_rollup_cursor(self, cursor: RollUpCursor) -> None: ...
    def upsert_documents(self, docs: list[Document]) -> None: ...
    def page_duplicate_groups(
        self, job_id: str, end: int, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    def get_expansion(self, job_id: str) -> ExpansionDocument | None: ...
    def upsert_expansion(self, doc: ExpansionDocument) -> None: ...

    def get_chunk(self, job_id: str, chunk: int) -> ChunkDocument | None: ...
    def get_first_chunks(self, job_ids: list[str]) -> dict[str, ChunkDocument]: ...
    def upsert_chunk(self, doc: ChunkDocument) -> None: ...
    def finished_chunks_since(self, job_id: str, since_epoch: float) -> list[ChunkDocument]: ...

    def image_outcomes(self, job_id: str, chunk: int) -> dict[int, str | None]: ...
    def get_image(self, job_id: str, index: int) -> ImageResultDocument | None: ...
    def upsert_image(self, doc: ImageResultDocument) -> None: ...
    def page_images(
        self, job_id: str, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    def upsert_dead_letter(self, doc: DeadLetterDocument) -> None: ...
    def dead_letters(self, job_id: str) -> list[DeadLetterDocument]: ...
    def unreplayed_dead_letters(self, job_id: str, limit: int) -> tuple[list[DeadLetterDocument], bool]: ...

    def create_tenant(self, tenant: TenantDocument) -> bool: ...
    def get_tenant(self, tenant_id: str) -> TenantDocument | None: ...


class CosmosJobStore:
    def __init__(self, database: ContainerSource | DatabaseProxy) -> None:
        self._source = SharedDatabase(database) if isinstance(database, DatabaseProxy) else database
        self._requests = 0
        self._requests_lock = threading.Lock()
        self._meters = threading.local()

    @property
    def _jobs(self) -> ContainerProxy:
        return self._source.container("jobs")

    @property
    def _tenants(self) -> ContainerProxy:
        return self._source.container("tenants")

    @property
    def requests(self) -> int:
        """Cosmos requests made through this store so far, by every thread (each query page counts one)."""
        return self._requests

    @contextlib.contextmanager
    def metered(self, meter: RequestMeter) -> Iterator[None]:
        """Counts this thread's requests into `meter` too while inside (the status timer meters its own threads:
        the process's other invocations use the same store meanwhile)."""
        previous = getattr(self._meters, "meter", None)
        self._meters.meter = meter
        try:
            yield
        finally:
            self._meters.meter = previous

    def _count(self, n: int = 1) -> None:
        with self._requests_lock:
            self._requests += n
        meter: RequestMeter | None = getattr(self._meters, "meter", None)
        if meter is not None:
            meter.add(n)

    # --- helpers -------------------------------------------------------------------------------
    def _query(self, query: str, **params: Any) -> list[dict[str, Any]]:
        parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
        pages = self._jobs.query_items(
            query=query, parameters=parameters, enable_cross_partition_query=True, max_item_count=1000
        ).by_page()
        rows: list[dict[str, Any]] = []
        requests = 0
        for page in pages:
            requests += 1
            rows.extend(page)
        self._count(max(1, requests))  # a query that finds nothing is still a request
        return rows

    def _read(self, item_id: str, job_id: str) -> dict[str, Any] | None:
        """A job-wide document (bucket 0 of the job's partition key)."""
        self._count()
        return point_read(self._jobs, item_id, [job_id, 0])

    def _upsert(self, doc: Document) -> None:
        self._count()
        self._jobs.upsert_item(doc.to_store())

    # --- jobs ----------------------------------------------------------------------------------
    def create_job(self, job: JobDocument) -> None:
        self._count()
        self._jobs.create_item(job.to_store())

    def get_job(self, job_id: str) -> VersionedJob | None:
        raw = self._read(job_id, job_id)
        if raw is None or raw.get("type") != "job":
            return None
        return VersionedJob(JobDocument.model_validate(raw), str(raw["_etag"]))

    def replace_job(self, job: JobDocument, etag: str) -> bool:
        """Replaces the job document if nobody changed it since `etag` was read. False on a conflict."""
        self._count()
        try:
            self._jobs.replace_item(job.id, job.to_store(), etag=etag, match_condition=MatchConditions.IfNotModified)
        except CosmosAccessConditionFailedError:
            return False
        return True

    def patch_job(self, job_id: str, fields: dict[str, Any]) -> bool:
        """Sets request flags (cancel, reopen) on the job document. False if the job does not exist."""
        operations = [{"op": "set", "path": f"/{k}", "value": v} for k, v in fields.items()]
        self._count()
        try:
            self._jobs.patch_item(job_id, partition_key=[job_id, 0], patch_operations=operations)
        except CosmosResourceNotFoundError:
            return False
        return True

    def get_jobs(self, job_ids: list[str]) -> dict[str, JobDocument]:
        """Several job documents in one call (the SDK's read-many: a query per partition range, not per job)."""
        if not job_ids:
            return {}
        self._count()
        rows = self._jobs.read_items([(job_id, [job_id, 0]) for job_id in job_ids])
        return {str(r["id"]): JobDocument.model_validate(r) for r in rows if r.get("type") == "job"}

    def upsert_job_entry(self, entry: JobEntryDocument) -> None:
        self._count()
        self._tenants.upsert_item(entry.to_store())

    def page_job_entries(
        self,
        tenant_id: str,
        states: list[str] | None,
        created_after: str | None,
        created_before: str | None,
        page_size: int,
        continuation: str | None,
    ) -> tuple[list[str], str | None]:
        """Ids of the tenant's jobs, newest first, filtered: one query in the tenant's partition."""
        # The partition key is in the filter as well as the request: it is what the query means, and the local
        # emulator routes by the filter, not by the request's partition key.
        where = ["c.tenantId = @tenant", "c.type = 'jobentry'"]
        params: list[dict[str, Any]] = [{"name": "@tenant", "value": tenant_id}]
        if states:
            where.append("ARRAY_CONTAINS(@states, c.state)")
            params.append({"name": "@states", "value": states})
        if created_after:
            where.append("c.created_at >= @after")
            params.append({"name": "@after", "value": created_after})
        if created_before:
            where.append("c.created_at < @before")
            params.append({"name": "@before", "value": created_before})
        self._count()
        pages: Any = self._tenants.query_items(
            query=f"SELECT c.id FROM c WHERE {' AND '.join(where)} ORDER BY c.created_at DESC",
            parameters=params,
            partition_key=tenant_id,
            max_item_count=page_size,
        ).by_page(continuation)
        page = _next_page(pages, continuation)
        if page is None:
            return [], None
        return [str(row["id"]) for row in page], pages.continuation_token

    # --- the operator view ------------------------------------------------------------------------
    def active_jobs(self, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` unfinished jobs of every tenant, newest first (a projection: no bitmaps, no samples), and
        whether there are more. One query across the container, paged: its cost follows the jobs returned."""
        rows, token = self._page(
            "SELECT c.jobId, c.tenantId, c.state, c.lane, c.total_images, c.counts, c.images_per_second,"
            " c.eta_seconds, c.created_at, c.started_at, c.cancel_requested FROM c"
            " WHERE c.type = 'job' AND c.state IN ('accepted', 'running') ORDER BY c.created_at DESC",
            {},
            limit,
            None,
        )
        return rows, token is not None

    def chunk_outcomes_since(self, since_epoch: float) -> list[dict[str, Any]]:
        """The finish time (`finished_epoch`), counts and error codes of every chunk of any job that finished at or
        after `since_epoch`: what the operator view's throughput and failure rate are made of. Its cost follows
        the chunks finished in the window."""
        return self._query(
            "SELECT c.finished_epoch, c.counts, c.error_codes FROM c"
            " WHERE c.type = 'chunk' AND c.state = 'done' AND c.finished_epoch >= @since",
            since=since_epoch,
        )

    # --- the status timer's changes -------------------------------------------------------------
    def changes_since(self, since_ts: int) -> list[Change]:
        """Every document of CHANGE_TYPES written at or after `since_ts` (the service's own write time, whole
        seconds), oldest first. One query across the container: its cost follows what changed, not what exists."""
        rows = self._query(
            f"SELECT {', '.join(f'c[{f!r}]' for f in _CHANGE_FIELDS)} FROM c "
            f"WHERE c._ts >= @since AND c.type IN ({', '.join(repr(t) for t in CHANGE_TYPES)})",
            since=since_ts,
        )
        changes = []
        for row in rows:
            model = _CHANGE_MODELS[str(row["type"])]
            changes.append(
                Change(
                    document_id=str(row["id"]),
                    job_id=str(row["jobId"]),
                    etag=str(row["_etag"]),
                    ts=int(row["_ts"]),
                    document=cast(StoredChange, model.model_validate(row)),
                )
            )
        return sorted(changes, key=lambda c: c.ts)

    def get_rollup_cursor(self) -> RollUpCursor | None:
        raw = self._read("rollup", "_rollup")
        return None if raw is None else RollUpCursor.model_validate(raw)

    def put_rollup_cursor(self, cursor: RollUpCursor) -> None:
        self._upsert(cursor)

    # --- side documents the timer folds in -------------------------------------------------------
    def upsert_documents(self, docs: list[Document]) -> None:
        """Writes them in order (a summary written last stands for the documents before it)."""
        for doc in docs:
            self._upsert(doc)

    def page_duplicate_groups(
        self, job_id: str, end: int, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return self._page(
            "SELECT c['group'], c.part, c.size, c.members FROM c WHERE c.jobId = @job AND c.type = 'dupgroup' "
            "AND c['end'] = @end ORDER BY c.id",
            {"@job": job_id, "@end": end},
            page_size,
            continuation,
        )

    # --- expansion -----------------------------------------------------------------------------
    def get_expansion(self, job_id: str) -> ExpansionDocument | None:
        raw = self._read(expansion_document_id(job_id), job_id)
        return None if raw is None else ExpansionDocument.model_validate(raw)

    def upsert_expansion(self, doc: ExpansionDocument) -> None:
        self._upsert(doc)

    # --- chunks --------------------------------------------------------------------------------
    def get_chunk(self, job_id: str, chunk: int) -> ChunkDocument | None:
        raw = self._read(chunk_document_id(job_id, chunk), job_id)
        return None if raw is None else ChunkDocument.model_validate(raw)

    def get_first_chunks(self, job_ids: list[str]) -> dict[str, ChunkDocument]:
        """Chunk 0's record of each of these jobs that has one, by job id, in one call (read-many, as get_jobs)."""
        if not job_ids:
            return {}
        self._count()
        rows = self._jobs.read_items([(chunk_document_id(job_id, 0), [job_id, 0]) for job_id in job_ids])
        return {str(r["jobId"]): ChunkDocument.model_validate(r) for r in rows if r.get("type") == "chunk"}

    def upsert_chunk(self, doc: ChunkDocument) -> None:
        self._upsert(doc)

    def finished_chunks_since(self, job_id: str, since_epoch: float) -> list[ChunkDocument]:
        rows = self._query(
            "SELECT * FROM c WHERE c.jobId = @job AND c.type = 'chunk' AND c.state = 'done'"
            " AND c.finished_epoch >= @since",
            job=job_id,
            since=since_epoch,
        )
        return [ChunkDocument.model_validate(r) for r in rows]


    # --- images --------------------------------------------------------------------------------
    def image_outcomes(self, job_id: str, chunk: int) -> dict[int, str | None]:
        """Index -> error code (None when the image succeeded) of every image result of a chunk."""
        rows = self._query(
            "SELECT c.index, c.ok, c.error FROM c WHERE c.jobId = @job AND c.type = 'image' AND c.chunk = @chunk",
            job=job_id,
            chunk=chunk,
        )
        return {int(r["index"]): (None if r["ok"] else (r.get("error") or {}).get("code", "error")) for r in rows}

    def get_image(self, job_id: str, index: int) -> ImageResultDocument | None:
        self._count()
        raw = point_read(self._jobs, image_result_id(job_id, index), [job_id, image_bucket(index)])
        return None if raw is None else ImageResultDocument.model_validate(raw)

    def upsert_image(self, doc: ImageResultDocument) -> None:
        self._upsert(doc)

    def page_images(
        self, job_id: str, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return self._page(
            "SELECT * FROM c WHERE c.jobId = @job AND c.type = 'image' ORDER BY c.index",
            {"@job": job_id},
            page_size,
            continuation,
        )

    def _page(
        self, query: str, params: dict[str, Any], page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        self._count()
        pages: Any = self._jobs.query_items(
            query=query,
            parameters=[{"name": k, "value": v} for k, v in params.items()],
            enable_cross_partition_query=True,
            max_item_count=page_size,
        ).by_page(continuation)
        page = _next_page(pages, continuation)
        if page is None:
            return [], None
        return [_public(item) for item in page], pages.continuation_token


    # --- dead letters --------------------------------------------------------------------------
    def upsert_dead_letter(self, doc: DeadLetterDocument) -> None:
        self._upsert(doc)

    def dead_letters(self, job_id: str) -> list[DeadLetterDocument]:
        rows = self._query("SELECT * FROM c WHERE c.jobId = @job AND c.type = 'deadletter'", job=job_id)
        return [DeadLetterDocument.model_validate(r) for r in rows]

    def unreplayed_dead_letters(self, job_id: str, limit: int) -> tuple[list[DeadLetterDocument], bool]:
        """Up to `limit` of the job's dead letters not replayed yet, and whether there are more."""
        rows, token = self._page(
            "SELECT * FROM c WHERE c.jobId = @job AND c.type = 'deadletter' AND c.replayed = false",
            {"@job": job_id},
            limit,
            None,
        )
        return [DeadLetterDocument.model_validate(r) for r in rows], token is not None

    # --- tenants -------------------------------------------------------------------------------
    def create_tenant(self, tenant: TenantDocument) -> bool:
        self._count()
        try:
            self._tenants.create_item(tenant.to_store())
        except CosmosResourceExistsError:
            return False
        return True

    def get_tenant(self, tenant_id: str) -> TenantDocument | None:
        self._count()
        raw = point_read(self._tenants, tenant_id, tenant_id)
        return None if raw is None else TenantDocument.model_validate(raw)


def _next_page(pages: Any, continuation: str | None) -> list[dict[str, Any]] | None:
    """The next page of a paged query (None past the last); a continuation the service refuses (400) is the
    caller's mistake, not an outage."""
    try:
        return list(next(pages))
    except StopIteration:
        return None
    except CosmosHttpResponseError as exc:
        if continuation and exc.status_code == 400:
            raise ContinuationRejected(str(exc.message)) from None
        raise


def point_read(container: ContainerProxy, item_id: str, partition_key: str | list[Any]) -> dict[str, Any] | None:
    """The document, or None if there is none."""
    try:
        return dict(container.read_item(item_id, partition_key=partition_key))
    except CosmosResourceNotFoundError:
        return None


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A stored document without Cosmos' system fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
