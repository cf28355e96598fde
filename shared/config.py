"""Settings from the environment, validated once at start-up.

The environment variable names are the ones Azure Functions uses (app settings locally come from
`local.settings.json`'s `Values`). Every name read here is listed in `local.settings.example.json` and set by
`infra/bicep/`; `tests/infra/test_drift.py` keeps the three in step.

Names of queues and containers are fixed here rather than configurable: the Bicep declares exactly these.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from shared.imaging.options import THUMBNAIL_SIZE_MAX, THUMBNAIL_SIZE_MIN


class Lane(StrEnum):
    """A priority lane: one session-enabled Service Bus queue each."""

    HIGH = "high"
    STANDARD = "standard"
    BULK = "bulk"

    @property
    def queue_name(self) -> str:
        """The lane's session-enabled queue: chunks of jobs with more than one chunk, capped and interleaved."""
        return f"chunks-{self.value}"

    @property
    def express_queue_name(self) -> str:
        """The lane's session-free queue for jobs of one chunk: such a job cannot exceed any cap, so it needs no
        session of its own, and its consumers never wait for a session hand-over between jobs."""
        return f"express-{self.value}"


class Tier(StrEnum):
    """A tenant's tier. The seeds' priority order: new users > enterprise > free."""

    NEW = "new"
    ENTERPRISE = "enterprise"
    FREE = "free"


# Service Bus queues: one session-enabled queue and one express queue per lane, the manifest expander, and the
# follow-ups of a finished job (duplicate reconciliation, callbacks).
EXPAND_QUEUE = "jobs-expand"
FINISH_QUEUE = "jobs-finish"
LANE_QUEUES: tuple[str, ...] = tuple(lane.queue_name for lane in Lane)
EXPRESS_QUEUES: tuple[str, ...] = tuple(lane.express_queue_name for lane in Lane)
CHUNK_QUEUES: tuple[str, ...] = (*LANE_QUEUES, *EXPRESS_QUEUES)
ALL_QUEUES: tuple[str, ...] = (EXPAND_QUEUE, FINISH_QUEUE, *CHUNK_QUEUES)

# Blob containers.
ORIGINALS_CONTAINER = "originals"
THUMBNAILS_CONTAINER = "thumbnails"
MANIFESTS_CONTAINER = "manifests"
EXPORTS_CONTAINER = "exports"  # a finished job's results as JSON lines, built on request, read through a signed URL
ALL_CONTAINERS: tuple[str, ...] = (ORIGINALS_CONTAINER, THUMBNAILS_CONTAINER, MANIFESTS_CONTAINER, EXPORTS_CONTAINER)

# Cosmos DB containers and their partition key paths (more than one path: a hierarchical, MultiHash key).
COSMOS_CONTAINERS: dict[str, tuple[str, ...]] = {
    # A job's documents, by job and then by bucket: everything job-wide in bucket 0, image results in buckets of
    # IMAGES_PER_BUCKET, so a 10-million-image job (~18 GB of results) never nears a logical partition's 20 GB.
    "jobs": ("/jobId", "/bucket"),
    "tenants": ("/tenantId",),  # tenants and their hashed API keys
    "dedup": ("/tenantId",),  # exact (sha256) and near (hash band) duplicate index, per tenant
    "limits": ("/key",),  # shared rate-limit buckets (per tenant, per image host) and tenants' quota usage
}
IMAGES_PER_BUCKET = 1_000_000

# Setting names that are documented but consumed by the platform, not by this code.
PLATFORM_SETTINGS: tuple[str, ...] = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",  # the host's cap on a request body (the dev host honours it too)
)

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ConfigError(ValueError):
    """Raised once at start-up with every problem in the environment named."""


class Settings(BaseModel):
    """Every setting the app reads. Field aliases are the environment variable names."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    # --- connections -------------------------------------------------------------------------
    # Locally a connection string; in Azure the identity-based form `<name>__accountName` /
    # `<name>__fullyQualifiedNamespace` with the managed identity's client id in `<name>__clientId`.
    storage_connection: str | None = Field(default=None, alias="AzureWebJobsStorage")
    storage_account_name: str | None = Field(default=None, alias="AzureWebJobsStorage__accountName")
    storage_client_id: str | None = Field(default=None, alias="AzureWebJobsStorage__clientId")
    servicebus_connection: str | None = Field(default=None, alias="ServiceBusConnection")
    servicebus_namespace: str | None = Field(default=None, alias="ServiceBusConnection__fullyQualifiedNamespace")
    servicebus_client_id: str | None = Field(default=None, alias="ServiceBusConnection__clientId")
    # Local emulator only: where its administration (queue counts) endpoint listens.
    servicebus_admin_endpoint: str | None = Field(default=None, alias="SERVICEBUS_ADMIN_ENDPOINT")
    cosmos_endpoint: str = Field(alias="COSMOS_ENDPOINT")
    cosmos_key: str | None = Field(default=None, alias="COSMOS_KEY")  # local emulator only
    cosmos_client_id: str | None = Field(default=None, alias="COSMOS_CLIENT_ID")
    cosmos_database: str = Field(default="imagepipe", alias="COSMOS_DATABASE")
    # The local Cosmos emulator's certificate is self-signed. Honoured only for a loopback endpoint.
    cosmos_emulator_insecure_tls: bool = Field(default=False, alias="COSMOS_EMULATOR_INSECURE_TLS")

    # --- jobs ----------------------------------------------------------------------------------
    chunk_size: int = Field(default=500, ge=1, le=5000, alias="CHUNK_SIZE")
    max_inline_images: int = Field(default=10_000, ge=1, alias="MAX_INLINE_IMAGES")
    max_manifest_images: int = Field(default=10_000_000, ge=1, alias="MAX_MANIFEST_IMAGES")
    expand_batch_chunks: int = Field(default=200, ge=1, alias="EXPAND_BATCH_CHUNKS")
    # Per-job concurrency caps (chunks in flight at once, each in a session of its own) per tier, "tier=cap,..."
    tier_job_concurrency: str = Field(default="new=4,enterprise=8,free=2", alias="TIER_JOB_CONCURRENCY")
    # Tier -> lane mapping, "tier=lane,..."
    tier_lanes: str = Field(default="new=high,enterprise=standard,free=bulk", alias="TIER_LANES")
    status_timer_schedule: str = Field(default="*/5 * * * * *", alias="STATUS_TIMER_SCHEDULE")
    callback_max_attempts: int = Field(default=5, ge=1, alias="CALLBACK_MAX_ATTEMPTS")
    # The status timer rolls up only jobs whose documents changed; it works on that many at once, and on at most
    # STATUS_ROLLUP_MAX_JOBS a tick (the rest stay unseen and come first in the next tick).
    status_rollup_concurrency: int = Field(default=8, ge=1, le=64, alias="STATUS_ROLLUP_CONCURRENCY")
    status_rollup_max_jobs: int = Field(default=2000, ge=1, alias="STATUS_ROLLUP_MAX_JOBS")
    # How long a job's documents live: the `jobs` container's TTL in Azure (the Bicep's jobRetentionDays). A job's
    # entry in its tenant's job list (the `tenants` container) expires with it. -1: never (the local stack).
    job_retention_seconds: int = Field(default=-1, ge=-1, alias="JOB_RETENTION_SECONDS")
    # Dead-lettered chunks re-sent by one replay call (the answer says how many remain: call again).
    replay_batch_chunks: int = Field(default=500, ge=1, le=5000, alias="REPLAY_BATCH_CHUNKS")

    # --- tenant uploads and downloads (signed URLs for single blobs in the tenant's folders) --------------------
    upload_url_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600, alias="UPLOAD_URL_TTL_SECONDS")
    download_url_ttl_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600, alias="DOWNLOAD_URL_TTL_SECONDS")
    # A manifest sent as the body of POST /api/manifests (the host buffers a request body: keep it below
    # FUNCTIONS_REQUEST_BODY_SIZE_LIMIT).
    max_manifest_bytes: int = Field(default=64 * 1024 * 1024, ge=1, alias="MAX_MANIFEST_BYTES")
    # --- rate limits and quotas per tier ("tier=value,..."; README "Rate limits, quotas and polite fetching") ------
    # API requests per second and burst (a token bucket per tenant shared by every instance; 0 = no limit).
    tier_api_rate: str = Field(default="new=10,enterprise=50,free=2", alias="TIER_API_RATE")
    tier_api_burst: str = Field(default="new=30,enterprise=100,free=10", alias="TIER_API_BURST")
    # Jobs not yet finished at once, and images submitted per UTC day, per tenant.
    tier_max_active_jobs: str = Field(default="new=10,enterprise=100,free=3", alias="TIER_MAX_ACTIVE_JOBS")
    tier_max_images_per_day: str = Field(
        default="new=100000,enterprise=10000000,free=10000", alias="TIER_MAX_IMAGES_PER_DAY"
    )

    # --- fetching ------------------------------------------------------------------------------
    fetch_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1, alias="FETCH_MAX_BYTES")
    fetch_connect_timeout_seconds: float = Field(default=5.0, gt=0, alias="FETCH_CONNECT_TIMEOUT_SECONDS")
    fetch_read_timeout_seconds: float = Field(default=20.0, gt=0, alias="FETCH_READ_TIMEOUT_SECONDS")
    fetch_max_redirects: int = Field(default=5, ge=0, alias="FETCH_MAX_REDIRECTS")
    # Tests only: lets the SSRF guard accept 127.0.0.1 (and nothing else that it refuses).
    fetch_allow_loopback: bool = Field(default=False, alias="FETCH_ALLOW_LOOPBACK_FOR_TESTS")
    # Polite fetching: requests in flight to one host from one worker process; requests per second (and burst) to
    # one host from all workers together (0 = no shared rate), taken from the shared bucket FETCH_HOST_RATE_LEASE
    # at a time; attempts per image and the jittered back-off between them.
    fetch_host_concurrency: int = Field(default=4, ge=1, alias="FETCH_HOST_CONCURRENCY")
    fetch_host_rate_per_second: float = Field(default=50.0, ge=0, alias="FETCH_HOST_RATE_PER_SECOND")
    fetch_host_burst: int = Field(default=50, ge=1, alias="FETCH_HOST_BURST")
    fetch_host_rate_lease: int = Field(default=10, ge=1, alias="FETCH_HOST_RATE_LEASE")
    fetch_max_attempts: int = Field(default=4, ge=1, le=20, alias="FETCH_MAX_ATTEMPTS")
    fetch_retry_base_seconds: float = Field(default=0.5, gt=0, alias="FETCH_RETRY_BASE_SECONDS")
    fetch_retry_max_delay_seconds: float = Field(default=10.0, gt=0, alias="FETCH_RETRY_MAX_DELAY_SECONDS")

    # --- imaging -------------------------------------------------------------------------------
    thumbnail_sizes: str = Field(default="150,300,600", alias="THUMBNAIL_SIZES")
    image_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1, alias="IMAGE_MAX_BYTES")
    image_max_pixels: int = Field(default=100_000_000, ge=1, alias="IMAGE_MAX_PIXELS")
    image_time_budget_seconds: float = Field(default=20.0, gt=0, alias="IMAGE_TIME_BUDGET_SECONDS")
    chunk_time_budget_seconds: float = Field(default=240.0, gt=0, alias="CHUNK_TIME_BUDGET_SECONDS")

    # --- observability -------------------------------------------------------------------------
    otel_enabled: bool = Field(default=False, alias="OTEL_ENABLED")
    # The operator view (GET /api/operator/overview, the dashboard's operator tab): the SHA-256 (hex) of the
    # operator's key, never the key itself, so the setting is no secret. Empty: the operator view is disabled.
    admin_api_key_sha256: str | None = Field(default=None, alias="ADMIN_API_KEY_SHA256")

    # --- derived views, parsed once when the settings are validated (read on every request and image) -----------
    _cosmos_is_loopback: bool = PrivateAttr(default=False)
    _thumbnail_size_list: tuple[int, ...] = PrivateAttr(default=())
    _job_concurrency_by_tier: Mapping[Tier, int] = PrivateAttr(default_factory=dict)
    _lane_by_tier: Mapping[Tier, Lane] = PrivateAttr(default_factory=dict)
    _api_rate_by_tier: Mapping[Tier, tuple[float, float]] = PrivateAttr(default_factory=dict)
    _quotas_by_tier: Mapping[Tier, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @field_validator("thumbnail_sizes")
    @classmethod
    def _sizes_are_ints(cls, value: str) -> str:
        sizes = [s.strip() for s in value.split(",") if s.strip()]
        if not sizes or not all(s.isdigit() and THUMBNAIL_SIZE_MIN <= int(s) <= THUMBNAIL_SIZE_MAX for s in sizes):
            raise ValueError(
                f"must be a comma-separated list of pixel sizes between {THUMBNAIL_SIZE_MIN} and {THUMBNAIL_SIZE_MAX}"
            )
        return value

    @field_validator("admin_api_key_sha256")
    @classmethod
    def _is_sha256_hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("must be the SHA-256 of the operator key as 64 hex digits (or empty: operator view off)")
        return None if value is None else value.lower()

    @model_validator(mode="after")
    def _connections_present(self) -> Settings:
        if not (self.storage_connection or self.storage_account_name):
            raise ValueError("set AzureWebJobsStorage or AzureWebJobsStorage__accountName")
        if not (self.servicebus_connection or self.servicebus_namespace):
            raise ValueError("set ServiceBusConnection or ServiceBusConnection__fullyQualifiedNamespace")
        self._cosmos_is_loopback = (urlparse(self.cosmos_endpoint).hostname or "") in _LOOPBACK_HOSTS
        if self.cosmos_emulator_insecure_tls and not self._cosmos_is_loopback:
            raise ValueError("COSMOS_EMULATOR_INSECURE_TLS is only allowed for a 127.0.0.1/localhost endpoint")
        return self

    @model_validator(mode="after")
    def _parse_derived_views(self) -> Settings:
        """Parses the list and "tier=value" settings once, here (their errors are the validation's)."""
        self._thumbnail_size_list = tuple(sorted({int(s) for s in self.thumbnail_sizes.split(",") if s.strip()}))
        self._job_concurrency_by_tier = MappingProxyType(_parse_pairs(self.tier_job_concurrency, Tier, int))
        self._lane_by_tier = MappingProxyType(_parse_pairs(self.tier_lanes, Tier, Lane))
        rates, bursts = (
            _parse_pairs(text, Tier, _non_negative(float)) for text in (self.tier_api_rate, self.tier_api_burst)
        )
        self._api_rate_by_tier = MappingProxyType({tier: (rates[tier], max(1.0, bursts[tier])) for tier in Tier})
        active, daily = (
            _parse_pairs(text, Tier, _non_negative(int))
            for text in (self.tier_max_active_jobs, self.tier_max_images_per_day)
        )
        self._quotas_by_tier = MappingProxyType({tier: (active[tier], daily[tier]) for tier in Tier})
        return self

    # --- derived views -------------------------------------------------------------------------
    @property
    def cosmos_is_loopback(self) -> bool:
        return self._cosmos_is_loopback

    @property
    def thumbnail_size_list(self) -> tuple[int, ...]:
        return self._thumbnail_size_list

    @property
    def job_concurrency_by_tier(self) -> Mapping[Tier, int]:
        return self._job_concurrency_by_tier

    @property
    def lane_by_tier(self) -> Mapping[Tier, Lane]:
        return self._lane_by_tier

    def api_rate_of(self, tier: Tier) -> tuple[float, float]:
        """The tier's API rate (requests per second; 0 = unlimited) and burst."""
        return self._api_rate_by_tier[tier]

    def quotas_of(self, tier: Tier) -> tuple[int, int]:
        """The tier's most active jobs and most images per UTC day (0 = no limit)."""
        return self._quotas_by_tier[tier]

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable this model reads (used by the drift test)."""
        return {f.alias for f in cls.model_fields.values() if f.alias}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {name: env[name] for name in cls.env_names() if env.get(name) not in (None, "")}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from None


def _non_negative(kind: Any) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise ValueError("must not be negative")
        return value

    return parse


def _parse_pairs(text: str, key_type: Any, value_type: Any) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not key=value")
        try:
            result[key_type(key.strip())] = value_type(value.strip())
        except ValueError as exc:
            raise ValueError(f"{part!r}: {exc}") from None
    missing = [k for k in key_type if k not in result]
    if missing:
        raise ValueError(f"missing entries for {', '.join(str(m) for m in missing)}")
    return result


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read and validated on first use (at start-up in function_app)."""
    return Settings.from_env()
