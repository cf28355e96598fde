"""API rate limits: a token bucket per tenant (its tier's rate and burst) shared by every process and instance.

Each authenticated API call takes one token from the tenant's bucket (`api:<tenant>` in the Cosmos `limits`
container): one point read and, when a token is granted, one etag-guarded write. A refused call writes nothing.
The answer carries the RateLimit headers (draft-ietf-httpapi-ratelimit-headers): RateLimit-Limit (the burst),
RateLimit-Remaining, RateLimit-Reset (seconds until the bucket is full again), RateLimit-Policy; a refusal is a 429
`rate_limited` with Retry-After. If Cosmos cannot be reached the call is let through (the limiter never takes the
API down with it). So is a call that lost every etag race for the bucket: only granted takes write, so losing races
means others are being granted tokens, i.e. the bucket is not empty; an empty bucket is read-only and refuses
without contention, so what slips through this way is bounded by the tokens there were.
"""

from __future__ import annotations

import logging
import math

from shared.config import Tier
from shared.errors import ApiError
from shared.limits.bucket import BucketLimits, SharedBuckets, Take
from shared.limits.versioned import Contended
from shared.models import RateLimitUsage, TenantDocument
from shared.services.context import AppContext

log = logging.getLogger(__name__)

API_BUCKET_TTL_SECONDS = 3600  # an idle tenant's bucket document expires (a missing one means a full bucket)


def api_bucket_key(tenant_id: str) -> str:
    return f"api:{tenant_id}"


def api_limits(ctx: AppContext, tenant: TenantDocument) -> BucketLimits:
    rate, burst = ctx.settings.api_rate_of(Tier(tenant.tier))
    return BucketLimits(rate=rate, burst=burst)


def rate_limit_headers(took: Take) -> dict[str, str]:
    limits = took.limits
    window = math.ceil(limits.burst / limits.rate)
    return {
        "RateLimit-Limit": str(int(limits.burst)),
        "RateLimit-Remaining": str(max(0, math.floor(took.remaining))),
        "RateLimit-Reset": str(math.ceil(took.full_in)),
        "RateLimit-Policy": f"{int(limits.burst)};w={window}",
    }


def check_api_rate(ctx: AppContext, tenant: TenantDocument) -> dict[str, str]:
    """Takes a token for this call; returns the RateLimit headers, or raises the 429 `rate_limited` ApiError."""
    limits = api_limits(ctx, tenant)
    if limits.unlimited:
        return {}
    buckets = SharedBuckets(ctx.limits, ttl_seconds=API_BUCKET_TTL_SECONDS)
    try:
        took = buckets.take(api_bucket_key(tenant.tenant_id), limits)
    except Contended:
        log.info("rate limiter: tenant %s's bucket is contended; letting the call through", tenant.tenant_id)
        return {}
    except Exception:
        log.warning("rate limiter unavailable for tenant %s; letting the call through", tenant.tenant_id, exc_info=True)
        return {}
    headers = rate_limit_headers(took)
    if took.allowed:
        return headers
    retry_after = max(1, math.ceil(took.retry_after))
    raise ApiError(
        429,
        "rate_limited",
        f"too many requests: your tier allows {limits.rate:g} requests a second with bursts of {limits.burst:g}; "
        f"retry after {retry_after} s",
        {"limit": "api_requests", "rate_per_second": limits.rate, "burst": limits.burst, "retry_after": retry_after},
        headers={**headers, "Retry-After": str(retry_after)},
    )


def api_rate_usage(ctx: AppContext, tenant: TenantDocument) -> RateLimitUsage:
    limits = api_limits(ctx, tenant)
    left = SharedBuckets(ctx.limits).peek(api_bucket_key(tenant.tenant_id), limits)
    return RateLimitUsage(requests_per_second=limits.rate, burst=limits.burst, remaining=math.floor(left))
