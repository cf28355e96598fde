"""The duplicate index as the chunk worker and the status timer use it.

register_image (worker, per image): claims the SHA-256 (create-if-absent: exact duplicates). An exact duplicate
records its match to the first image with those bytes and stops there. Otherwise it writes the image's entry with
its pHash band values, then looks up candidates by band keys and confirms them on the full distances.
Writing before looking up means that of two concurrent registrations of near duplicates at least one sees the other
in a store whose reads show every acknowledged write (the emulator; Cosmos with strong consistency). With session
consistency another client's write can be briefly invisible, so reconcile_job (status timer, once a job is
complete) repeats every look-up of the job with all writes settled, in memory over the entries written during the
job: that makes the job's groups exact.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.dedup.bands import BandScheme
from shared.dedup.hashes import parse_hash
from shared.dedup.memory_store import InMemoryDuplicateIndexStore
from shared.dedup.models import (
    DuplicateGroup,
    DuplicateHit,
    DuplicatePair,
    ImageRef,
    IndexEntry,
    Match,
    MatchKind,
)
from shared.dedup.policy import NearDuplicatePolicy
from shared.dedup.store import DuplicateIndexStore
from shared.dedup.union_find import UnionFind


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
        ref = ImageRef(job_id=job_id, image_id=image_id)
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
            self._store.put_entry(tenant_id, entry)
        return DuplicateHit(near=[m for m in entry.matches if m.kind is MatchKind.NEAR])

    def duplicate_groups(self, tenant_id: str, job_id: str) -> list[DuplicateGroup]:
        """The job's duplicate groups as recorded so far (exact once reconcile_job has run for the job)."""
        return _groups(self._store.job_entries(tenant_id, job_id, matched_only=True))

    def reconcile_job(
        self, tenant_id: str, job_id: str, *, racing_since: float | None = None
    ) -> list[DuplicateGroup]:
        """Repeats every look-up of the job's images, records pairs a concurrent registration missed, and returns
        the job's exact groups. Idempotent.

        A registration can only have missed entries written about when it looked (a replica that had not caught
        up), so the look-ups are repeated against the entries written since `racing_since` (the job's start less
        a margin; None: all of the tenant's) plus the job's own, read in one query each and matched in memory:
        two queries a job instead of one a job image. Older entries were visible to every look-up of the job."""
        window = InMemoryDuplicateIndexStore()
        for entry in self._store.entries_written_since(tenant_id, racing_since):
            window.put_entry(tenant_id, entry)
        job_entries = list(self._store.job_entries(tenant_id, job_id))
        for entry in job_entries:
            window.put_entry(tenant_id, entry)
        in_memory = DuplicateService(window, self._policy)
        reconciled = []
        for entry in job_entries:
            matches = _merge(entry.matches, in_memory._confirmed_near_matches(tenant_id, entry))
            if matches != entry.matches:
                entry.matches = matches
                self._store.put_entry(tenant_id, entry)
            if entry.matches:
                reconciled.append(entry)
        return _groups(reconciled)

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
                matches.append(
                    Match(
                        ref=candidate.ref,
                        kind=MatchKind.NEAR,
                        phash_distance=near.phash_distance,
                        dhash_distance=near.dhash_distance,
                        mirrored=near.mirrored,
                    )
                )
        return matches


def _merge(existing: list[Match], found: list[Match]) -> list[Match]:
    """One match per other image (an exact match wins over a near one), in a stable order."""
    by_ref: dict[ImageRef, Match] = {}
    for match in [*existing, *found]:
        current = by_ref.get(match.ref)
        if current is None or (match.kind is MatchKind.EXACT and current.kind is not MatchKind.EXACT):
            by_ref[match.ref] = match
    return sorted(by_ref.values(), key=lambda m: (m.ref.job_id, m.ref.image_id))


def _groups(entries: Iterable[IndexEntry]) -> list[DuplicateGroup]:
    sets: UnionFind[ImageRef] = UnionFind()
    pairs: dict[tuple[ImageRef, ImageRef], DuplicatePair] = {}
    for entry in entries:
        for match in entry.matches:
            sets.union(entry.ref, match.ref)
            a, b = sorted((entry.ref, match.ref), key=lambda r: (r.job_id, r.image_id))
            pair = DuplicatePair(
                a=a, b=b, kind=match.kind, phash_distance=match.phash_distance, mirrored=match.mirrored
            )
            known = pairs.get((a, b))
            if known is None or (pair.kind is MatchKind.EXACT and known.kind is not MatchKind.EXACT):
                pairs[(a, b)] = pair
    groups = []
    for members in sets.groups():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda r: (r.job_id, r.image_id))
        member_set = set(ordered)
        group_pairs = sorted(
            (p for key, p in pairs.items() if key[0] in member_set),
            key=lambda p: (p.a.job_id, p.a.image_id, p.b.job_id, p.b.image_id),
        )
        groups.append(DuplicateGroup(members=ordered, pairs=group_pairs))
    return sorted(groups, key=lambda g: (g.members[0].job_id, g.members[0].image_id))
