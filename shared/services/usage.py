"""GET /api/usage: a tenant's limits (rate limit, quotas) and its use of them now."""

from __future__ import annotations

from shared.config import Tier
from shared.limits.api_rate import api_rate_usage
from shared.limits.quotas import current_use, day, next_midnight, still_active
from shared.messages import usage_key
from shared.models import QuotaUsage, TenantDocument, UsageQuotas, UsageReport, utcnow
from shared.services.context import AppContext


def usage_report(ctx: AppContext, tenant: TenantDocument) -> UsageReport:
    """GET /api/usage: the tenant's limits and its use of them now."""
    max_active, max_daily = ctx.settings.quotas_of(Tier(tenant.tier))
    now = utcnow()
    found = ctx.limits.read(usage_key(tenant.tenant_id))
    active, used = current_use(found[0] if found else None, day(now))
    return UsageReport(
        tenant_id=tenant.tenant_id,
        tier=tenant.tier,
        rate_limit=api_rate_usage(ctx.limits, ctx.settings, tenant),
        quotas=UsageQuotas(
            active_jobs=QuotaUsage(limit=max_active, used=len(still_active(ctx.store, active))),
            images_per_day=QuotaUsage(limit=max_daily, used=used, resets_at=next_midnight(now)),
        ),
    )
