"""An in-process JobStorePort: the stand-in for CosmosJobStore in fast tests of the use cases (as
shared/dedup/memory_store.py is for the duplicate index). tests/core/test_port_contracts.py runs the same checks on
both, so the two cannot drift apart unnoticed.

Documents are kept as Cosmos keeps them: the stored JSON form (`to_store()`), read back through the models, each with
an etag and a `_ts` stamp. The stamp is a counter that goes up by one on every write, not a clock: what the status
timer relies on is only that a later write never has a smaller stamp. Paged reads answer an offset as an opaque
token, and refuse one they did not make with ContinuationRejected, as Cosmos DB does (the local emulator does not,
so tests/core/test_port_contracts.py cannot hold the two to it). The (jobId, bucket) partition key means nothing
here: ids are unique per container, as the app makes them.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from shared.adapters.job_store import (
    _CHANGE_MODELS,
    CHANGE_TYPES,
    Change,
    RequestMeter,
    StoredChange,
    VersionedJob,
)
from shared.messages import chunk_document_id, expansion_document_id, image_result_id
from shared.models import (
    ChunkDocument,
    DeadLetterDocument,
    Document,
    ExpansionDocument,
    ImageResultDocument,
    JobDocument,
    JobEntryDocument,
    RollUpCursor,
    TenantDocument,
)
from shared.paging import ContinuationRejected

_TOKEN_PREFIX = "memory:"


class InMemoryJobStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._tenants: dict[str, dict[str, Any]] = {}
        self._stamps = itertools.count(1)
        self._requests = 0
        self._meters = threading.local()

    # --- what CosmosJobStore also offers for measuring -------------------------------------------
    @property
    def requests(self) -> int:
        """Calls made so far (each counts one request, as a point read or a write does on Cosmos)."""
        return self._requests

    @contextlib.contextmanager
    def metered(self, meter: RequestMeter) -> Iterator[None]:
        previous = getattr(self._meters, "meter", None)
        self._meters.meter = meter
        try:
            yield
        finally:
            self._meters.meter = previous

    def _count(self) -> None:
        with self._lock:
            self._requests += 1
        meter: RequestMeter | None = getattr(self._meters, "meter", None)
        if meter is not None:
            meter.add(1)

    # --- storage -----------------------------------------------------------------------------------
    def _write(self, container: dict[str, dict[str, Any]], body: dict[str, Any]) -> None:
        """Stores a copy with a fresh etag and stamp (the caller holds the lock)."""
        stamp = next(self._stamps)
        container[str(body["id"])] = {**body, "_etag": f'"{stamp}"', "_ts": stamp}

    def _put(self, doc: Document, container: dict[str, dict[str, Any]] | None = None) -> None:
        self._count()
        with self._lock:
            self._write(self._jobs if container is None else container, doc.to_store())

    def _get(self, item_id: str, container: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        self._count()
        with self._lock:
            found = (self._jobs if container is None else container).get(item_id)
            return None if found is None else dict(found)

    def _select(self, where: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        self._count()
        with self._lock:
            return [dict(d) for d in self._jobs.values() if where(d)]

    def _page(
        self, rows: list[dict[str, Any]], page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        start = _offset(continuation)
        page = rows[start : start + page_size]
        following = start + page_size
        return [_public(r) for r in page], f"{_TOKEN_PREFIX}{following}" if following < len(rows) else None

    # --- jobs ----------------------------------------------------------------------------------------
    def create_job(self, job: JobDocument) -> None:
        self._count()
        with self._lock:
            if job.id in self._jobs:
                raise KeyError(f"a document {job.id!r} exists")  # Cosmos answers 409 Conflict
            self._write(self._jobs, job.to_store())

    def get_job(self, job_id: str) -> VersionedJob | None:
        raw = self._get(job_id)
        if raw is None or raw.get("type") != "job":
            return None
        return VersionedJob(JobDocument.model_validate(raw), str(raw["_etag"]))

    def replace_job(self, job: JobDocument, etag: str) -> bool:
        self._count()
        with self._lock:
            current = self._jobs.get(job.id)
            if current is None:
                raise KeyError(f"no document {job.id!r}")  # Cosmos answers 404
            if current["_etag"] != etag:
                return False
            self._write(self._jobs, job.to_store())
            return True

    def patch_job(self, job_id: str, fields: dict[str, Any]) -> bool:
        self._count()
        with self._lock:
            current = self._jobs.get(job_id)
            if current is None:
                return False
            self._write(self._jobs, {**_public(current), **fields})
            return True

    def get_jobs(self, job_ids: list[str]) -> dict[str, JobDocument]:
        if not job_ids:
            return {}
        wanted = set(job_ids)
        rows = self._select(lambda d: d["id"] in wanted and d.get("type") == "job")
        return {str(r["id"]): JobDocument.model_validate(r) for r in rows}

    def upsert_job_entry(self, entry: JobEntryDocument) -> None:
        self._put(entry, self._tenants)

    def page_job_entries(
        self,
        tenant_id: str,
        states: list[str] | None,
        created_after: str | None,
        created_before: str | None,
        page_size: int,
        continuation: str | None,
    ) -> tuple[list[str], str | None]:
        self._count()
        with self._lock:
            rows = [
                dict(d)
                for d in self._tenants.values()
                if d.get("type") == "jobentry"
                and d.get("tenantId") == tenant_id
                and (not states or d.get("state") in states)
                and (not created_after or str(d["created_at"]) >= created_after)
                and (not created_before or str(d["created_at"]) < created_before)
            ]
        rows.sort(key=lambda d: str(d["created_at"]), reverse=True)
        page, token = self._page(rows, page_size, continuation)
        return [str(r["id"]) for r in page], token

    # --- the operator view ---------------------------------------------------------------------------
    def active_jobs(self, limit: int) -> tuple[list[dict[str, Any]], bool]:
        rows = self._select(lambda d: d.get("type") == "job" and d.get("state") in ("accepted", "running"))
        rows.sort(key=lambda d: str(d["created_at"]), reverse=True)
        fields = [
            "jobId",
            "tenantId",
            "state",
            "lane",
            "total_images",
            "counts",
            "images_per_second",
            "eta_seconds",
            "created_at",
            "started_at",
            "cancel_requested",
        ]
        return [{f: r.get(f) for f in fields} for r in rows[:limit]], len(rows) > limit

    def chunk_outcomes_since(self, since_epoch: float) -> list[dict[str, Any]]:
        rows = self._select(_finished_chunk(None, since_epoch))
        return [{f: r.get(f) for f in ("finished_epoch", "counts", "error_codes")} for r in rows]

    # --- the status timer's changes -----------------------------------------------------------------
    def changes_since(self, since_ts: int) -> list[Change]:
        rows = self._select(lambda d: d.get("type") in CHANGE_TYPES and int(d["_ts"]) >= since_ts)
        changes = []
        for row in rows:
            row.pop("body", None)  # as the Cosmos store, a dead letter's body is not read here
            document = cast(StoredChange, _CHANGE_MODELS[str(row["type"])].model_validate(row))
            changes.append(Change(str(row["id"]), str(row["jobId"]), str(row["_etag"]), int(row["_ts"]), document))
        return sorted(changes, key=lambda c: c.ts)

    def get_rollup_cursor(self) -> RollUpCursor | None:
        raw = self._get("rollup")
        return None if raw is None else RollUpCursor.model_validate(raw)

    def put_rollup_cursor(self, cursor: RollUpCursor) -> None:
        self._put(cursor)

    # --- side documents the timer folds in -----------------------------------------------------------
    def upsert_documents(self, docs: list[Document]) -> None:
        for doc in docs:
            self._put(doc)

    def page_duplicate_groups(
        self, job_id: str, end: int, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        rows = self._select(lambda d: d.get("jobId") == job_id and d.get("type") == "dupgroup" and d.get("end") == end)
        rows.sort(key=lambda d: str(d["id"]))
        page, token = self._page(rows, page_size, continuation)
        return [{f: r.get(f) for f in ("group", "part", "size", "members")} for r in page], token

    # --- expansion -----------------------------------------------------------------------------------
    def get_expansion(self, job_id: str) -> ExpansionDocument | None:
        raw = self._get(expansion_document_id(job_id))
        return None if raw is None else ExpansionDocument.model_validate(raw)

    def upsert_expansion(self, doc: ExpansionDocument) -> None:
        self._put(doc)

    # --- chunks --------------------------------------------------------------------------------------
    def get_chunk(self, job_id: str, chunk: int) -> ChunkDocument | None:
        raw = self._get(chunk_document_id(job_id, chunk))
        return None if raw is None else ChunkDocument.model_validate(raw)

    def get_first_chunks(self, job_ids: list[str]) -> dict[str, ChunkDocument]:
        if not job_ids:
            return {}
        wanted = {chunk_document_id(job_id, 0) for job_id in job_ids}
        rows = self._select(lambda d: d["id"] in wanted and d.get("type") == "chunk")
        return {str(r["jobId"]): ChunkDocument.model_validate(r) for r in rows}

    def upsert_chunk(self, doc: ChunkDocument) -> None:
        self._put(doc)

    def finished_chunks_since(self, job_id: str, since_epoch: float) -> list[ChunkDocument]:
        return [ChunkDocument.model_validate(r) for r in self._select(_finished_chunk(job_id, since_epoch))]

    # --- images --------------------------------------------------------------------------------------
    def image_outcomes(self, job_id: str, chunk: int) -> dict[int, str | None]:
        rows = self._select(lambda d: d.get("jobId") == job_id and d.get("type") == "image" and d.get("chunk") == chunk)
        return {int(r["index"]): (None if r["ok"] else (r.get("error") or {}).get("code", "error")) for r in rows}

    def get_image(self, job_id: str, index: int) -> ImageResultDocument | None:
        raw = self._get(image_result_id(job_id, index))
        return None if raw is None else ImageResultDocument.model_validate(raw)

    def upsert_image(self, doc: ImageResultDocument) -> None:
        self._put(doc)

    def page_images(
        self, job_id: str, page_size: int, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        rows = self._select(lambda d: d.get("jobId") == job_id and d.get("type") == "image")
        rows.sort(key=lambda d: int(d["index"]))
        return self._page(rows, page_size, continuation)

    # --- dead letters --------------------------------------------------------------------------------
    def upsert_dead_letter(self, doc: DeadLetterDocument) -> None:
        self._put(doc)

    def dead_letters(self, job_id: str) -> list[DeadLetterDocument]:
        rows = self._select(lambda d: d.get("jobId") == job_id and d.get("type") == "deadletter")
        return [DeadLetterDocument.model_validate(r) for r in rows]

    def unreplayed_dead_letters(self, job_id: str, limit: int) -> tuple[list[DeadLetterDocument], bool]:
        rows = self._select(
            lambda d: d.get("jobId") == job_id and d.get("type") == "deadletter" and d.get("replayed") is False
        )
        return [DeadLetterDocument.model_validate(r) for r in rows[:limit]], len(rows) > limit

    # --- tenants -------------------------------------------------------------------------------------
    def create_tenant(self, tenant: TenantDocument) -> bool:
        self._count()
        with self._lock:
            if tenant.id in self._tenants:
                return False
            self._write(self._tenants, tenant.to_store())
            return True

    def get_tenant(self, tenant_id: str) -> TenantDocument | None:
        raw = self._get(tenant_id, self._tenants)
        return None if raw is None or raw.get("type") != "tenant" else TenantDocument.model_validate(raw)


def _finished_chunk(job_id: str | None, since_epoch: float) -> Callable[[dict[str, Any]], bool]:
    return lambda d: (
        (job_id is None or d.get("jobId") == job_id)
        and d.get("type") == "chunk"
        and d.get("state") == "done"
        and d.get("finished_epoch") is not None
        and float(d["finished_epoch"]) >= since_epoch
    )


def _offset(continuation: str | None) -> int:
    if continuation is None:
        return 0
    digits = continuation.removeprefix(_TOKEN_PREFIX)
    if not continuation.startswith(_TOKEN_PREFIX) or not digits.isdigit():
        raise ContinuationRejected(f"not a continuation of this store: {continuation[:40]!r}")
    return int(digits)


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A stored document without the system fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
