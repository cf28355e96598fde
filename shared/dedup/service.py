"""The duplicate index as the chunk worker and the status timer use it.

register_image (worker, per image): claims the SHA-256 (create-if-absent: exact duplicates). An exact duplicate
records its match to the first image with those bytes and stops there. Otherwise it writes the image's entry with
its pHash band values, then looks up candidates by band keys and confirms them on the full distances.
Writing before looking up means that of two concurrent registrations of near duplicates at least one sees the other
in a store whose reads show every acknowledged write (the emulator; Cosmos with strong consistency). With session
consistency another client's write can be briefly invisible, so reconcile_job (status timer, once a job is
complete) repeats every look-up of the job with all writes settled, in memory over the entries written during the
job, and then completes the job's groups with the rest of the tenant's library (see reconcile_job).
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from shared.dedup.bands import BandScheme
from shared.dedup.hashes import parse_hash
from shared.dedup.join import Hashes, connect_near_duplicates
from shared.dedup.models import (
    DuplicateGroup,
    DuplicateHit,
    DuplicatePair,
    IndexEntry,
    LibraryImage,
    Match,
    MatchKind,
)
from shared.dedup.policy import NearDuplicatePolicy, PerceptualHashes
from shared.dedup.store import DuplicateIndexStore
from shared.dedup.union_find import UnionFind

# Up to this many images, reconcile_job repeats a job's look-ups one by one instead of reading the window.
SMALL_JOB_LOOK_UPS = 16

class DuplicateService:
    def __init__(self, store: DuplicateIndexStore, policy: NearDuplicatePolicy | None = None) -> None:
        self._store = store
        self._policy = policy or NearDuplicatePolicy()
        self._scheme = BandScheme.for_max_distance(self._policy.max_phash_distance)

    @property
    def band_scheme(self) -> BandScheme:
        return self._scheme

    def register_image(
        self,
        tenant_id: str,
        job_id: str,
        image_id: str,
        sha256: str,
        phash: str | None = None,
        dhash: str | None = None,
        phash_mirror: str | None = None,
    ) -> DuplicateHit:
        ref = LibraryImage(job_id=job_id, image_id=image_id)
        holder = self._store.claim_sha256(tenant_id, sha256, ref)
        entry = IndexEntry(ref=ref, sha256=sha256, phash=phash, dhash=dhash, phash_mirror=phash_mirror)
        if holder != ref:
            # An exact duplicate joins its holder's group and stays out of the band index: the holder stands for
            # these bytes in every near look-up. Otherwise each copy of a popular image would be a candidate of
            # every later look-up near it, and each copy's look-up would return all earlier copies (quadratic).
            entry.matches = [Match(ref=holder, kind=MatchKind.EXACT)]
            self._store.put_entry(tenant_id, entry)
            return DuplicateHit(exact_of=holder)
        if phash is not None:
            entry.bands = self._scheme.split(parse_hash(phash))
            entry.band_scheme = self._scheme.name
        self._store.put_entry(tenant_id, entry)  # first: so that concurrent registrations can find this one

        near = self._confirmed_near_matches(tenant_id, entry)
        if near:
            entry.matches = _merge(entry.matches, near)
            self._store.set_matches(tenant_id, ref, entry.matches)
        return DuplicateHit(near=[m for m in entry.matches if m.kind is MatchKind.NEAR])

    def duplicate_groups(self, tenant_id: str, job_id: str) -> list[DuplicateGroup]:
        """The job's duplicate groups as recorded so far, completed with the library members recorded in them
        (whole once reconcile_job has run for the job). Reads only; no look-up of the job's images."""
        with _collector_paused():
            graph = _Graph()
            job_nodes = [graph.add(entry) for entry in self._store.job_entries(tenant_id, job_id)]
            self._pull_library(tenant_id, graph, job_nodes)
            return graph.groups(job_nodes)

    def reconcile_job(self, tenant_id: str, job_id: str, *, racing_since: float | None = None) -> list[DuplicateGroup]:
        """The job's duplicate groups, exact and whole: every image of the tenant's library connected to one of
        the job's images by confirmed pairs, whichever job brought it. Records what it found, so that later jobs
        find the whole group through any member. Returns the groups with a job image, members sorted.

        1. Pairs racing registrations missed. A registration can only have missed entries written about when it
           looked (a replica that had not caught up), so the look-ups are repeated against the entries written
           since `racing_since` (the job's start less a margin; None: all of the tenant's) plus the job's own, read
           in one query each and matched in memory (shared.dedup.join: bulk, vectorised, and only for pairs that
           are not connected already). Older entries were visible to every look-up of the job. A pair that joins
           two groups is added to the job image's matches (set_matches); pairs inside a group are not needed and
           not recorded (a dense group of n copies would have n²/2).
        2. The library side. Group keys and matches are followed until nothing new turns up: the entries the
           job's groups point at (entries_by_ref) and every entry carrying a key of an entry in the groups
           (entries_in_groups, all of its keys, not only the current one). Look-ups by key only, never a scan.
        3. Keys. Each group's key is the smallest of its members' LibraryImage.key and of the keys they carry; it is
           added to every member that does not carry it yet, library members included (add_group_key).

        Idempotent: a second run finds the pairs recorded, the groups the same and every key in place, and writes
        nothing. Two runs for the same job at once compute the same groups and add the same keys (adding a key
        twice is harmless). Runs for two jobs of one tenant at once whose groups meet: each returns its groups as
        it read the index, so one may lack members the other job is adding at that moment (as if it had run
        first); each adds its own key. Keys are only ever added, never replaced, and the pairs both used are
        recorded, so no connection is lost: the members the two runs keyed differently still share the group's
        earlier key (or a recorded pair), and the next reconciliation reaching any of them follows that key and
        reunites the group under its smallest key.
        """
        with _collector_paused():
            graph = _Graph()
            job_entries = list(self._store.job_entries(tenant_id, job_id))
            job_nodes = [graph.add(entry) for entry in job_entries]
            for entry in self._look_up_again(tenant_id, job_entries, racing_since):
                graph.add(entry)
            self._connect_missed_pairs(tenant_id, graph, job_nodes)
            self._pull_library(tenant_id, graph, job_nodes)
            groups = graph.groups(job_nodes)
        for group in groups:
            assert group.key is not None
            unkeyed = [m for m in group.members if (e := graph.entry(m)) is not None and group.key not in e.group_keys]
            if unkeyed:
                self._store.add_group_key(tenant_id, group.key, unkeyed)
        return groups

    def _look_up_again(
        self, tenant_id: str, job_entries: list[IndexEntry], racing_since: float | None
    ) -> Iterable[IndexEntry]:
        """The entries step 1 matches the job's entries against. A small job repeats its images' band look-ups
        (a query by key each, reading the candidates whole): its cost follows the job, whereas the window of
        entries written since the job started follows the tenant's traffic (a thousand one-image jobs submitted at
        once would each read all thousand). A large job reads the window once instead of a query an image."""
        if len(job_entries) > SMALL_JOB_LOOK_UPS:
            return self._store.entries_written_since(tenant_id, racing_since)
        found: dict[LibraryImage, IndexEntry] = {}
        for entry in job_entries:
            hashes = entry.perceptual()
            if hashes is None or not entry.bands:  # nothing to look up, or an exact duplicate (its holder stands in)
                continue
            probe = self._scheme.probe(hashes.phash, hashes.phash_mirror)
            for candidate in self._store.find_band_candidates(tenant_id, self._scheme.name, probe, whole=True):
                found[candidate.ref] = candidate
        return found.values()

    def _connect_missed_pairs(self, tenant_id: str, graph: _Graph, job_nodes: list[int]) -> None:
        """Step 1 of reconcile_job: every near pair between a job entry and an entry of the window, in memory."""
        job = set(job_nodes)
        query, index = [], []
        for node, entry in graph.loaded():
            if entry.phash is None or entry.dhash is None or entry.phash_mirror is None:
                continue
            if node in job and entry.bands:  # no bands: an exact duplicate, represented by its holder
                query.append(node)
            if entry.band_scheme == self._scheme.name:
                index.append(node)
        if not query:
            return
        phash, dhash, mirror = (np.zeros(graph.size, dtype=np.uint64) for _ in range(3))
        for node in dict.fromkeys([*query, *index]):
            entry = graph.entries[node]
            phash[node] = int(entry.phash, 16)  # type: ignore[arg-type]
            dhash[node] = int(entry.dhash, 16)  # type: ignore[arg-type]
            mirror[node] = int(entry.phash_mirror, 16)  # type: ignore[arg-type]
        found: dict[int, list[Match]] = defaultdict(list)

        def linked(a: int, b: int) -> None:
            first, second = graph.entries[a], graph.entries[b]
            near = self._policy.compare(_hashes(first), _hashes(second))
            for holder, other in ((first, second), (second, first)):
                if graph.node(holder.ref) not in job:
                    continue
                if holder.sha256 == other.sha256:
                    found[graph.node(holder.ref)].append(Match(ref=other.ref, kind=MatchKind.EXACT))
                elif near is not None:
                    found[graph.node(holder.ref)].append(Match.near(other.ref, near))

        connect_near_duplicates(
            Hashes(phash=phash, dhash=dhash, mirror=mirror),
            np.array(query, dtype=np.int64),
            np.array(index, dtype=np.int64),
            self._policy,
            graph.sets,
            linked,
        )
        for node, matches in found.items():
            entry = graph.entries[node]
            entry.matches = _merge(entry.matches, matches)
            self._store.set_matches(tenant_id, entry.ref, entry.matches)

    def _pull_library(self, tenant_id: str, graph: _Graph, job_nodes: list[int]) -> None:
        """Step 2 of reconcile_job: loads, until nothing new turns up, the entries the job's groups point at and
        those carrying their keys."""
        asked_refs: set[LibraryImage] = set()
        asked_keys: set[str] = set()
        while True:
            refs, keys = graph.unloaded_in_groups_of(job_nodes)
            refs = [r for r in refs if r not in asked_refs]
            keys = [k for k in keys if k not in asked_keys]
            if not refs and not keys:
                return
            asked_refs.update(refs)
            asked_keys.update(keys)
            if refs:
                for entry in self._store.entries_by_ref(tenant_id, refs):
                    graph.add(entry)
            if keys:
                for entry in self._store.entries_in_groups(tenant_id, keys):
                    graph.add(entry)

    def _confirmed_near_matches(self, tenant_id: str, entry: IndexEntry) -> list[Match]:
        hashes = entry.perceptual()
        if hashes is None or not entry.bands:  # no perceptual hashes, or an exact duplicate (see register_image)
            return []
        probe = self._scheme.probe(hashes.phash, hashes.phash_mirror)
        matches = []
        for candidate in self._store.find_band_candidates(tenant_id, self._scheme.name, probe):
            if candidate.ref == entry.ref:
                continue
            if candidate.sha256 == entry.sha256:
                matches.append(Match(ref=candidate.ref, kind=MatchKind.EXACT))
                continue
            other = candidate.perceptual()
            near = self._policy.compare(hashes, other) if other is not None else None
            if near is not None:
                matches.append(Match.near(candidate.ref, near))
        return matches


class _Graph:
    """Images (loaded or only referenced by a match) and group keys as the items of one union-find: an entry is
    joined with each image it matches and each key it carries. Items are small integers."""

    def __init__(self) -> None:
        self.sets: UnionFind[int] = UnionFind()
        self.entries: dict[int, IndexEntry] = {}
        # Keyed by (job, image) (hashing a tuple of two strings is cheaper than an LibraryImage) or by the group key.
        self._ids: dict[tuple[str, str] | str, int] = {}
        self._items: list[LibraryImage | str] = []  # an LibraryImage, or a group key (str)

    @property
    def size(self) -> int:
        return len(self._items)

    def _item(self, item: LibraryImage | str) -> int:
        key = item if isinstance(item, str) else (item.job_id, item.image_id)
        node = self._ids.get(key)
        if node is None:
            node = self._ids[key] = len(self._items)
            self._items.append(item)
            self.sets.add(node)
        return node

    def node(self, ref: LibraryImage) -> int:
        return self._item(ref)

    def entry(self, ref: LibraryImage) -> IndexEntry | None:
        node = self._ids.get((ref.job_id, ref.image_id))
        return None if node is None else self.entries.get(node)

    def loaded(self) -> Iterable[tuple[int, IndexEntry]]:
        return self.entries.items()

    def add(self, entry: IndexEntry) -> int:
        """Loads the entry (the first version loaded of an image is kept) and joins it with what it points at."""
        node = self._item(entry.ref)
        if node not in self.entries:
            self.entries[node] = entry
            for match in entry.matches:
                self.sets.union(node, self._item(match.ref))
            for key in entry.group_keys:
                self.sets.union(node, self._item(key))
        return node

    def _roots(self, nodes: Iterable[int]) -> set[int]:
        return {self.sets.find(node) for node in nodes}

    def unloaded_in_groups_of(self, nodes: list[int]) -> tuple[list[LibraryImage], list[str]]:
        """In the sets of `nodes`: the images not loaded, and the group keys."""
        roots = self._roots(nodes)
        refs: list[LibraryImage] = []
        keys: list[str] = []
        for node, item in enumerate(self._items):
            if self.sets.find(node) not in roots:
                continue
            if isinstance(item, str):
                keys.append(item)
            elif node not in self.entries:
                refs.append(item)
        return refs, keys

    def groups(self, nodes: list[int]) -> list[DuplicateGroup]:
        """The sets of `nodes` with at least two images, each with its pairs (from the loaded entries' matches,
        built in one pass over them) and its key."""
        roots = self._roots(nodes)
        members: dict[int, list[LibraryImage]] = defaultdict(list)
        keys: dict[int, set[str]] = defaultdict(set)
        for node, item in enumerate(self._items):
            root = self.sets.find(node)
            if root not in roots:
                continue
            if isinstance(item, str):
                keys[root].add(item)
            else:
                members[root].append(item)
                keys[root].add(item.key)
        pairs: dict[int, dict[tuple[LibraryImage, LibraryImage], DuplicatePair]] = defaultdict(dict)
        for node, entry in self.entries.items():
            if not entry.matches:
                continue
            root = self.sets.find(node)
            if root not in roots:
                continue
            group_pairs = pairs[root]
            for match in entry.matches:
                a, b = (entry.ref, match.ref) if _order(entry.ref) <= _order(match.ref) else (match.ref, entry.ref)
                known = group_pairs.get((a, b))
                if known is None or (match.kind is MatchKind.EXACT and known.kind is not MatchKind.EXACT):
                    group_pairs[(a, b)] = DuplicatePair(
                        a=a, b=b, kind=match.kind, phash_distance=match.phash_distance, mirrored=match.mirrored
                    )
        groups = []
        for root, refs in members.items():
            if len(refs) < 2:
                continue
            ordered = sorted(refs, key=_order)
            sorted_pairs = sorted(pairs[root].values(), key=lambda p: (*_order(p.a), *_order(p.b)))
            groups.append(DuplicateGroup(members=ordered, pairs=sorted_pairs, key=min(keys[root])))
        return sorted(groups, key=lambda g: _order(g.members[0]))


def _order(ref: LibraryImage) -> tuple[str, str]:
    return ref.job_id, ref.image_id


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a reconciliation builds its graph: it creates millions of
    objects for a large job, none of them garbage, and the collections this triggers re-scan all of them (measured:
    9 of 21 s of CPU for 200,000 images). Reference counting still frees everything as usual; the collector is
    switched back on only if it was on (the run that switched it off switches it back on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _hashes(entry: IndexEntry) -> PerceptualHashes:
    hashes = entry.perceptual()
    assert hashes is not None  # only entries with all three hashes take part in the join
    return hashes


def _merge(existing: list[Match], found: list[Match]) -> list[Match]:
    """One match per other image (an exact match wins over a near one), in a stable order."""
    by_ref: dict[LibraryImage, Match] = {}
    for match in [*existing, *found]:
        current = by_ref.get(match.ref)
        if current is None or (match.kind is MatchKind.EXACT and current.kind is not MatchKind.EXACT):
            by_ref[match.ref] = match
    return sorted(by_ref.values(), key=lambda m: (m.ref.job_id, m.ref.image_id))
