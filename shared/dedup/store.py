"""The storage the duplicate index needs: five operations, per tenant."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from shared.dedup.models import ImageRef, IndexEntry


class DuplicateIndexStore(Protocol):
    def claim_sha256(self, tenant_id: str, sha256: str, ref: ImageRef) -> ImageRef:
        """Create-if-absent of the SHA-256 record: returns the image holding it (`ref` if this call, or an earlier
        delivery of the same image, created it). Atomic: of concurrent claims exactly one wins."""
        ...

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        """Insert or replace the image's entry (idempotent)."""
        ...

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]]
    ) -> list[IndexEntry]:
        """Entries of the scheme with, for some band i, a value in probe[i]. Look-ups by key, never a scan."""
        ...

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        """The job's entries (only those with matches, if asked)."""
        ...

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        """The tenant's entries written at or after `since_epoch` (seconds; whole seconds are enough), or all of
        them for None."""
        ...
