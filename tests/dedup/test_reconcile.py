"""Reconciliation at scale and across jobs: whole groups from the tenant's library, kept by group keys; and the store
operations it uses. On both stores (the `store` fixture) unless the size needs the in-memory one.

Each test uses a fresh tenant id, so the shared emulator needs no cleaning between tests.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence

import pytest

from shared.dedup import (
    DuplicateGroup,
    DuplicateIndexStore,
    DuplicateService,
    IndexEntry,
    InMemoryDuplicateIndexStore,
    LibraryImage,
    Match,
    MatchKind,
    NearDuplicatePolicy,
    PerceptualHashes,
)
from shared.dedup.union_find import UnionFind
from tests.dedup.synthetic import entry, flip, near_pair_entries, put_all, star_entries
from tests.dedup.test_service import _Image


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def _keys(groups: Sequence[DuplicateGroup]) -> list[list[str]]:
    return [[m.key for m in g.members] for g in groups]


def _next_second() -> float:
    """A moment in a later whole second than every write so far: Cosmos's write times (_ts) are whole seconds."""
    time.sleep(1.05 - time.time() % 1)
    return time.time()


class _WriteCounting:
    """A store that counts the writes reconciliation makes."""

    def __init__(self, inner: DuplicateIndexStore) -> None:
        self._inner = inner
        self.writes = 0

    def claim_sha256(self, tenant_id: str, sha256: str, ref: LibraryImage) -> LibraryImage:
        return self._inner.claim_sha256(tenant_id, sha256, ref)

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        self.writes += 1
        self._inner.put_entry(tenant_id, entry)

    def set_matches(self, tenant_id: str, ref: LibraryImage, matches: Sequence[Match]) -> None:
        self.writes += 1
        self._inner.set_matches(tenant_id, ref, matches)

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]], *, whole: bool = False
    ) -> list[IndexEntry]:
        return self._inner.find_band_candidates(tenant_id, band_scheme, probe, whole=whole)

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        return self._inner.job_entries(tenant_id, job_id, matched_only=matched_only)

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        return self._inner.entries_written_since(tenant_id, since_epoch)

    def entries_by_ref(self, tenant_id: str, refs: Collection[LibraryImage]) -> Iterator[IndexEntry]:
        return self._inner.entries_by_ref(tenant_id, refs)

    def entries_in_groups(self, tenant_id: str, group_keys: Collection[str]) -> Iterator[IndexEntry]:
        return self._inner.entries_in_groups(tenant_id, group_keys)

    def add_group_key(self, tenant_id: str, group_key: str, refs: Collection[LibraryImage]) -> None:
        self.writes += len(refs)
        self._inner.add_group_key(tenant_id, group_key, refs)


# --- the store operations reconciliation adds ---------------------------------------------------------------


def _ref(image_id: str, job_id: str = "j") -> LibraryImage:
    return LibraryImage(job_id=job_id, image_id=image_id)


def test_set_matches_replaces_only_the_matches(store: DuplicateIndexStore) -> None:
    tenant, rng = _tenant(), random.Random(30)
    stored = entry(_ref("a"), rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(64), "a" * 64)
    stored.group_keys = ("k",)
    store.put_entry(tenant, stored)
    match = Match(ref=_ref("b"), kind=MatchKind.NEAR, phash_distance=3, dhash_distance=1)

    store.set_matches(tenant, stored.ref, [match])

    [read] = store.job_entries(tenant, "j", matched_only=True)
    assert read.matches == [match]
    assert (read.bands, read.band_scheme, read.phash, read.group_keys) == (
        stored.bands,
        stored.band_scheme,
        stored.phash,
        ("k",),
    )


def test_entries_by_ref_returns_those_that_exist(store: DuplicateIndexStore) -> None:
    tenant = _tenant()
    for index in range(250):
        store.put_entry(tenant, IndexEntry(ref=_ref(f"{index:03d}"), sha256=f"{index:064x}"))
    store.put_entry(tenant, IndexEntry(ref=_ref("odd/id?#", job_id="j/2"), sha256="f" * 64))
    asked = [_ref(f"{index:03d}") for index in range(0, 250, 1)] + [_ref("missing"), _ref("odd/id?#", "j/2")]

    found = sorted(e.ref.key for e in store.entries_by_ref(tenant, asked))

    assert found == sorted([f"j/{index:03d}" for index in range(250)] + ["j/2/odd/id?#"])
    assert list(store.entries_by_ref(_tenant(), asked)) == [], "tenants are separate"


def test_group_keys_are_added_kept_and_found_by_any_of_them(store: DuplicateIndexStore) -> None:
    tenant = _tenant()
    for image_id in "abcd":
        store.put_entry(tenant, IndexEntry(ref=_ref(image_id), sha256=image_id * 64))

    store.add_group_key(tenant, "k2", [_ref("a"), _ref("b")])
    store.add_group_key(tenant, "k1", [_ref("b"), _ref("c"), _ref("missing")])
    store.add_group_key(tenant, "k1", [_ref("c")])  # again: harmless

    def found(*keys: str) -> list[str]:
        return sorted(e.ref.image_id for e in store.entries_in_groups(tenant, keys))

    assert (found("k2"), found("k1"), found("k1", "k2"), found("k3")) == (["a", "b"], ["b", "c"], ["a", "b", "c"], [])
    by_id = {e.ref.image_id: e for e in store.job_entries(tenant, "j")}
    assert [by_id[i].group_keys for i in "abcd"] == [("k2",), ("k2", "k1"), ("k1",), ()]
    assert by_id["b"].group_key == "k1", "the current key is the smallest"
    assert found(*[f"x{i}" for i in range(450)], "k1") == ["b", "c"], "many keys: several queries, no duplicates"


def test_concurrent_additions_of_different_keys_all_land(store: DuplicateIndexStore) -> None:
    tenant, ref = _tenant(), _ref("a")
    store.put_entry(tenant, IndexEntry(ref=ref, sha256="a" * 64))
    keys = [f"k{i}" for i in range(6)]
    barrier = threading.Barrier(len(keys))

    def add(key: str) -> None:
        barrier.wait()
        store.add_group_key(tenant, key, [ref])

    threads = [threading.Thread(target=add, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    [read] = store.entries_by_ref(tenant, [ref])
    assert sorted(read.group_keys) == keys


# --- whole groups across jobs ----------------------------------------------------------------------


def _library(rng: random.Random) -> list[_Image]:
    """Six images: a near group of three (original, near copy, mirrored copy), a near pair, one unrelated."""
    first, second = _Image(rng), _Image(rng)
    return [first, first.near_copy(rng), first.mirrored_copy(rng), second, second.near_copy(rng), _Image(rng)]


def _register(service: DuplicateService, tenant: str, job: str, images: Sequence[_Image]) -> float:
    """Registers the images as job `job`; returns the racing_since of the job (its start)."""
    started = _next_second()
    for number, image in enumerate(images):
        image.register(service, tenant, job, str(number))
    return started


def _entries_keyed(store: DuplicateIndexStore, tenant: str, key: str | None) -> list[str]:
    assert key is not None
    return sorted(e.ref.key for e in store.entries_in_groups(tenant, [key]))


def test_a_resubmitted_set_reports_the_whole_groups_with_the_first_jobs_members(store: DuplicateIndexStore) -> None:
    tenant, service = _tenant(), DuplicateService(store)
    images = _library(random.Random(31))
    since_1 = _register(service, tenant, "job-1", images)
    first = service.reconcile_job(tenant, "job-1", racing_since=since_1)
    assert _keys(first) == [["job-1/0", "job-1/1", "job-1/2"], ["job-1/3", "job-1/4"]]

    # The same images again: every one an exact duplicate of job 1's, which lie outside job 2's window.
    since_2 = _register(service, tenant, "job-2", images)
    second = service.reconcile_job(tenant, "job-2", racing_since=since_2)

    expected = [
        ["job-1/0", "job-1/1", "job-1/2", "job-2/0", "job-2/1", "job-2/2"],
        ["job-1/3", "job-1/4", "job-2/3", "job-2/4"],
        ["job-1/5", "job-2/5"],
    ]
    assert _keys(second) == expected
    assert [g.key for g in second] == ["job-1/0", "job-1/3", "job-1/5"]
    assert {(p.a.key, p.b.key, p.kind) for p in second[2].pairs} == {("job-1/5", "job-2/5", MatchKind.EXACT)}
    for group in second:  # the key is on every member: a later job reaches the whole group through any of them
        assert _entries_keyed(store, tenant, group.key) == [m.key for m in group.members]
    counting = _WriteCounting(store)
    assert _keys(DuplicateService(counting).reconcile_job(tenant, "job-2", racing_since=since_2)) == expected
    assert counting.writes == 0, "a second run finds everything recorded"
    assert _keys(service.duplicate_groups(tenant, "job-2")) == expected
    assert _keys(service.duplicate_groups(tenant, "job-1")) == expected, "job 1's groups now include job 2's copies"


def test_a_job_bridging_two_library_groups_merges_them_under_the_smaller_key(store: DuplicateIndexStore) -> None:
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(32)
    images = _library(rng)
    since_1 = _register(service, tenant, "job-1", images)
    service.reconcile_job(tenant, "job-1", racing_since=since_1)
    since_2 = _register(service, tenant, "job-2", images)
    service.reconcile_job(tenant, "job-2", racing_since=since_2)
    # A near copy of the first group's original whose mirrored pHash is near the second group's original.
    bridge = images[0].near_copy(rng, phash_bits=2)
    bridge.mirror = flip(images[3].phash, [7])

    since_3 = _register(service, tenant, "job-3", [bridge])
    third = service.reconcile_job(tenant, "job-3", racing_since=since_3)

    merged = sorted([*(f"job-{job}/{n}" for job in (1, 2) for n in range(5)), "job-3/0"])
    assert _keys(third) == [merged]
    assert third[0].key == "job-1/0"
    assert _entries_keyed(store, tenant, "job-1/0") == merged
    # Job 2's images reach the merged group through the key now added to them (they keep "job-1/3" too).
    assert _keys(service.duplicate_groups(tenant, "job-2")) == [merged, ["job-1/5", "job-2/5"]]
    assert _keys(service.reconcile_job(tenant, "job-2", racing_since=since_2)) == [merged, ["job-1/5", "job-2/5"]]


def test_concurrent_reconciliations_leave_groups_that_the_next_one_makes_whole(store: DuplicateIndexStore) -> None:
    """Two jobs of one tenant reconciled at the same moment, each meeting the library group from its side (one a
    resubmission, one a bridge to another group), plus the same job twice: whatever each run returned, no
    connection is lost, and the next reconciliation returns the whole merged group with every member keyed."""
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(33)
    images = _library(rng)
    since_1 = _register(service, tenant, "job-1", images)
    service.reconcile_job(tenant, "job-1", racing_since=since_1)
    bridge = images[0].near_copy(rng, phash_bits=2)
    bridge.mirror = flip(images[3].phash, [7])
    since_2 = _register(service, tenant, "job-2", images)
    since_3 = _register(service, tenant, "job-3", [bridge])
    runs = [("job-2", since_2), ("job-3", since_3), ("job-3", since_3)]
    barrier = threading.Barrier(len(runs))
    errors: list[BaseException] = []

    def reconcile(job: str, since: float) -> None:
        try:
            barrier.wait(timeout=30)
            DuplicateService(store).reconcile_job(tenant, job, racing_since=since)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reconcile, args=run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    merged = sorted([*(f"job-{job}/{n}" for job in (1, 2) for n in range(5)), "job-3/0"])
    assert _keys(service.reconcile_job(tenant, "job-3", racing_since=since_3)) == [merged]
    assert _entries_keyed(store, tenant, "job-1/0") == merged
    assert _keys(service.duplicate_groups(tenant, "job-2")) == [merged, ["job-1/5", "job-2/5"]]


# --- size -------------------------------------------------------------------------------------------------


def _assert_one_group(groups: list[DuplicateGroup], members: int) -> None:
    assert len(groups) == 1
    assert len(groups[0].members) == members == len(set(groups[0].members))
    # The pairs connect the group without being all n²/2 of them: one reconciliation found them all.
    assert members - 1 <= len(groups[0].pairs) <= 2 * members


def test_a_star_group_of_300_on_both_stores(store: DuplicateIndexStore) -> None:
    tenant = _tenant()
    put_all(store, tenant, star_entries("job", 300))

    groups = DuplicateService(store).reconcile_job(tenant, "job")

    _assert_one_group(groups, 300)
    assert [m.image_id for m in groups[0].members] == sorted(str(n) for n in range(300))
    assert _entries_keyed(store, tenant, groups[0].key) == [m.key for m in groups[0].members]
    counting = _WriteCounting(store)
    assert DuplicateService(counting).reconcile_job(tenant, "job") == groups and counting.writes == 0


def test_a_star_group_of_10000() -> None:
    store = InMemoryDuplicateIndexStore()
    put_all(store, "tenant", star_entries("job", 10_000))

    groups = DuplicateService(store).reconcile_job("tenant", "job")

    _assert_one_group(groups, 10_000)
    assert _keys(DuplicateService(store).duplicate_groups("tenant", "job")) == _keys(groups)


def test_a_chain_of_2000_near_duplicates_is_one_group() -> None:
    """Each image near the previous one only (4 pHash bits further along a random walk): the shape that made the
    recursive union-find fail from ~1,000 members."""
    store, rng = InMemoryDuplicateIndexStore(), random.Random(34)
    phash, dhash = rng.getrandbits(64), rng.getrandbits(64)
    for number in range(2000):
        phash, dhash = flip(phash, rng.sample(range(64), 4)), flip(dhash, rng.sample(range(64), 4))
        ref = LibraryImage(job_id="job", image_id=f"{number:04d}")
        store.put_entry("tenant", entry(ref, phash, dhash, rng.getrandbits(64), f"{number:064x}"))

    groups = DuplicateService(store).reconcile_job("tenant", "job")

    assert len(groups) == 1 and len(groups[0].members) == 2000


@pytest.mark.slow
def test_100000_near_duplicate_pairs_reconcile_into_100000_groups() -> None:
    store = InMemoryDuplicateIndexStore()
    put_all(store, "tenant", near_pair_entries("job", 100_000, racing=True))

    groups = DuplicateService(store).reconcile_job("tenant", "job")

    assert len(groups) == 100_000
    assert {tuple(m.image_id for m in g.members) for g in groups} == {(f"{n}.a", f"{n}.b") for n in range(100_000)}
    assert all(len(g.pairs) == 1 and g.key == g.members[0].key for g in groups)


@pytest.mark.parametrize("seed", range(4))
def test_the_bulk_join_finds_exactly_the_groups_of_pairwise_comparison(seed: int) -> None:
    """Against comparing every pair with the policy: clusters dense enough for the dense-bucket path (150 copies
    within 2 bits), sparse ones, mirrored copies, near misses (9-11 bits), and entries of another job in the
    window (their pairs with the job's images count, their pairs with each other do not)."""
    rng, store, tenant = random.Random(seed), InMemoryDuplicateIndexStore(), "tenant"
    hashes: dict[LibraryImage, tuple[int, int, int]] = {}
    number = 0

    def add(phash: int, dhash: int, mirror: int) -> None:
        nonlocal number
        ref = LibraryImage(job_id=rng.choice(["job", "job", "other"]), image_id=str(number))
        number += 1
        hashes[ref] = (phash, dhash, mirror)
        store.put_entry(tenant, entry(ref, phash, dhash, mirror, f"{number:064x}"))

    for cluster in range(12):
        phash, dhash, mirror = rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(64)
        size, spread = (150, 2) if cluster < 2 else (rng.randint(1, 12), rng.choice([3, 6, 9, 11]))
        for _ in range(size):
            add(*(flip(h, rng.sample(range(64), rng.randint(0, spread))) for h in (phash, dhash, mirror)))
        add(flip(mirror, [rng.randrange(64)]), rng.getrandbits(64), flip(phash, [rng.randrange(64)]))  # mirrored

    groups = DuplicateService(store).reconcile_job(tenant, "job")

    policy, expected = NearDuplicatePolicy(), UnionFind[LibraryImage]()
    refs = sorted(hashes, key=lambda r: (r.job_id, r.image_id))
    for i, a in enumerate(refs):
        for b in refs[i + 1 :]:
            if "job" in (a.job_id, b.job_id) and policy.compare(_perceptual(hashes[a]), _perceptual(hashes[b])):
                expected.union(a, b)
    wanted = sorted(
        sorted(m.key for m in members)
        for members in expected.groups()
        if len(members) > 1 and any(m.job_id == "job" for m in members)
    )
    assert sorted(_keys(groups)) == wanted


def _perceptual(hashes: tuple[int, int, int]) -> PerceptualHashes:
    return PerceptualHashes(phash=hashes[0], dhash=hashes[1], phash_mirror=hashes[2])
