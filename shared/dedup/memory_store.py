"""An in-process DuplicateIndexStore: the reference behaviour the Cosmos store is tested against, and usable for
single-process tools. Band keys are kept in a dict of sets, so look-ups are by key here too."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from shared.dedup.models import ImageRef, IndexEntry


class InMemoryDuplicateIndexStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sha: dict[tuple[str, str], ImageRef] = {}
        self._entries: dict[tuple[str, ImageRef], IndexEntry] = {}
        self._written_at: dict[tuple[str, ImageRef], float] = {}
        self._bands: dict[tuple[str, str, int, int], set[ImageRef]] = defaultdict(set)

    def claim_sha256(self, tenant_id: str, sha256: str, ref: ImageRef) -> ImageRef:
        with self._lock:
            return self._sha.setdefault((tenant_id, sha256), ref)

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        with self._lock:
            previous = self._entries.get((tenant_id, entry.ref))
            if previous is not None and previous.band_scheme is not None:
                for band, value in enumerate(previous.bands):
                    self._bands[(tenant_id, previous.band_scheme, band, value)].discard(entry.ref)
            self._entries[(tenant_id, entry.ref)] = entry.model_copy(deep=True)
            self._written_at[(tenant_id, entry.ref)] = time.time()
            if entry.band_scheme is not None:
                for band, value in enumerate(entry.bands):
                    self._bands[(tenant_id, entry.band_scheme, band, value)].add(entry.ref)

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]]
    ) -> list[IndexEntry]:
        with self._lock:
            refs: set[ImageRef] = set()
            for band, values in enumerate(probe):
                for value in values:
                    refs |= self._bands.get((tenant_id, band_scheme, band, value), set())
            return [self._entries[(tenant_id, ref)].model_copy(deep=True) for ref in sorted(refs, key=_order)]

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        return self._copies(
            lambda tenant, ref, entry: tenant == tenant_id
            and ref.job_id == job_id
            and (bool(entry.matches) or not matched_only)
        )

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        return self._copies(
            lambda tenant, ref, _: tenant == tenant_id
            and (since_epoch is None or self._written_at[(tenant, ref)] >= since_epoch)
        )

    def _copies(self, keep: Callable[[str, ImageRef, IndexEntry], bool]) -> Iterator[IndexEntry]:
        """Copies of the entries `keep` accepts, taken under the lock, in a stable order."""
        with self._lock:
            entries = [entry.model_copy(deep=True) for (t, r), entry in self._entries.items() if keep(t, r, entry)]
        yield from sorted(entries, key=lambda e: _order(e.ref))


def _order(ref: ImageRef) -> tuple[str, str]:
    return ref.job_id, ref.image_id
