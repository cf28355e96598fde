"""Pydantic contracts: API requests and responses, Service Bus messages, Cosmos documents.

Documents in the `jobs` container are partitioned by `jobId` and told apart by `type`:
`job` (one per job, written by the status timer and flag-patched by the API), `chunk` (one per chunk, written by
the chunk worker), `image` (one per image, id `{job}.{index}`), `expansion` (manifest expansion progress) and
`deadletter` (a dead-lettered chunk moved out of the dead-letter queue by the status timer).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)

from shared.config import IMAGES_PER_BUCKET, Lane
from shared.image_errors import ImageErrorCode
from shared.imaging.options import THUMBNAIL_SIZE_MAX, THUMBNAIL_SIZE_MIN
from shared.imaging.results import ImageFacts

MAX_REF_LENGTH = 2048
Analysis = Literal["exif", "thumbnails", "hashes", "dedup", "faces", "people"]
DEFAULT_ANALYSES: tuple[Analysis, ...] = ("exif", "thumbnails", "hashes", "dedup", "faces")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Document(BaseModel):
    """A Cosmos document: camelCase in the store, snake_case in Python; Cosmos' own fields are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=None)

    def to_store(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


class JobOwnedDocument(Document):
    """A document in the `jobs` container, whose key is (job id, bucket): job-wide documents live in bucket 0,
    image results in `image_bucket(index)`."""

    id: str
    job_id: str = Field(alias="jobId")
    bucket: int = 0


def image_bucket(index: int) -> int:
    return 1 + index // IMAGES_PER_BUCKET


# --- requests ----------------------------------------------------------------------------------


class JobOptions(Strict):
    thumbnail_sizes: list[int] | None = Field(
        default=None, min_length=1, max_length=6, description="Long-side pixel sizes; defaults to THUMBNAIL_SIZES"
    )
    analyses: list[Analysis] = Field(
        default_factory=lambda: list(DEFAULT_ANALYSES), description="Which analyses to run for every image"
    )

    @field_validator("thumbnail_sizes")
    @classmethod
    def _sizes_in_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not all(THUMBNAIL_SIZE_MIN <= s <= THUMBNAIL_SIZE_MAX for s in value):
            raise ValueError(f"thumbnail sizes must be between {THUMBNAIL_SIZE_MIN} and {THUMBNAIL_SIZE_MAX} pixels")
        return None if value is None else sorted(set(value))


UPLOAD_ID_PATTERN = r"^u[0-9a-f]{24}$"


def _url_ref(ref: str) -> str:
    if problem := ref_problem(ref, "url"):
        raise ValueError(problem)
    return ref


def _blob_ref(ref: str) -> str:
    if problem := ref_problem(ref, "blob"):
        raise ValueError(problem)
    return ref


class JobRequest(Strict):
    """`POST /api/jobs`: exactly one of `urls`, `blobs`, `manifest` or `upload`."""

    urls: list[Annotated[str, AfterValidator(_url_ref)]] | None = Field(
        default=None, min_length=1, description="HTTP(S) image URLs"
    )
    blobs: list[Annotated[str, AfterValidator(_blob_ref)]] | None = Field(
        default=None, min_length=1, description="Blob names in your folder of the originals container"
    )
    manifest: Annotated[str, AfterValidator(_blob_ref)] | None = Field(
        default=None, description="Blob name in your folder of the manifests container: one URL or blob name a line"
    )
    upload: str | None = Field(
        default=None,
        pattern=UPLOAD_ID_PATTERN,
        description="An upload id from POST /api/uploads: every file of that upload, in its order",
    )
    options: JobOptions = Field(default_factory=JobOptions)
    callback_url: HttpUrl | None = Field(default=None, description="POSTed a signed summary when the job ends")

    @model_validator(mode="before")
    @classmethod
    def _no_explicit_nulls(cls, data: Any) -> Any:
        # The schema lists these as optional, not nullable: leave one out rather than send null.
        if isinstance(data, dict):
            for name in (*JOB_SOURCES, "callback_url"):
                if name in data and data[name] is None:
                    raise ValueError(f"'{name}' is null: leave it out instead")
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> JobRequest:
        given = [name for name in JOB_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'urls', 'blobs', 'manifest' or 'upload'")
        return self

    @property
    def inline_refs(self) -> list[ImageRef] | None:
        if self.urls is not None:
            return [ImageRef(index=i, kind="url", ref=u) for i, u in enumerate(self.urls)]
        if self.blobs is not None:
            return [ImageRef(index=i, kind="blob", ref=b) for i, b in enumerate(self.blobs)]
        return None


JOB_SOURCES = ("urls", "blobs", "manifest", "upload")
JobSource = Literal["urls", "blobs", "manifest", "upload"]


def ref_problem(ref: str, kind: str) -> str | None:
    """Why an image reference is unusable, or None. Cheap syntax checks only: fetching checks the rest."""
    if not ref or len(ref) > MAX_REF_LENGTH:
        return f"must be 1 to {MAX_REF_LENGTH} characters"
    # A reference is one line of a manifest (an upload's record is one too): no line breaks or other control
    # characters, and no whitespace at either end, which a manifest line loses.
    if ref != ref.strip() or any(ord(c) < 32 or c == "\x7f" for c in ref):
        return "must not contain control characters or start or end with whitespace"
    if kind == "url":
        if not (ref.startswith("http://") or ref.startswith("https://")):
            return "must be an http:// or https:// URL"
    elif ref.startswith("/") or ".." in ref.split("/") or "\\" in ref:
        return "must be a relative blob name without '..' or backslashes"
    return None


def classify_manifest_line(line: str) -> ImageRefKind:
    return "url" if line.startswith(("http://", "https://")) else "blob"


# --- messages ----------------------------------------------------------------------------------

ImageRefKind = Literal["url", "blob"]


class ImageRef(Strict):
    index: int = Field(ge=0, description="Position of the image in the job")
    kind: ImageRefKind
    ref: str


class ManifestRange(Strict):
    """A run of lines of a manifest blob, by byte offsets, so chunk messages stay small for any job size."""

    blob: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    first_index: int = Field(ge=0)


class ChunkMessage(Strict):
    job_id: str
    tenant_id: str
    chunk: int = Field(ge=0)
    lane: Lane
    options: JobOptions
    images: list[ImageRef] | None = None
    manifest_range: ManifestRange | None = None
    # The job's only chunk: it travels on the lane's session-free express queue (it cannot exceed any cap).
    express: bool = False
    # The W3C trace context of the job's submit, when traced: each chunk's trace links to it (shared/tracing.py).
    traceparent: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ChunkMessage:
        if (self.images is None) == (self.manifest_range is None):
            raise ValueError("a chunk carries either inline images or a manifest range")
        return self


class ExpandMessage(Strict):
    """Expand a manifest into chunk messages, `EXPAND_BATCH_CHUNKS` chunks per invocation, resumably."""

    job_id: str
    tenant_id: str
    manifest_blob: str
    byte_offset: int = 0
    next_index: int = 0
    next_chunk: int = 0
    step: int = 0
    traceparent: str | None = None  # the submit's trace context, handed on to the chunk messages


class FinishMessage(Strict):
    """A finished job's follow-up, on the finish queue: reconcile its duplicate groups, or deliver its callback.
    `end` numbers the times the job ended (a replay can end it again), so every message id is deterministic."""

    job_id: str
    action: Literal["reconcile", "callback", "export"]
    end: int = Field(ge=1)
    attempt: int = Field(default=1, ge=1)
    waits: int = Field(default=0, ge=0)  # re-sent because the job document had not recorded this end yet
    # An export in progress: blocks of the export blob staged so far, and where the results query goes on.
    export_blocks: int = Field(default=0, ge=0)
    export_continuation: str | None = None


# --- documents ---------------------------------------------------------------------------------


class JobState(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.ACCEPTED, JobState.RUNNING)


class ImageCounts(BaseModel):
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped

    def __add__(self, other: ImageCounts) -> ImageCounts:
        return ImageCounts(
            succeeded=self.succeeded + other.succeeded,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
        )


class DeadLetteredChunk(BaseModel):
    chunk: int
    reason: str
    description: str
    dead_lettered_at: datetime
    replayed: bool = False


class CallbackStatus(BaseModel):
    state: Literal["none", "pending", "delivered", "failed"] = "none"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


class DuplicatesSummary(BaseModel):
    """Counts of a job's duplicate groups; the groups themselves are documents of their own, paged by
    `GET /api/jobs/{id}/duplicates`. `pending` from the job's end until its groups are reconciled."""

    state: Literal["none", "pending", "ready"] = "none"
    groups: int = 0
    images: int = 0  # members of the job's groups, library members from other jobs included


class RunningChunk(BaseModel):
    """The latest partial counts of a chunk being processed (one entry a chunk in flight)."""

    counts: ImageCounts
    error_codes: dict[str, int] = Field(default_factory=dict)
    started_at: datetime


# How many dead-lettered chunks a job document lists (the rest are counted; all are paged by the API).
DEAD_LETTER_SAMPLE = 20


class JobDocument(JobOwnedDocument):
    """One job's state. Its size is bounded whatever the job's size: per-chunk facts are bitmaps (one bit a chunk),
    running chunks are the few in flight, dead letters a sample and a count, duplicate groups a count."""

    tenant_id: str = Field(alias="tenantId")
    type: Literal["job"] = "job"
    state: JobState = JobState.ACCEPTED
    lane: Lane
    # The job's cap on chunks in flight at once: its chunks are spread over this many sessions. Read from older
    # documents' `shards` too.
    concurrency: int = Field(validation_alias=AliasChoices("concurrency", "shards"), serialization_alias="concurrency")
    source: JobSource
    manifest_blob: str | None = None
    expansion_done: bool = False
    options: JobOptions
    callback_url: str | None = None
    total_images: int | None = None  # None while a manifest is still being expanded
    total_chunks: int | None = None
    counts: ImageCounts = Field(default_factory=ImageCounts)
    error_codes: dict[str, int] = Field(default_factory=dict)
    finished_chunks: str = ""  # base64 bitmap of chunks whose final counts are in `finished_counts`
    finished_counts: ImageCounts = Field(default_factory=ImageCounts)
    finished_error_codes: dict[str, int] = Field(default_factory=dict)
    running: dict[str, RunningChunk] = Field(default_factory=dict)  # chunk index -> latest partial counts
    dead_lettered_chunks: str = ""  # bitmap: chunks that were dead-lettered
    replayed_chunks: str = ""  # bitmap: dead-lettered chunks re-sent since
    dead_lettered: list[DeadLetteredChunk] = Field(default_factory=list)  # the first DEAD_LETTER_SAMPLE by chunk
    duplicates: DuplicatesSummary = Field(default_factory=DuplicatesSummary)
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    last_chunk_finished_at: datetime | None = None
    finished_at: datetime | None = None
    rolled_up_at: datetime | None = None
    ends: int = 0  # times the job ended (a replay can end it again): numbers its follow-up messages
    images_per_second: float | None = None
    eta_seconds: float | None = None
    callback: CallbackStatus = Field(default_factory=CallbackStatus)


class ChunkDocument(JobOwnedDocument):
    """The chunk worker's record of one chunk; `state=done` counts are final (recomputed from image documents)."""

    type: Literal["chunk"] = "chunk"
    chunk: int
    state: Literal["running", "done"]
    images: int
    counts: ImageCounts
    error_codes: dict[str, int] = Field(default_factory=dict)
    attempts: int = 1
    started_at: datetime
    finished_at: datetime | None = None
    finished_epoch: float | None = None  # seconds, for the timer's incremental query
    processing_seconds: float = 0.0
    queue_seconds: float = 0.0
    delivery: str | None = None  # which delivery last wrote the record (two may overlap after a lost lock)


class StoredImageError(BaseModel):
    """Why an image has no result, as its result document stores it (the API shows it as an ImageErrorItem)."""

    code: str
    message: str


class ImageResultDocument(JobOwnedDocument):
    type: Literal["image"] = "image"
    index: int
    chunk: int
    kind: ImageRefKind
    ref: str
    ok: bool
    error: StoredImageError | None = None
    sha256: str | None = None
    result: dict[str, Any] | None = None  # the pipeline's facts, hashes, faces
    thumbnails: list[dict[str, Any]] = Field(default_factory=list)  # {size, format, blob, width, height}
    duplicate_of: list[str] = Field(default_factory=list)  # image ids (`{job}.{index}`), this job or earlier
    attempts: int = 1  # requests made to fetch the image (retries of transient failures included; 0: none made)
    processed_at: datetime


class ExpansionDocument(JobOwnedDocument):
    type: Literal["expansion"] = "expansion"
    done: bool = False
    images: int = 0
    chunks: int = 0
    steps: int = 0
    error: str | None = None


class DeadLetterDocument(JobOwnedDocument):
    type: Literal["deadletter"] = "deadletter"
    chunk: int
    lane: Lane
    reason: str
    description: str
    dead_lettered_at: datetime
    body: str = ""  # the chunk message, so it can be replayed (left out where the status timer reads changes)
    replayed: bool = False


class DuplicatesDocument(JobOwnedDocument):
    """Written by the finish worker when a job's duplicate groups are reconciled (for the job's `end`-th end)."""

    type: Literal["duplicates"] = "duplicates"
    end: int
    groups: int
    images: int


class DuplicateGroupDocument(JobOwnedDocument):
    """One part (at most GROUP_PART_MEMBERS members) of one duplicate group of a job."""

    type: Literal["dupgroup"] = "dupgroup"
    end: int
    group: int
    part: int
    size: int  # members of the whole group
    members: list[str]  # image result ids (`{job}.{index}`), this job's and the library's


class CallbackDocument(JobOwnedDocument):
    """The delivery state of a job's callback, written by the finish worker, folded into the job by the timer."""

    type: Literal["callback"] = "callback"
    end: int
    status: CallbackStatus


class RollUpCursor(JobOwnedDocument):
    """Where the status timer's change query starts, and the changes it has already folded (by etag) inside the
    overlap it re-reads. Bounded by what changed in the overlap, not by the jobs that exist."""

    id: str = "rollup"
    job_id: str = Field(default="_rollup", alias="jobId")
    type: Literal["rollupcursor"] = "rollupcursor"
    since_ts: int = 0
    seen: dict[str, str] = Field(default_factory=dict)  # document id -> etag folded
    last_tick_at: datetime | None = None


class JobEntryDocument(Document):
    """A job's entry in its tenant's partition of the `tenants` container, so listing a tenant's jobs is one
    single-partition query (the `jobs` container is partitioned by job). Its state follows the job's transitions."""

    id: str  # the job id
    tenant_id: str = Field(alias="tenantId")
    type: Literal["jobentry"] = "jobentry"
    state: JobState
    created_at: datetime
    ttl: int = -1  # seconds: the entry expires with its job's documents (JOB_RETENTION_SECONDS); -1 never


class TenantDocument(Document):
    id: str
    tenant_id: str = Field(alias="tenantId")
    type: Literal["tenant"] = "tenant"
    name: str
    tier: str
    key_hash: str = Field(alias="keyHash")
    callback_secret: str = Field(alias="callbackSecret")
    created_at: datetime
    disabled: bool = False


# --- API responses -----------------------------------------------------------------------------


class JobAccepted(BaseModel):
    job_id: str
    state: JobState
    lane: Lane
    total_images: int | None
    total_chunks: int | None
    status_url: str


class JobStatus(BaseModel):
    job_id: str
    state: JobState
    lane: Lane
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total_images: int | None
    total_chunks: int | None
    counts: ImageCounts
    percent: float
    images_per_second: float | None
    eta_seconds: float | None
    errors: dict[str, int]
    dead_lettered_count: int
    dead_lettered_chunks: list[DeadLetteredChunk] = Field(
        description=f"The first {DEAD_LETTER_SAMPLE} dead-lettered chunks by index; dead_lettered_count counts all"
    )
    duplicates: DuplicatesSummary
    duplicates_url: str | None = Field(description="Pages the job's duplicate groups, once reconciled")
    cancel_requested: bool
    callback: CallbackStatus


class ImageErrorItem(BaseModel):
    code: ImageErrorCode = Field(description="A stable per-image error code (ImageErrorCode lists them, with meanings)")
    message: str


class ThumbnailItem(BaseModel):
    size: int = Field(description="The requested long side, in pixels")
    format: str = Field(description="jpeg, webp or png")
    width: int
    height: int
    blob: str = Field(description="Blob name in the thumbnails container (your folder)")
    url: str | None = Field(default=None, description="A short-lived read URL (DOWNLOAD_URL_TTL_SECONDS)")


class ImageResultItem(BaseModel):
    """One image's result."""

    id: str = Field(description="`{job_id}.{index}`: what `duplicate_of` and duplicate groups name")
    job_id: str
    index: int = Field(description="Position of the image in the job")
    chunk: int
    kind: ImageRefKind
    ref: str = Field(description="The URL, or the blob name in your originals folder")
    ok: bool
    error: ImageErrorItem | None = None
    sha256: str | None = Field(default=None, description="SHA-256 of the original bytes, hex")
    result: ImageFacts | None = Field(default=None, description="Dimensions, EXIF facts, hashes and faces")
    thumbnails: list[ThumbnailItem] = Field(default_factory=list)
    original_url: str | None = Field(default=None, description="A short-lived read URL of an uploaded original")
    duplicate_of: list[str] = Field(
        default_factory=list, description="Ids of earlier images (this job's or your library's) this one duplicates"
    )
    attempts: int = Field(
        default=1, description="Requests made to fetch the image, retries of transient failures included (0: none)"
    )
    processed_at: datetime


class ImagePage(BaseModel):
    items: list[ImageResultItem]
    continuation: str | None = Field(description="Pass back as `continuation` for the next page; null at the end")


class JobPage(BaseModel):
    items: list[JobStatus] = Field(description="Your jobs, newest first")
    continuation: str | None = Field(description="Pass back as `continuation` for the next page; null at the end")


class UploadFile(Strict):
    name: str = Field(description="A relative name: the blob is `uploads/{upload_id}/{name}` in your originals folder")
    size: int | None = Field(default=None, ge=0, description="Bytes, if known: checked against the limit up front")


class UploadRequest(Strict):
    """`POST /api/uploads`."""

    files: list[UploadFile] = Field(min_length=1)


class UploadTarget(BaseModel):
    name: str
    blob: str = Field(description="Blob name in your originals folder")
    url: str = Field(description="PUT the file's bytes here with the header `x-ms-blob-type: BlockBlob`")


class UploadCreated(BaseModel):
    upload_id: str = Field(description="Submit every file with POST /api/jobs {\"upload\": upload_id}")
    expires_at: datetime = Field(description="The URLs refuse writes after this")
    max_bytes: int = Field(description="Largest file processed; a larger one ends as a `too_large` image result")
    files: list[UploadTarget]


class ManifestStored(BaseModel):
    manifest: str = Field(description="Its name in your manifests folder: submit it as {\"manifest\": name}")
    lines: int = Field(description="Image references in it")
    bytes: int


class ExportPending(BaseModel):
    job_id: str
    state: Literal["exporting"] = "exporting"
    retry_after_seconds: int


class DuplicateGroupItem(BaseModel):
    group: int
    part: int
    size: int
    members: list[str]


class DuplicateGroupPage(BaseModel):
    items: list[DuplicateGroupItem]
    continuation: str | None


class ReplayAccepted(BaseModel):
    job_id: str
    replayed_chunks: list[int]
    remaining: int = Field(description="Dead-lettered chunks not re-sent by this call: call again to send them")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- rate limits and quotas (GET /api/usage) ---------------------------------------------------------------------


class RateLimitUsage(BaseModel):
    requests_per_second: float = Field(description="Tokens added to your API bucket per second (0: no limit)")
    burst: float = Field(description="The bucket's size: requests allowed at once after a quiet spell")
    remaining: int = Field(description="Requests you may make right now")


class QuotaUsage(BaseModel):
    limit: int = Field(description="0: no limit")
    used: int
    resets_at: datetime | None = Field(
        default=None, description="When the count starts again (images per day); null: when a job finishes"
    )


class UsageQuotas(BaseModel):
    active_jobs: QuotaUsage
    images_per_day: QuotaUsage


class UsageReport(BaseModel):
    tenant_id: str
    tier: str
    rate_limit: RateLimitUsage
    quotas: UsageQuotas
