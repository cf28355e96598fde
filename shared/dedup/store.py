"""The storage the duplicate index needs: nine operations, per tenant, every one a write or look-up by key (a
SHA-256, an image, a band value, a job, a write time, a group key), never a scan of the tenant's entries."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Protocol

from shared.dedup.models import IndexEntry, LibraryImage, Match


class DuplicateIndexStore(Protocol):
    def claim_sha256(self, tenant_id: str, sha256: str, ref: LibraryImage) -> LibraryImage:
        """Create-if-absent of the SHA-256 record: returns the image holding it (`ref` if this call, or an earlier
        delivery of the same image, created it). Atomic: of concurrent claims exactly one wins."""
        ...

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        """Insert or replace the image's entry (idempotent), group keys included."""
        ...

    def set_matches(self, tenant_id: str, ref: LibraryImage, matches: Sequence[Match]) -> None:
        """Replace the matches of an existing entry, leaving the rest of it (hashes, group keys) as it is."""
        ...

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]], *, whole: bool = False
    ) -> list[IndexEntry]:
        """Entries of the scheme with, for some band i, a value in probe[i]. Look-ups by key, never a scan. Only
        what a comparison needs (hashes, bands), unless `whole`: then matches and group keys too, which a
        reconciliation follows."""
        ...

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        """The job's entries (only those with matches, if asked)."""
        ...

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        """The tenant's entries written at or after `since_epoch` (seconds; whole seconds are enough), or all of
        them for None."""
        ...

    def entries_by_ref(self, tenant_id: str, refs: Collection[LibraryImage]) -> Iterator[IndexEntry]:
        """The entries of these images (those that exist), in no particular order."""
        ...

    def entries_in_groups(self, tenant_id: str, group_keys: Collection[str]) -> Iterator[IndexEntry]:
        """The entries carrying any of these group keys (among all their group_keys, not only the current one), each
        once, in no particular order."""
        ...

    def add_group_key(self, tenant_id: str, group_key: str, refs: Collection[LibraryImage]) -> None:
        """Adds the key to each entry's group_keys, keeping the keys it has (concurrent additions of different keys
        to one entry all land). Entries that do not exist are skipped; adding a key twice is harmless."""
        ...
