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
from dataclasses import dataclass

from shared.adapters.job_store import CosmosJobStore
from shared.config import Tier
from shared.errors import InvalidRequest, unauthorized
from shared.models import TenantDocument, utcnow

KEY_PREFIX = "ipk_"
_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class NewTenant:
    tenant: TenantDocument
    api_key: str


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(store: CosmosJobStore, name: str, tier: str) -> NewTenant:
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

    def __init__(self, store: CosmosJobStore) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, TenantDocument | None]] = {}
        self._lock = threading.Lock()

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

    def _tenant(self, tenant_id: str) -> TenantDocument | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant_id)
        if hit and now - hit[0] < _CACHE_SECONDS:
            return hit[1]
        tenant = self._store.get_tenant(tenant_id) if tenant_id.isalnum() else None
        with self._lock:
            self._cache[tenant_id] = (now, tenant)
        return tenant
