"""The chunk worker's bridge to the image pipeline (`shared/imaging`) and the duplicate index (`shared/dedup`).

It turns a job's options and the settings into pipeline options, runs the pipeline in an isolated child process
(so a decoder that hangs or crashes costs one image a `timeout`/`processing_failed` result, never the chunk), and
registers successful images in the tenant's duplicate index.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.config import Settings
from shared.dedup.service import DuplicateService
from shared.imaging import ImageResult, ImagingOptions
from shared.imaging.isolation import IsolatedImagePipeline
from shared.models import JobDocument, JobOptions
from shared.thread_resources import PerThread

# One long-lived child per worker thread: the host may run several invocations of a worker at once.
pipelines: PerThread[IsolatedImagePipeline] = PerThread(
    "image pipeline", IsolatedImagePipeline, IsolatedImagePipeline.close
)

# Entries written this long before a job was created are treated as possibly racing its registrations too: covers
# clock skew between the workers and the service, and replicas catching up.
RACING_WRITES_MARGIN = timedelta(minutes=10)


def imaging_options(options: JobOptions, settings: Settings) -> ImagingOptions:
    analyses = set(options.analyses)
    sizes = tuple(options.thumbnail_sizes or settings.thumbnail_size_list) if "thumbnails" in analyses else ()
    return ImagingOptions.from_settings(
        settings,
        thumbnail_sizes=sizes,
        compute_hashes=bool(analyses & {"hashes", "dedup"}),
        detect_faces="faces" in analyses,
        detect_people="people" in analyses,
    )


def analyse(data: bytes, options: JobOptions, settings: Settings) -> ImageResult:
    return pipelines.get().process(data, imaging_options(options, settings))


def stored_facts(result: ImageResult) -> dict[str, Any]:
    """What goes into the image result document (thumbnails are stored as blobs, named separately)."""
    return result.model_dump(mode="json", exclude={"thumbnails", "ok", "error", "sha256"}, exclude_none=True)


def register_duplicates(
    dedup: DuplicateService, tenant_id: str, job_id: str, image_id: str, result: ImageResult
) -> list[str]:
    """Registers the image in the tenant's index; returns the image ids it duplicates (this job or earlier)."""
    if result.sha256 is None:
        return []
    hit = dedup.register_image(
        tenant_id, job_id, image_id, result.sha256, result.phash, result.dhash, result.phash_mirror
    )
    found = ([hit.exact_of.image_id] if hit.exact_of else []) + [m.ref.image_id for m in hit.near]
    return list(dict.fromkeys(found))


def job_duplicate_groups(dedup: DuplicateService, job: JobDocument) -> list[list[str]]:
    """The job's exact duplicate groups (reconciled once the job is complete), as sorted lists of image ids."""
    racing_since = (job.created_at - RACING_WRITES_MARGIN).timestamp()
    groups = dedup.reconcile_job(job.tenant_id, job.job_id, racing_since=racing_since)
    return sorted(sorted(member.image_id for member in group.members) for group in groups)
