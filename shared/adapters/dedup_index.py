"""DuplicateIndexStore on Cosmos DB: the container `dedup`, partitioned by /tenantId.

Documents (all in the tenant's partition):
- `sha.{sha256}`: the first image seen with these bytes. Created with create_item: the service answers 409 to every
  later or concurrent creator (CosmosResourceExistsError), which then reads the holder. No read-modify-write.
- `img.{job}.{image}`: one document per image with its hashes, its pHash band values as separate fields
  b0..b{n-1} (Cosmos indexes every path by default), the matches confirmed for it and `groupKeys`, the keys of the
  duplicate groups reconciliation found it in. Registration writes the whole document (its own image's: workers
  never contend for one); reconciliation only patches `matches` (set) and `groupKeys` (add to the end of the array:
  concurrent additions of different keys all land), never replacing a document it read.
Band candidates are one query of look-ups on the band fields, OR-ed (`ARRAY_CONTAINS(@b3, c.b3) OR ...`, one array
of probed values a band): range-index look-ups of those keys, never a scan of the partition on the service (the
local emulator has no index and scans the container for every query). This needs no GROUP BY, aggregate, OFFSET or
batch, which the local emulator lacks (docs/imaging.md, "Cosmos documents"). Queries set enable_cross_partition_query
with a filter on the partition key (the emulator cannot page a query given partition_key=); the filter still routes
them to one partition on the real service.

Reconciliation reads entries by id (`ARRAY_CONTAINS(@ids, c.id)`) and by group key
(`EXISTS(SELECT VALUE k FROM k IN c.groupKeys WHERE ARRAY_CONTAINS(@keys, k))`, an index look-up of each key on
/groupKeys/[]), a few hundred keys a query: both work on the emulator, both by key on the service.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from azure.cosmos import ContainerProxy, DatabaseProxy
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceExistsError, CosmosResourceNotFoundError

from shared.adapters.cosmos import ContainerSource, SharedDatabase
from shared.dedup.models import IndexEntry, LibraryImage, Match

DEDUP_CONTAINER = "dedup"
_MAX_ID_LENGTH = 255
_KEYS_PER_QUERY = 200  # ids or group keys in one array parameter: a query text of ~20 KB at most
_PATCH_THREADS = 8  # group-key patches are one request a document (the emulator has no batches): a few in flight


def _document_id(prefix: str, *parts: str) -> str:
    """An id from arbitrary text: Cosmos ids may not contain / \\ ? # and are at most 255 characters."""
    document_id = ".".join([prefix, *(quote(p, safe="") for p in parts)])
    if len(document_id) > _MAX_ID_LENGTH:
        document_id = f"{prefix}.h.{hashlib.sha256(document_id.encode()).hexdigest()}"
    return document_id


def _entry_document(tenant_id: str, entry: IndexEntry) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": _entry_id(entry.ref),
        "tenantId": tenant_id,
        "kind": "image",
        "jobId": entry.ref.job_id,
        "imageId": entry.ref.image_id,
        "sha256": entry.sha256,
        "phash": entry.phash,
        "dhash": entry.dhash,
        "phashMirror": entry.phash_mirror,
        "bandScheme": entry.band_scheme,
        "bands": list(entry.bands),
        "matched": bool(entry.matches),
        "matches": [m.model_dump(mode="json") for m in entry.matches],
        "groupKeys": list(entry.group_keys),
    }
    for band, value in enumerate(entry.bands):
        document[f"b{band}"] = value
    return document


# What comparing a band candidate needs: its matches and group keys can be long, and a registration has no use for them.
_COMPARISON_FIELDS = "c.jobId, c.imageId, c.sha256, c.phash, c.dhash, c.phashMirror, c.bands, c.bandScheme"


def _entry_from_document(document: dict[str, Any]) -> IndexEntry:
    return IndexEntry(
        ref=LibraryImage(job_id=document["jobId"], image_id=document["imageId"]),
        sha256=document["sha256"],
        phash=document.get("phash"),
        dhash=document.get("dhash"),
        phash_mirror=document.get("phashMirror"),
        bands=tuple(document.get("bands") or ()),
        band_scheme=document.get("bandScheme"),
        matches=[Match.model_validate(m) for m in document.get("matches") or ()],
        group_keys=tuple(dict.fromkeys(document.get("groupKeys") or ())),  # a key added twice counts once
    )


def _entry_id(ref: LibraryImage) -> str:
    return _document_id("img", ref.job_id, ref.image_id)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _KEYS_PER_QUERY:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class CosmosDuplicateIndexStore:
    def __init__(self, source: ContainerSource) -> None:
        self._source = source

    @property
    def _container(self) -> ContainerProxy:
        return self._source.container(DEDUP_CONTAINER)

    @classmethod
    def from_database(cls, database: ContainerSource | DatabaseProxy) -> CosmosDuplicateIndexStore:
        """On a ThreadLocalDatabase in the app (see there why); a plain DatabaseProxy shares one client."""
        return cls(SharedDatabase(database) if isinstance(database, DatabaseProxy) else database)

    def claim_sha256(self, tenant_id: str, sha256: str, ref: LibraryImage) -> LibraryImage:
        document_id = _document_id("sha", sha256)
        try:
            self._container.create_item(
                {
                    "id": document_id,
                    "tenantId": tenant_id,
                    "kind": "sha256",
                    "jobId": ref.job_id,
                    "imageId": ref.image_id,
                }
            )
            return ref
        except CosmosResourceExistsError:
            holder = self._container.read_item(document_id, partition_key=tenant_id)
            return LibraryImage(job_id=holder["jobId"], image_id=holder["imageId"])

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        self._container.upsert_item(_entry_document(tenant_id, entry))

    def set_matches(self, tenant_id: str, ref: LibraryImage, matches: Sequence[Match]) -> None:
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/matches", "value": [m.model_dump(mode="json") for m in matches]},
            {"op": "set", "path": "/matched", "value": bool(matches)},
        ]
        self._container.patch_item(_entry_id(ref), partition_key=tenant_id, patch_operations=operations)

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]], *, whole: bool = False
    ) -> list[IndexEntry]:
        parameters: list[dict[str, Any]] = [
            {"name": "@tenant", "value": tenant_id},
            {"name": "@scheme", "value": band_scheme},
        ]
        clauses = []
        for band, values in enumerate(probe):
            if values:
                # One array parameter a band: the query text stays the same for every probe (the service and the
                # emulator cache its plan), however many keys a radius search brings.
                parameters.append({"name": f"@b{band}", "value": sorted(values)})
                clauses.append(f"ARRAY_CONTAINS(@b{band}, c.b{band})")
        if not clauses:
            return []
        query = (
            f"SELECT {'*' if whole else _COMPARISON_FIELDS} "
            "FROM c WHERE c.tenantId = @tenant AND c.kind = 'image' AND c.bandScheme = @scheme "
            f"AND ({' OR '.join(clauses)})"
        )
        items = self._container.query_items(query, parameters=parameters, enable_cross_partition_query=True)
        # In (job, image) order, as the in-memory store answers: the service's order follows its index, and the
        # emulator's moves when a document is patched.
        return sorted((_entry_from_document(item) for item in items), key=lambda e: (e.ref.job_id, e.ref.image_id))

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        query = "SELECT * FROM c WHERE c.tenantId = @tenant AND c.kind = 'image' AND c.jobId = @job"
        if matched_only:
            query += " AND c.matched = true"
        parameters: list[dict[str, Any]] = [
            {"name": "@tenant", "value": tenant_id},
            {"name": "@job", "value": job_id},
        ]
        for item in self._container.query_items(query, parameters=parameters, enable_cross_partition_query=True):
            yield _entry_from_document(item)

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        query = "SELECT * FROM c WHERE c.tenantId = @tenant AND c.kind = 'image'"
        parameters: list[dict[str, Any]] = [{"name": "@tenant", "value": tenant_id}]
        if since_epoch is not None:
            query += " AND c._ts >= @since"  # _ts: the service's write time, whole seconds
            parameters.append({"name": "@since", "value": math.floor(since_epoch)})
        for item in self._container.query_items(query, parameters=parameters, enable_cross_partition_query=True):
            yield _entry_from_document(item)

    def entries_by_ref(self, tenant_id: str, refs: Collection[LibraryImage]) -> Iterator[IndexEntry]:
        query = "SELECT * FROM c WHERE c.tenantId = @tenant AND c.kind = 'image' AND ARRAY_CONTAINS(@ids, c.id)"
        for ids in _chunks(dict.fromkeys(_entry_id(ref) for ref in refs)):
            parameters: list[dict[str, Any]] = [{"name": "@tenant", "value": tenant_id}, {"name": "@ids", "value": ids}]
            for item in self._container.query_items(query, parameters=parameters, enable_cross_partition_query=True):
                yield _entry_from_document(item)

    def entries_in_groups(self, tenant_id: str, group_keys: Collection[str]) -> Iterator[IndexEntry]:
        query = (
            "SELECT * FROM c WHERE c.tenantId = @tenant AND c.kind = 'image' "
            "AND EXISTS(SELECT VALUE k FROM k IN c.groupKeys WHERE ARRAY_CONTAINS(@keys, k))"
        )
        seen: set[str] = set()
        for keys in _chunks(sorted(set(group_keys))):
            parameters: list[dict[str, Any]] = [
                {"name": "@tenant", "value": tenant_id},
                {"name": "@keys", "value": keys},
            ]
            for item in self._container.query_items(query, parameters=parameters, enable_cross_partition_query=True):
                if item["id"] not in seen:  # an entry carrying keys of two chunks comes back twice
                    seen.add(item["id"])
                    yield _entry_from_document(item)

    def add_group_key(self, tenant_id: str, group_key: str, refs: Collection[LibraryImage]) -> None:
        if not refs:
            return
        with ThreadPoolExecutor(max_workers=min(_PATCH_THREADS, len(refs))) as pool:
            for _ in pool.map(lambda ref: self._add_group_key(tenant_id, group_key, ref), refs):
                pass

    def _add_group_key(self, tenant_id: str, group_key: str, ref: LibraryImage) -> None:
        document_id = _entry_id(ref)
        append: list[dict[str, Any]] = [{"op": "add", "path": "/groupKeys/-", "value": group_key}]
        patched: dict[str, Any]
        try:
            patched = self._container.patch_item(document_id, partition_key=tenant_id, patch_operations=append)
        except CosmosResourceNotFoundError:
            return
        except CosmosHttpResponseError as error:
            if error.status_code != 400:
                raise
            patched = {}  # no groupKeys array to add to (a document written before there were group keys)
        if group_key not in (patched.get("groupKeys") or ()):
            # The emulator answers an add to a missing array without adding; the service refuses it. Either way
            # the document has no keys yet: give it this one.
            create: list[dict[str, Any]] = [{"op": "set", "path": "/groupKeys", "value": [group_key]}]
            self._container.patch_item(document_id, partition_key=tenant_id, patch_operations=create)
