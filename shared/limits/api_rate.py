"""API rate limits: a token bucket per tenant (its tier's rate and burst) shared by every process and instance.

Each authenticated API call takes one token from the tenant's bucket (`api:<tenant>` in the Cosmos `limits`
container): one point read and, when a token is granted, one etag-guarded write. A refused call writes nothing.
The take is what the edge turns into the RateLimit headers (functions/http.py); a refusal raises `rate_limited`
(RateLimited, carrying the refused take and when to retry). If Cosmos cannot be reached the call is let through
(the limiter never takes the API down with it). So is a call that lost every etag race for the bucket: only granted
takes write, so losing races means others are being granted tokens, i.e. the bucket is not empty; an empty bucket is
read-only and refuses without contention, so what slips through this way is bounded by the tokens there were.
"""

from __future__ import annotations

import logging
import math

from shared.config import Settings, Tier
from shared.errors import RateLimited
from shared.limits.bucket import BucketLimits, SharedBuckets, Take
from shared.limits.versioned import Contended, VersionedStore
from shared.messages import api_bucket_key
from shared.models import RateLimitUsage, TenantDocument

log = logging.getLogger(__name__)

API_BUCKET_TTL_SECONDS = 3600  # an idle tenant's bucket document expires (a missing one means a full bucket)


def api_limits(settings: Settings, tenant: TenantDocument) -> BucketLimits:
    rate, burst = settings.api_rate_of(Tier(tenant.tier))
    return BucketLimits(rate=rate, burst=burst)


def check_api_rate(store: VersionedStore, settings: Settings, tenant: TenantDocument) -> Take | None:
    """Takes a token for this call: the take granted (None when the tenant is unlimited or the call was let through
    unmetered), or raises `rate_limited`."""
    limits = api_limits(settings, tenant)
    if limits.unlimited:
        return None
    buckets = SharedBuckets(store, ttl_seconds=API_BUCKET_TTL_SECONDS)
    try:
        took = buckets.take(api_bucket_key(tenant.tenant_id), limits)
    except Contended:
        log.info("rate limiter: tenant %s's bucket is contended; letting the call through", tenant.tenant_id)
        return None
    except Exception:
        log.warning("rate limiter unavailable for tenant %s; letting the call through", tenant.tenant_id, exc_info=True)
        return None
    if took.allowed:
        return took
    retry_after = max(1, math.ceil(took.retry_after))
    raise RateLimited(
        "rate_limited",
        f"too many requests: your tier allows {limits.rate:g} requests a second with bursts of {limits.burst:g}; "
        f"retry after {retry_after} s",
        {"limit": "api_requests", "rate_per_second": limits.rate, "burst": limits.burst, "retry_after": retry_after},
        retry_after,
        took,
    )


def api_rate_usage(store: VersionedStore, settings: Settings, tenant: TenantDocument) -> RateLimitUsage:
    limits = api_limits(settings, tenant)
    left = SharedBuckets(store).peek(api_bucket_key(tenant.tenant_id), limits)
    return RateLimitUsage(requests_per_second=limits.rate, burst=limits.burst, remaining=math.floor(left))
