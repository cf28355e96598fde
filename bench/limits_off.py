"""Settings that switch the tenant limits off for benchmarks that measure the pipeline (thousands of submits from
one tenant, every image from one local host): the limits are measured by bench/limits_bench.py instead."""

NO_TENANT_LIMITS = {
    "TIER_API_RATE": "new=0,enterprise=0,free=0",
    "TIER_API_BURST": "new=1,enterprise=1,free=1",
    "TIER_MAX_ACTIVE_JOBS": "new=0,enterprise=0,free=0",
    "TIER_MAX_IMAGES_PER_DAY": "new=0,enterprise=0,free=0",
    "FETCH_HOST_RATE_PER_SECOND": "0",
    "FETCH_HOST_CONCURRENCY": "64",
}
