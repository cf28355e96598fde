"""Tenants and their API keys.

A key looks like `ipk_<tenantId>.<secret>`: the tenant id finds the tenant document by a point read, and the
secret is compared, in constant time, with the SHA-256 stored there (keys are random 256-bit values, so a fast
hash is enough; the plain key is shown once, at creation, and never stored).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

from shared.adapters.job_store import JobStorePort
from shared.config import Tier
from shared.errors import InvalidRequest, unauthorized
from shared.models import TenantDocument, utcnow

KEY_PREFIX = "ipk_"
_CACHE_SECONDS = 30.0
# Tenant ids come from request headers, so anyone can send new ones: both caches are bounded. Known tenants are few
# and their documents small; ids that name no tenant are cached too (a repeated bad key costs no read), in a cache of
# their own, so a flood of made-up ids evicts only other made-up ids, never a real tenant.
KNOWN_TENANTS_CACHED = 10_000
UNKNOWN_IDS_CACHED = 1_000


@dataclass(frozen=True)
class NewTenant:
    tenant: TenantDocument
    api_key: str


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(store: JobStorePort, name: str, tier: str) -> NewTenant:
    try:
        tier_value = Tier(tier)
    except ValueError:
        raise InvalidRequest("invalid_tier", f"tier must be one of {', '.join(t.value for t in Tier)}") from None
    tenant_id = f"t{secrets.token_hex(6)}"
    secret = secrets.token_urlsafe(32)
    tenant = TenantDocument(
        id=tenant_id,
        tenantId=tenant_id,
        name=name,
        tier=tier_value.value,
        keyHash=_hash_secret(secret),
        callbackSecret=secrets.token_urlsafe(32),
        created_at=utcnow(),
    )
    if not store.create_tenant(tenant):
        raise RuntimeError("tenant id collision; try again")
    return NewTenant(tenant=tenant, api_key=f"{KEY_PREFIX}{tenant_id}.{secret}")


class TenantAuthenticator:
    """Resolves `Authorization: Bearer <key>` (or `x-api-key`) to a tenant, caching tenant documents briefly."""

    def __init__(self, store: JobStorePort, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._known: TTLCache[str, TenantDocument] = TTLCache(KNOWN_TENANTS_CACHED, _CACHE_SECONDS, timer=clock)
        self._unknown: TTLCache[str, bool] = TTLCache(UNKNOWN_IDS_CACHED, _CACHE_SECONDS, timer=clock)
        self._lock = threading.Lock()  # the caches are not thread-safe

    def authenticate(self, authorization: str | None, api_key_header: str | None) -> TenantDocument:
        key = api_key_header or ""
        if authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key.startswith(KEY_PREFIX) or "." not in key:
            raise unauthorized()
        tenant_id, _, secret = key[len(KEY_PREFIX) :].partition(".")
        tenant = self._tenant(tenant_id)
        if tenant is None or tenant.disabled or not hmac.compare_digest(tenant.key_hash, _hash_secret(secret)):
            raise unauthorized()
        return tenant

    def cached(self) -> tuple[int, int]:
        """How many known tenants and unknown ids are cached now (tests and diagnostics)."""
        with self._lock:
            return len(self._known), len(self._unknown)

    def _tenant(self, tenant_id: str) -> TenantDocument | None:
        if not tenant_id.isalnum():
            return None  # no tenant has such an id: nothing to read, nothing to remember
        with self._lock:
            hit = self._known.get(tenant_id)
            if hit is not None or tenant_id in self._unknown:
                return hit
        tenant = self._store.get_tenant(tenant_id)
        with self._lock:
            if tenant is None:
                self._unknown[tenant_id] = True
            else:
                self._known[tenant_id] = tenant
        return tenant
