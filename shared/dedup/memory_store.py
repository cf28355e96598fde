"""An in-process DuplicateIndexStore: the reference behaviour the Cosmos store is tested against, and usable for
single-process tools. Band keys, jobs and group keys are kept in dicts of sets, so look-ups are by key here too.

Entries go in and out as copies (the caller may change what it passed or got), but shallow ones: an entry's
references, matches, bands and group keys are immutable, only its list of matches needs copying.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence

from shared.dedup.models import IndexEntry, LibraryImage, Match


def _copy(entry: IndexEntry, **changes: object) -> IndexEntry:
    """A shallow copy with its own list of matches (and `changes` applied, unvalidated): what model_copy(update=...)
    does, at half its cost (a reconciliation of 200,000 images reads 400,000 entries)."""
    clone = object.__new__(IndexEntry)
    fields = dict(entry.__dict__)
    fields["matches"] = list(entry.matches)
    fields.update(changes)
    object.__setattr__(clone, "__dict__", fields)
    object.__setattr__(clone, "__pydantic_fields_set__", set(entry.__pydantic_fields_set__) | changes.keys())
    object.__setattr__(clone, "__pydantic_extra__", None)
    object.__setattr__(clone, "__pydantic_private__", None)
    return clone


class _Tenant:
    def __init__(self) -> None:
        self.sha: dict[str, LibraryImage] = {}
        self.entries: dict[LibraryImage, IndexEntry] = {}
        self.written_at: dict[LibraryImage, float] = {}
        self.bands: dict[tuple[str, int, int], set[LibraryImage]] = defaultdict(set)
        self.jobs: dict[str, set[LibraryImage]] = defaultdict(set)
        self.groups: dict[str, set[LibraryImage]] = defaultdict(set)

    def index(self, entry: IndexEntry) -> None:
        self.jobs[entry.ref.job_id].add(entry.ref)
        if entry.band_scheme is not None:
            for band, value in enumerate(entry.bands):
                self.bands[(entry.band_scheme, band, value)].add(entry.ref)
        for key in entry.group_keys:
            self.groups[key].add(entry.ref)

    def unindex(self, entry: IndexEntry) -> None:
        if entry.band_scheme is not None:
            for band, value in enumerate(entry.bands):
                self.bands[(entry.band_scheme, band, value)].discard(entry.ref)
        for key in entry.group_keys:
            self.groups[key].discard(entry.ref)


class InMemoryDuplicateIndexStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, _Tenant] = defaultdict(_Tenant)

    def claim_sha256(self, tenant_id: str, sha256: str, ref: LibraryImage) -> LibraryImage:
        with self._lock:
            return self._tenants[tenant_id].sha.setdefault(sha256, ref)

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        stored = _copy(entry)
        with self._lock:
            tenant = self._tenants[tenant_id]
            previous = tenant.entries.get(entry.ref)
            if previous is not None:
                tenant.unindex(previous)
            tenant.entries[entry.ref] = stored
            tenant.written_at[entry.ref] = time.time()
            tenant.index(stored)

    def set_matches(self, tenant_id: str, ref: LibraryImage, matches: Sequence[Match]) -> None:
        with self._lock:
            tenant = self._tenants[tenant_id]
            current = tenant.entries.get(ref)
            if current is not None:
                tenant.entries[ref] = _copy(current, matches=list(matches))
                tenant.written_at[ref] = time.time()

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]], *, whole: bool = False
    ) -> list[IndexEntry]:
        with self._lock:
            tenant = self._tenants[tenant_id]
            refs: set[LibraryImage] = set()
            for band, values in enumerate(probe):
                for value in values:
                    found = tenant.bands.get((band_scheme, band, value))
                    if found:
                        refs |= found
            return [_copy(tenant.entries[ref]) for ref in sorted(refs, key=_order)]

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        with self._lock:
            tenant = self._tenants[tenant_id]
            entries = [tenant.entries[ref] for ref in tenant.jobs.get(job_id, ())]
        return _sorted_copies(e for e in entries if e.matches or not matched_only)

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        with self._lock:
            tenant = self._tenants[tenant_id]
            entries = [
                entry
                for ref, entry in tenant.entries.items()
                if since_epoch is None or tenant.written_at[ref] >= since_epoch
            ]
        return _sorted_copies(entries)

    def entries_by_ref(self, tenant_id: str, refs: Collection[LibraryImage]) -> Iterator[IndexEntry]:
        with self._lock:
            tenant = self._tenants[tenant_id]
            entries = [entry for entry in (tenant.entries.get(ref) for ref in refs) if entry is not None]
        return (_copy(entry) for entry in entries)

    def entries_in_groups(self, tenant_id: str, group_keys: Collection[str]) -> Iterator[IndexEntry]:
        with self._lock:
            tenant = self._tenants[tenant_id]
            refs: set[LibraryImage] = set()
            for key in group_keys:
                refs |= tenant.groups.get(key, set())
            entries = [tenant.entries[ref] for ref in refs]
        return (_copy(entry) for entry in entries)

    def add_group_key(self, tenant_id: str, group_key: str, refs: Collection[LibraryImage]) -> None:
        # Not a write of the image's hashes: like a patch on Cosmos it leaves the entry's write time (the window of
        # entries_written_since) as it is here; on Cosmos it moves _ts, which only widens later windows.
        with self._lock:
            tenant = self._tenants[tenant_id]
            for ref in refs:
                current = tenant.entries.get(ref)
                if current is not None and group_key not in current.group_keys:
                    tenant.entries[ref] = _copy(current, group_keys=(*current.group_keys, group_key))
                    tenant.groups[group_key].add(ref)


def _sorted_copies(entries: Iterable[IndexEntry]) -> Iterator[IndexEntry]:
    """Copies in a stable order, made lazily (the caller may stop early)."""
    return (_copy(entry) for entry in sorted(entries, key=lambda e: _order(e.ref)))


def _order(ref: LibraryImage) -> tuple[str, str]:
    return ref.job_id, ref.image_id
