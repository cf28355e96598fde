"""Exact and near-duplicate detection over a tenant's images: pure logic over a small store interface.

`DuplicateService(store).register_image(...)` (per image), `.reconcile_job(...)` (once a job is complete: its
groups, whole across the tenant's library, keyed in the index), `.duplicate_groups(...)` (as recorded); the Cosmos
store is shared.adapters.dedup_index.CosmosDuplicateIndexStore. See docs/imaging.md.
"""

from shared.dedup.bands import BandScheme
from shared.dedup.memory_store import InMemoryDuplicateIndexStore
from shared.dedup.models import DuplicateGroup, DuplicateHit, DuplicatePair, IndexEntry, LibraryImage, Match, MatchKind
from shared.dedup.policy import NearDuplicatePolicy, NearMatch, PerceptualHashes
from shared.dedup.service import DuplicateService
from shared.dedup.store import DuplicateIndexStore

__all__ = [
    "BandScheme",
    "DuplicateGroup",
    "DuplicateHit",
    "DuplicateIndexStore",
    "DuplicatePair",
    "DuplicateService",
    "InMemoryDuplicateIndexStore",
    "IndexEntry",
    "LibraryImage",
    "Match",
    "MatchKind",
    "NearDuplicatePolicy",
    "NearMatch",
    "PerceptualHashes",
]
