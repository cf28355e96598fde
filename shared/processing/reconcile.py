"""A finished job's duplicate groups, reconciled and written as documents of their own.

Run by the finish queue's `reconcile` follow-up once the status timer has seen a job end, and, for a job of one
chunk, by the chunk worker itself just before it records the chunk's end (shared/services/chunks.py): such a job ends
with that record, so its groups can be settled at once and the timer folds them in the same tick as the end, with no
follow-up message and no second roll-up.
"""

from __future__ import annotations

from shared.adapters.job_store import JobStorePort
from shared.dedup.service import DuplicateService
from shared.messages import duplicate_group_document_id, duplicates_document_id
from shared.models import Document, DuplicateGroupDocument, DuplicatesDocument, JobDocument
from shared.processing.imaging_step import job_duplicate_groups

GROUP_PART_MEMBERS = 2000  # ~70 KB a document: far under Cosmos' 2 MB whatever a group's size


def reconcile_duplicates(dedup: DuplicateService, store: JobStorePort, job: JobDocument, end: int) -> str:
    """Writes the job's groups (at most GROUP_PART_MEMBERS members a document, paged by the API) for its `end`-th
    end, then their summary, which the timer folds in. Idempotent: the ids are deterministic. Returns what it did."""
    groups = job_duplicate_groups(dedup, job)
    documents: list[Document] = []
    for number, members in enumerate(groups):
        for part, start in enumerate(range(0, len(members), GROUP_PART_MEMBERS)):
            documents.append(
                DuplicateGroupDocument(
                    id=duplicate_group_document_id(job.job_id, end, number, part),
                    jobId=job.job_id,
                    end=end,
                    group=number,
                    part=part,
                    size=len(members),
                    members=members[start : start + GROUP_PART_MEMBERS],
                )
            )
    images = sum(len(m) for m in groups)
    # The summary last: once it exists, every group document it counts does.
    documents.append(
        DuplicatesDocument(
            id=duplicates_document_id(job.job_id), jobId=job.job_id, end=end, groups=len(groups), images=images
        )
    )
    store.upsert_documents(documents)
    return f"{len(groups)} duplicate groups, {images} images"
