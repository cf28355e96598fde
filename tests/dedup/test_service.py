"""The duplicate index: the same behaviour from the in-process store and from Cosmos (on the emulator).

Each test uses a fresh tenant id, so the shared emulator needs no cleaning between tests.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence

from shared.dedup import (
    DuplicateGroup,
    DuplicateHit,
    DuplicateIndexStore,
    DuplicateService,
    IndexEntry,
    LibraryImage,
    Match,
    MatchKind,
)
from shared.dedup.service import SMALL_JOB_LOOK_UPS


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def _hex(value: int) -> str:
    return f"{value:016x}"


def _flip(value: int, bits: Sequence[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


class _Image:
    """Synthetic hashes: near copies flip a few bits."""

    def __init__(self, rng: random.Random) -> None:
        self.sha = uuid.UUID(int=rng.getrandbits(128)).hex * 2
        self.phash, self.dhash, self.mirror = rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(64)

    def near_copy(self, rng: random.Random, phash_bits: int = 3, dhash_bits: int = 2) -> _Image:
        copy = _Image(rng)
        copy.phash = _flip(self.phash, rng.sample(range(64), phash_bits))
        copy.dhash = _flip(self.dhash, rng.sample(range(64), dhash_bits))
        copy.mirror = _flip(self.mirror, rng.sample(range(64), phash_bits))
        return copy

    def mirrored_copy(self, rng: random.Random) -> _Image:
        copy = _Image(rng)
        copy.phash, copy.mirror = _flip(self.mirror, [5]), _flip(self.phash, [9])
        return copy

    def register(self, service: DuplicateService, tenant: str, job: str, image: str) -> DuplicateHit:
        return service.register_image(
            tenant, job, image, self.sha, _hex(self.phash), _hex(self.dhash), _hex(self.mirror)
        )


def _member_keys(groups: Sequence[DuplicateGroup]) -> list[list[str]]:
    return [[m.key for m in g.members] for g in groups]


# --- the store contract ---------------------------------------------------------------------------


def test_claim_sha256_first_claim_wins_and_redelivery_is_not_a_duplicate(store: DuplicateIndexStore) -> None:
    tenant, first, second = _tenant(), LibraryImage(job_id="j1", image_id="0"), LibraryImage(job_id="j2", image_id="7")

    assert store.claim_sha256(tenant, "ab" * 32, first) == first
    assert store.claim_sha256(tenant, "ab" * 32, second) == first
    assert store.claim_sha256(tenant, "ab" * 32, first) == first
    assert store.claim_sha256(_tenant(), "ab" * 32, second) == second, "tenants are separate"


def test_concurrent_claims_agree_on_one_holder(store: DuplicateIndexStore) -> None:
    tenant, sha = _tenant(), "cd" * 32
    refs = [LibraryImage(job_id="j", image_id=str(i)) for i in range(6)]
    barrier = threading.Barrier(len(refs))
    holders: list[LibraryImage] = []

    def claim(ref: LibraryImage) -> None:
        barrier.wait()
        holders.append(store.claim_sha256(tenant, sha, ref))

    threads = [threading.Thread(target=claim, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(holders) == len(refs) and len(set(holders)) == 1 and holders[0] in refs


def test_band_candidates_are_exactly_the_entries_sharing_a_probed_band_value(store: DuplicateIndexStore) -> None:
    tenant = _tenant()

    def put(image_id: str, bands: tuple[int, ...], scheme: str = "4x64", tenant_id: str = tenant) -> None:
        entry = IndexEntry(ref=LibraryImage(job_id="j", image_id=image_id), sha256=image_id * 64, bands=bands)
        entry.band_scheme = scheme
        store.put_entry(tenant_id, entry)

    put("a", (1, 2, 3, 4))
    put("b", (9, 9, 9, 4))
    put("c", (9, 9, 9, 9))
    put("d", (1, 2, 3, 4), scheme="5x64")
    put("e", (1, 2, 3, 4), tenant_id=_tenant())

    probe = (frozenset({1}), frozenset({7}), frozenset({7}), frozenset({4, 5}))
    found = sorted(e.ref.image_id for e in store.find_band_candidates(tenant, "4x64", probe))

    assert found == ["a", "b"]


def test_band_candidates_asked_whole_carry_their_matches_and_group_keys(store: DuplicateIndexStore) -> None:
    tenant = _tenant()
    entry = IndexEntry(ref=LibraryImage(job_id="j", image_id="a"), sha256="a" * 64, bands=(1, 2, 3, 4))
    entry.band_scheme = "4x64"
    entry.matches = [Match(ref=LibraryImage(job_id="k", image_id="b"), kind=MatchKind.EXACT)]
    store.put_entry(tenant, entry)
    store.add_group_key(tenant, "group-key", [entry.ref])
    probe: tuple[frozenset[int], ...] = (frozenset({1}), frozenset(), frozenset(), frozenset())

    [whole] = store.find_band_candidates(tenant, "4x64", probe, whole=True)
    [compared] = store.find_band_candidates(tenant, "4x64", probe)

    assert whole.matches == entry.matches and whole.group_keys == ("group-key",)
    assert (compared.sha256, compared.bands, compared.band_scheme) == ("a" * 64, (1, 2, 3, 4), "4x64")


def test_hundreds_of_candidates_and_job_entries_come_back_in_full(store: DuplicateIndexStore) -> None:
    tenant = _tenant()
    for index in range(250):
        entry = IndexEntry(ref=LibraryImage(job_id="big", image_id=f"{index:03d}"), sha256=f"{index:064x}")
        entry.bands, entry.band_scheme = (7, index % 64, index % 64, index % 64), "4x64"
        store.put_entry(tenant, entry)

    probe: tuple[frozenset[int], ...] = (frozenset({7}), frozenset(), frozenset(), frozenset())
    assert len(store.find_band_candidates(tenant, "4x64", probe)) == 250
    assert len(list(store.job_entries(tenant, "big"))) == 250


def test_job_entries_lists_one_job_and_filters_matched(store: DuplicateIndexStore) -> None:
    tenant, service = _tenant(), DuplicateService(store)
    rng = random.Random(1)
    original = _Image(rng)
    original.register(service, tenant, "job-1", "0")
    original.near_copy(rng).register(service, tenant, "job-1", "1")
    _Image(rng).register(service, tenant, "job-1", "2")
    _Image(rng).register(service, tenant, "job-2", "0")

    assert sorted(e.ref.image_id for e in store.job_entries(tenant, "job-1")) == ["0", "1", "2"]
    assert [e.ref.image_id for e in store.job_entries(tenant, "job-1", matched_only=True)] == ["1"]


def test_put_entry_replaces(store: DuplicateIndexStore) -> None:
    tenant, ref = _tenant(), LibraryImage(job_id="j/odd?#id", image_id="x")
    store.put_entry(tenant, IndexEntry(ref=ref, sha256="1" * 64))
    store.put_entry(tenant, IndexEntry(ref=ref, sha256="2" * 64))

    assert [e.sha256 for e in store.job_entries(tenant, "j/odd?#id")] == ["2" * 64]


# --- the service ----------------------------------------------------------------------------------


def test_exact_duplicates_by_sha256(store: DuplicateIndexStore) -> None:
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(2)
    image = _Image(rng)

    assert not image.register(service, tenant, "job", "0").is_duplicate
    hit = image.register(service, tenant, "job", "1")

    assert hit.exact_of == LibraryImage(job_id="job", image_id="0")
    groups = service.duplicate_groups(tenant, "job")
    assert _member_keys(groups) == [["job/0", "job/1"]]
    assert [p.kind for p in groups[0].pairs] == [MatchKind.EXACT]


def test_copies_of_one_image_stay_out_of_the_band_index(store: DuplicateIndexStore) -> None:
    """Every copy of a popular image joins the first one's group, but only the first is a near candidate: look-ups
    stay as cheap as for one image, however many copies the library holds."""
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(12)
    image = _Image(rng)
    image.register(service, tenant, "job", "0")
    copies = [image.register(service, tenant, "job", str(index)) for index in range(1, 6)]
    near = image.near_copy(rng).register(service, tenant, "job", "6")

    assert [(hit.exact_of, hit.near) for hit in copies] == [(LibraryImage(job_id="job", image_id="0"), [])] * 5
    assert [m.ref.image_id for m in near.near] == ["0"]
    probe = service.band_scheme.probe(image.phash, image.mirror)
    assert [c.ref.image_id for c in store.find_band_candidates(tenant, service.band_scheme.name, probe)] == ["0", "6"]
    expected = [[f"job/{index}" for index in range(7)]]
    assert _member_keys(service.duplicate_groups(tenant, "job")) == expected
    assert _member_keys(service.reconcile_job(tenant, "job")) == expected


def test_exact_duplicates_without_perceptual_hashes(store: DuplicateIndexStore) -> None:
    tenant, service = _tenant(), DuplicateService(store)
    service.register_image(tenant, "job", "0", "e" * 64)
    hit = service.register_image(tenant, "job", "1", "e" * 64)

    assert hit.exact_of == LibraryImage(job_id="job", image_id="0")
    assert _member_keys(service.reconcile_job(tenant, "job")) == [["job/0", "job/1"]]


def test_near_and_mirrored_duplicates_join_one_group_unrelated_images_do_not(store: DuplicateIndexStore) -> None:
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(3)
    original = _Image(rng)
    original.register(service, tenant, "job", "0")
    near = original.near_copy(rng, phash_bits=8, dhash_bits=20).register(service, tenant, "job", "1")
    combined = original.near_copy(rng, phash_bits=10, dhash_bits=8).register(service, tenant, "job", "2")
    mirrored = original.mirrored_copy(rng).register(service, tenant, "job", "3")
    too_far = original.near_copy(rng, phash_bits=11, dhash_bits=0).register(service, tenant, "job", "4")
    for index in range(5, 25):
        _Image(rng).register(service, tenant, "job", str(index))

    assert [m.phash_distance for m in near.near] == [8]
    assert any(m.ref.image_id == "0" for m in combined.near)
    assert [(m.ref.image_id, m.mirrored) for m in mirrored.near] == [("0", True)]
    assert not any(m.ref.image_id == "0" for m in too_far.near)
    groups = service.duplicate_groups(tenant, "job")
    assert len(groups) == 1
    assert {"job/0", "job/1", "job/2", "job/3"} <= set(_member_keys(groups)[0])
    assert "job/5" not in _member_keys(groups)[0]


def test_duplicates_across_the_tenants_library(store: DuplicateIndexStore) -> None:
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(4)
    original = _Image(rng)
    original.register(service, tenant, "old-job", "0")
    hit = original.near_copy(rng).register(service, tenant, "new-job", "0")
    original.near_copy(rng).register(service, _tenant(), "other-tenant-job", "0")

    assert [m.ref for m in hit.near] == [LibraryImage(job_id="old-job", image_id="0")]
    assert _member_keys(service.duplicate_groups(tenant, "new-job")) == [["new-job/0", "old-job/0"]]


def test_redelivered_registration_is_idempotent(store: DuplicateIndexStore) -> None:
    tenant, service, rng = _tenant(), DuplicateService(store), random.Random(5)
    original, copy = _Image(rng), None
    original.register(service, tenant, "job", "0")
    copy = original.near_copy(rng)
    first = copy.register(service, tenant, "job", "1")
    again = copy.register(service, tenant, "job", "1")
    assert not original.register(service, tenant, "job", "0").exact_of

    assert first.near == again.near
    assert len(list(store.job_entries(tenant, "job"))) == 2
    assert _member_keys(service.reconcile_job(tenant, "job")) == [["job/0", "job/1"]]


class _BlindStore:
    """A store whose look-ups see nothing yet: what a registration racing another one (on a replica that has not
    caught up) can observe."""

    def __init__(self, inner: DuplicateIndexStore) -> None:
        self._inner = inner

    def claim_sha256(self, tenant_id: str, sha256: str, ref: LibraryImage) -> LibraryImage:
        return self._inner.claim_sha256(tenant_id, sha256, ref)

    def put_entry(self, tenant_id: str, entry: IndexEntry) -> None:
        self._inner.put_entry(tenant_id, entry)

    def set_matches(self, tenant_id: str, ref: LibraryImage, matches: Sequence[Match]) -> None:
        self._inner.set_matches(tenant_id, ref, matches)

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]], *, whole: bool = False
    ) -> list[IndexEntry]:
        return []

    def job_entries(self, tenant_id: str, job_id: str, *, matched_only: bool = False) -> Iterator[IndexEntry]:
        return self._inner.job_entries(tenant_id, job_id, matched_only=matched_only)

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        return self._inner.entries_written_since(tenant_id, since_epoch)

    def entries_by_ref(self, tenant_id: str, refs: Collection[LibraryImage]) -> Iterator[IndexEntry]:
        return self._inner.entries_by_ref(tenant_id, refs)

    def entries_in_groups(self, tenant_id: str, group_keys: Collection[str]) -> Iterator[IndexEntry]:
        return self._inner.entries_in_groups(tenant_id, group_keys)

    def add_group_key(self, tenant_id: str, group_key: str, refs: Collection[LibraryImage]) -> None:
        self._inner.add_group_key(tenant_id, group_key, refs)


class _CountingStore(_BlindStore):
    """Sees everything; counts candidate look-ups."""

    look_ups = 0

    def find_band_candidates(
        self, tenant_id: str, band_scheme: str, probe: Sequence[frozenset[int]], *, whole: bool = False
    ) -> list[IndexEntry]:
        self.look_ups += 1
        return self._inner.find_band_candidates(tenant_id, band_scheme, probe, whole=whole)


class _WindowCountingStore(_CountingStore):
    """Counts reads of the tenant's recent window too."""

    window_reads = 0

    def entries_written_since(self, tenant_id: str, since_epoch: float | None) -> Iterator[IndexEntry]:
        self.window_reads += 1
        return self._inner.entries_written_since(tenant_id, since_epoch)


def test_reconcile_finds_pairs_that_racing_registrations_missed(store: DuplicateIndexStore) -> None:
    tenant, rng, started = _tenant(), random.Random(6), time.time()
    racing = DuplicateService(_BlindStore(store))
    original = _Image(rng)
    original.register(racing, tenant, "job", "0")
    original.near_copy(rng).register(racing, tenant, "job", "1")
    original.mirrored_copy(rng).register(racing, tenant, "job", "2")
    service = DuplicateService(store)
    assert service.duplicate_groups(tenant, "job") == []

    groups = service.reconcile_job(tenant, "job", racing_since=started - 1)

    assert _member_keys(groups) == [["job/0", "job/1", "job/2"]]
    assert _member_keys(service.duplicate_groups(tenant, "job")) == [["job/0", "job/1", "job/2"]]
    assert _member_keys(service.reconcile_job(tenant, "job")) == [["job/0", "job/1", "job/2"]], "idempotent"


def test_reconcile_reads_the_window_once_instead_of_a_look_up_an_image(store: DuplicateIndexStore) -> None:
    tenant, rng = _tenant(), random.Random(7)
    counting = _CountingStore(store)
    service = DuplicateService(counting)
    original = _Image(rng)
    original.register(service, tenant, "job", "0")
    copies = SMALL_JOB_LOOK_UPS + 3  # a job larger than the small-job path takes
    for index in range(1, copies + 1):
        original.near_copy(rng).register(service, tenant, "job", str(index))
    counting.look_ups = 0

    groups = service.reconcile_job(tenant, "job", racing_since=time.time() - 60)

    assert _member_keys(groups) == [sorted(f"job/{i}" for i in range(copies + 1))]
    assert counting.look_ups == 0


def test_a_small_jobs_reconcile_repeats_its_look_ups_instead_of_reading_the_tenants_window(
    store: DuplicateIndexStore,
) -> None:
    tenant, rng, started = _tenant(), random.Random(8), time.time()
    racing = DuplicateService(_BlindStore(store))  # registrations that saw nothing of each other
    original = _Image(rng)
    original.register(racing, tenant, "earlier-job", "0")
    for job in range(30):  # busy neighbours: unrelated one-image jobs written meanwhile
        _Image(rng).register(racing, tenant, f"other-{job}", "0")
    original.near_copy(rng).register(racing, tenant, "job", "0")
    counting = _WindowCountingStore(store)

    groups = DuplicateService(counting).reconcile_job(tenant, "job", racing_since=started - 1)

    assert _member_keys(groups) == [["earlier-job/0", "job/0"]]
    assert counting.window_reads == 0 and counting.look_ups == 1


class _RefReadCountingStore(_CountingStore):
    """Counts the entries asked for by reference too."""

    refs_read = 0

    def entries_by_ref(self, tenant_id: str, refs: Collection[LibraryImage]) -> Iterator[IndexEntry]:
        self.refs_read += len(refs)
        return self._inner.entries_by_ref(tenant_id, refs)


def test_a_small_jobs_look_up_reads_its_candidates_whole_and_nothing_again(store: DuplicateIndexStore) -> None:
    tenant, rng, started = _tenant(), random.Random(9), time.time()
    racing = DuplicateService(_BlindStore(store))  # registrations that saw nothing of each other
    original = _Image(rng)
    original.register(racing, tenant, "earlier-job", "0")
    original.near_copy(rng).register(racing, tenant, "job", "0")
    _Image(rng).register(racing, tenant, "job", "1")  # met nothing
    counting = _RefReadCountingStore(store)

    groups = DuplicateService(counting).reconcile_job(tenant, "job", racing_since=started - 1)

    assert _member_keys(groups) == [["earlier-job/0", "job/0"]]
    assert counting.look_ups == 2, "the racing look-ups are repeated, one an image"
    assert counting.refs_read == 0, "the look-ups brought the candidates whole: none is read a second time"


def test_entries_written_since_splits_at_the_write_time(store: DuplicateIndexStore) -> None:
    tenant = _tenant()
    store.put_entry(tenant, IndexEntry(ref=LibraryImage(job_id="j", image_id="old"), sha256="1" * 64))
    time.sleep(1.1 - time.time() % 1 + 0.05)  # the service's write times are whole seconds: cross a boundary
    since = time.time()
    store.put_entry(tenant, IndexEntry(ref=LibraryImage(job_id="j", image_id="new"), sha256="2" * 64))

    assert [e.ref.image_id for e in store.entries_written_since(tenant, since)] == ["new"]
    assert sorted(e.ref.image_id for e in store.entries_written_since(tenant, None)) == ["new", "old"]
    assert list(store.entries_written_since(_tenant(), None)) == []


def test_two_workers_registering_near_duplicates_at_once_end_in_one_group(store: DuplicateIndexStore) -> None:
    tenant, rng = _tenant(), random.Random(100)
    pairs: list[tuple[_Image, _Image]] = []
    for _ in range(6):
        original = _Image(rng)
        pairs.append((original, original.near_copy(rng) if len(pairs) % 2 else original.mirrored_copy(rng)))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(side: int) -> None:
        service = DuplicateService(store)  # each worker its own service, as separate processes would have
        try:
            for number, pair in enumerate(pairs):
                barrier.wait(timeout=30)  # both halves of each pair are registered at the same moment
                pair[side].register(service, tenant, "job", f"{number}.{side}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(side,)) for side in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    service = DuplicateService(store)
    expected = [[f"job/{number}.0", f"job/{number}.1"] for number in range(len(pairs))]
    # Both stores show acknowledged writes at once, so writing the entry before looking up already finds every
    # pair; reconciliation covers stores whose reads lag (Cosmos replicas).
    assert _member_keys(service.duplicate_groups(tenant, "job")) == expected
    assert _member_keys(service.reconcile_job(tenant, "job")) == expected
