"""The authenticator's tenant cache: brief, bounded, and unable to be grown by made-up ids from request headers.

A stand-in store counts look-ups (pure cache logic; the real store's get_tenant is covered on the emulator)."""

from __future__ import annotations

import functools
import threading
from typing import cast

import pytest

from shared.adapters.job_store import CosmosJobStore
from shared.errors import Unauthorized
from shared.models import TenantDocument, utcnow
from shared.services import tenants
from shared.services.tenants import KEY_PREFIX, TenantAuthenticator, _hash_secret


class _Store:
    def __init__(self, *known: TenantDocument) -> None:
        self.tenants = {t.tenant_id: t for t in known}
        self.reads: list[str] = []

    def get_tenant(self, tenant_id: str) -> TenantDocument | None:
        self.reads.append(tenant_id)
        return self.tenants.get(tenant_id)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tenant(tenant_id: str, secret: str = "s3cret") -> TenantDocument:
    return TenantDocument(
        id=tenant_id,
        tenantId=tenant_id,
        name=tenant_id,
        tier="free",
        keyHash=_hash_secret(secret),
        callbackSecret="cb",
        created_at=utcnow(),
    )


def _authenticator(store: _Store, clock: _Clock | None = None) -> TenantAuthenticator:
    return TenantAuthenticator(cast(CosmosJobStore, store), clock=clock or _Clock())


def _key(tenant_id: str, secret: str = "s3cret") -> str:
    return f"Bearer {KEY_PREFIX}{tenant_id}.{secret}"


def test_a_tenant_is_read_once_within_the_cache_time_and_again_after_it() -> None:
    store, clock = _Store(_tenant("tknown")), _Clock()
    auth = _authenticator(store, clock)
    for _ in range(3):
        assert auth.authenticate(_key("tknown"), None).tenant_id == "tknown"
    assert store.reads == ["tknown"]
    clock.now += tenants._CACHE_SECONDS + 1
    auth.authenticate(_key("tknown"), None)
    assert store.reads == ["tknown", "tknown"]


def test_a_wrong_secret_is_refused_from_the_cache_too() -> None:
    store = _Store(_tenant("tknown"))
    auth = _authenticator(store)
    auth.authenticate(_key("tknown"), None)
    with pytest.raises(Unauthorized) as refused:
        auth.authenticate(_key("tknown", "guess"), None)
    assert refused.value.code == "unauthorized" and store.reads == ["tknown"]


def test_an_unknown_id_is_remembered_briefly_so_a_repeated_bad_key_costs_no_read() -> None:
    store, clock = _Store(), _Clock()
    auth = _authenticator(store, clock)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            auth.authenticate(None, f"{KEY_PREFIX}tnobody.x")
    assert store.reads == ["tnobody"]
    clock.now += tenants._CACHE_SECONDS + 1
    with pytest.raises(Unauthorized):
        auth.authenticate(None, f"{KEY_PREFIX}tnobody.x")
    assert store.reads == ["tnobody", "tnobody"]


def test_ids_that_cannot_be_tenant_ids_are_neither_read_nor_cached() -> None:
    store = _Store()
    auth = _authenticator(store)
    with pytest.raises(Unauthorized):
        auth.authenticate(_key("not-an-id/../x"), None)
    assert store.reads == [] and auth.cached() == (0, 0)


def test_a_flood_of_made_up_ids_stays_bounded_and_never_evicts_a_real_tenant() -> None:
    store = _Store(_tenant("tknown"))
    auth = _authenticator(store)
    auth.authenticate(_key("tknown"), None)
    for n in range(tenants.UNKNOWN_IDS_CACHED * 3):
        with pytest.raises(Unauthorized):
            auth.authenticate(_key(f"tmadeup{n}"), None)
    known, unknown = auth.cached()
    assert known == 1 and unknown == tenants.UNKNOWN_IDS_CACHED
    reads = len(store.reads)
    auth.authenticate(_key("tknown"), None)
    assert len(store.reads) == reads  # still cached


def test_known_tenants_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenants, "KNOWN_TENANTS_CACHED", 5)
    store = _Store(*(_tenant(f"t{n}") for n in range(12)))
    auth = _authenticator(store)
    for n in range(12):
        auth.authenticate(_key(f"t{n}"), None)
    assert auth.cached() == (5, 0)


def test_the_http_edge_builds_one_authenticator_however_many_threads_ask_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions import http

    built: list[object] = []
    gate = threading.Event()

    def build() -> TenantAuthenticator:
        gate.wait(5)  # every thread is inside before the first build finishes
        built.append(object())
        return _authenticator(_Store())

    monkeypatch.setattr(http, "_build_authenticator", functools.cache(build))
    seen: list[TenantAuthenticator] = []
    threads = [threading.Thread(target=lambda: seen.append(http.authenticator())) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(built) == 1 and len({id(a) for a in seen}) == 1 and len(seen) == 8
