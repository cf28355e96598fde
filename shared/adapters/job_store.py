"""Job, chunk, image-result, expansion and dead-letter documents in the Cosmos `jobs` container (by `jobId`).

Queries stay within what both Cosmos DB and the local emulator run: single-partition filters written as
`WHERE c.jobId = @job` with cross-partition enabled (the emulator cannot page with `partition_key=`), no
aggregates, no GROUP BY, no OFFSET/LIMIT (notes/local-emulators-facts.md).
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, DatabaseProxy
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.models import (
    ChunkDocument,
    DeadLetterDocument,
    ExpansionDocument,
    ImageResultDocument,
    JobDocument,
    TenantDocument,
)


class CosmosJobStore:
    def __init__(self, database: DatabaseProxy) -> None:
        self._jobs: ContainerProxy = database.get_container_client("jobs")
        self._tenants: ContainerProxy = database.get_container_client("tenants")

    # --- helpers -------------------------------------------------------------------------------
    def _query(self, query: str, **params: Any) -> list[dict[str, Any]]:
        parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
        return list(self._jobs.query_items(query=query, parameters=parameters, enable_cross_partition_query=True))

    def _read(self, item_id: str, job_id: str) -> dict[str, Any] | None:
        return point_read(self._jobs, item_id, job_id)

    # --- jobs ----------------------------------------------------------------------------------
    def create_job(self, job: JobDocument) -> None:
        self._jobs.create_item(job.to_store())

    def get_job(self, job_id: str) -> tuple[JobDocument, str] | None:
        raw = self._read(job_id, job_id)
        if raw is None or raw.get("type") != "job":
            return None
        return JobDocument.model_validate(raw), str(raw["_etag"])

    def replace_job(self, job: JobDocument, etag: str) -> bool:
        """Replaces the job document if nobody changed it since `etag` was read. False on a conflict."""
        try:
            self._jobs.replace_item(job.id, job.to_store(), etag=etag, match_condition=MatchConditions.IfNotModified)
        except CosmosAccessConditionFailedError:
            return False
        return True

    def patch_job(self, job_id: str, fields: dict[str, Any]) -> bool:
        """Sets request flags (cancel, reopen) on the job document. False if the job does not exist."""
        operations = [{"op": "set", "path": f"/{k}", "value": v} for k, v in fields.items()]
        try:
            self._jobs.patch_item(job_id, partition_key=job_id, patch_operations=operations)
        except CosmosResourceNotFoundError:
            return False
        return True

    def active_job_ids(self) -> list[str]:
        rows = self._query("SELECT c.jobId FROM c WHERE c.type = 'job' AND c.active = true")
        return [str(r["jobId"]) for r in rows]

    # --- expansion -----------------------------------------------------------------------------
    def get_expansion(self, job_id: str) -> ExpansionDocument | None:
        raw = self._read(f"{job_id}.expansion", job_id)
        return None if raw is None else ExpansionDocument.model_validate(raw)

    def upsert_expansion(self, doc: ExpansionDocument) -> None:
        self._jobs.upsert_item(doc.to_store())

    # --- chunks --------------------------------------------------------------------------------
    def get_chunk(self, job_id: str, chunk: int) -> ChunkDocument | None:
        raw = self._read(f"{job_id}.chunk.{chunk}", job_id)
        return None if raw is None else ChunkDocument.model_validate(raw)

    def upsert_chunk(self, doc: ChunkDocument) -> None:
        self._jobs.upsert_item(doc.to_store())

    def finished_chunks_since(self, job_id: str, since_epoch: float) -> list[ChunkDocument]:
        rows = self._query(
            "SELECT * FROM c WHERE c.jobId = @job AND c.type = 'chunk' AND c.state = 'done'"
            " AND c.finished_epoch >= @since",
            job=job_id,
            since=since_epoch,
        )
        return [ChunkDocument.model_validate(r) for r in rows]

    def running_chunks(self, job_id: str) -> list[ChunkDocument]:
        rows = self._query(
            "SELECT * FROM c WHERE c.jobId = @job AND c.type = 'chunk' AND c.state = 'running'", job=job_id
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

    def upsert_image(self, doc: ImageResultDocument) -> None:
        self._jobs.upsert_item(doc.to_store())

    def page_images(
        self, job_id: str, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        pages: Any = self._jobs.query_items(
            query="SELECT * FROM c WHERE c.jobId = @job AND c.type = 'image' ORDER BY c.index",
            parameters=[{"name": "@job", "value": job_id}],
            enable_cross_partition_query=True,
            max_item_count=page_size,
        ).by_page(continuation)
        try:
            page = next(pages)
        except StopIteration:
            return [], None
        items = [_public(item) for item in page]
        return items, pages.continuation_token

    def image_hashes(self, job_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT c.index, c.sha256, c.duplicate_of FROM c WHERE c.jobId = @job AND c.type = 'image' AND c.ok = true",
            job=job_id,
        )

    # --- dead letters --------------------------------------------------------------------------
    def upsert_dead_letter(self, doc: DeadLetterDocument) -> None:
        self._jobs.upsert_item(doc.to_store())

    def dead_letters(self, job_id: str) -> list[DeadLetterDocument]:
        rows = self._query("SELECT * FROM c WHERE c.jobId = @job AND c.type = 'deadletter'", job=job_id)
        return [DeadLetterDocument.model_validate(r) for r in rows]

    # --- tenants -------------------------------------------------------------------------------
    def create_tenant(self, tenant: TenantDocument) -> bool:
        try:
            self._tenants.create_item(tenant.to_store())
        except CosmosResourceExistsError:
            return False
        return True

    def get_tenant(self, tenant_id: str) -> TenantDocument | None:
        raw = point_read(self._tenants, tenant_id, tenant_id)
        return None if raw is None else TenantDocument.model_validate(raw)


def point_read(container: ContainerProxy, item_id: str, partition_key: str) -> dict[str, Any] | None:
    """The document, or None if there is none."""
    try:
        return dict(container.read_item(item_id, partition_key=partition_key))
    except CosmosResourceNotFoundError:
        return None
    except CosmosHttpResponseError as exc:
        # The local emulator answers a read in a partition that holds no document with a 500 ("Cannot read
        # properties of undefined") instead of a 404. The real service never sends this message.
        if "Cannot read properties of undefined" in str(exc.message):
            return None
        raise


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A stored document without Cosmos' system fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
