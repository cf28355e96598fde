"""The status timer's cost follows what changed, not what exists: its use case on the Cosmos and Service Bus
emulators, in a database of its own (the development host's timer works on another one)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devstack.stack import LocalStack, provision_app_stores
from shared.config import Lane, Settings
from shared.messages import chunk_document_id, expansion_document_id
from shared.models import ChunkDocument, ExpansionDocument, ImageCounts, JobDocument, JobOptions, JobState, utcnow
from shared.services.context import AppContext
from shared.services.rollup import roll_up_status

IDLE_JOBS = 3000
CHANGED_JOBS = 300
CONSTANT_REQUESTS = 5  # the cursor's read and write, and the change query's page(s)


@pytest.fixture(scope="module")
def rollup_context(local_stack: LocalStack) -> AppContext:
    env = {**local_stack.settings_env(), "COSMOS_DATABASE": "rollup-test"}
    provision_app_stores(env)
    return AppContext.from_settings(Settings.from_env(env))


def _job(job_id: str) -> JobDocument:
    return JobDocument(
        id=job_id, jobId=job_id, tenantId="t-rollup", lane=Lane.BULK, concurrency=1, source="urls",
        options=JobOptions(analyses=["exif"]), total_images=1, total_chunks=1, created_at=utcnow(),
        state=JobState.RUNNING,
    )  # fmt: skip


@pytest.mark.slow
def test_idle_jobs_cost_nothing_and_a_changed_job_costs_a_few_requests(rollup_context: AppContext) -> None:
    ctx = rollup_context
    job_ids = [f"jroll{n:05d}" for n in range(IDLE_JOBS)]
    for job_id in job_ids:
        ctx.store.create_job(_job(job_id))
    roll_up_status(ctx)  # the first tick takes the jobs' creation out of the overlap it re-reads

    idle = roll_up_status(ctx)
    assert idle.jobs_changed == 0 and idle.cosmos_requests <= CONSTANT_REQUESTS, idle

    started = utcnow()
    changed = job_ids[:CHANGED_JOBS]
    for job_id in changed:
        ctx.store.upsert_chunk(
            ChunkDocument(
                id=chunk_document_id(job_id, 0), jobId=job_id, chunk=0, state="done", images=1,
                counts=ImageCounts(succeeded=1), started_at=started, finished_at=started + timedelta(seconds=2),
                finished_epoch=started.timestamp() + 2,
            )
        )
    busy = roll_up_status(ctx)
    assert busy.jobs_changed == CHANGED_JOBS and sorted(busy.jobs_finished) == changed, busy
    assert busy.conflicts == 0 and busy.failures == 0
    # A read and a replace a job; these jobs also end, which updates their line in the tenant's job list.
    assert busy.cosmos_requests <= CONSTANT_REQUESTS + 3 * CHANGED_JOBS, busy

    again = roll_up_status(ctx)  # the same changes are inside the overlap: recognised, not folded again
    assert again.jobs_changed == 0 and again.cosmos_requests <= CONSTANT_REQUESTS, again
    found = ctx.store.get_job(changed[0])
    assert found is not None and found[0].state is JobState.SUCCEEDED and found[0].counts.succeeded == 1
    untouched = ctx.store.get_job(job_ids[-1])
    assert untouched is not None and untouched[0].rolled_up_at is None, "an idle job is never read or written"
    print(f"tick with {IDLE_JOBS} idle jobs: {idle.cosmos_requests} requests, {idle.duration_ms} ms; "
          f"{CHANGED_JOBS} changed: {busy.cosmos_requests} requests, {busy.duration_ms} ms")  # fmt: skip


def test_a_manifest_job_ends_only_when_its_expanded_chunks_are_done(rollup_context: AppContext) -> None:
    ctx = rollup_context
    job = _job("jrollmanifest")
    job.source, job.manifest_blob, job.total_images, job.total_chunks = "manifest", "t/m.txt", None, None
    ctx.store.create_job(job)
    ctx.store.upsert_expansion(
        ExpansionDocument(id=expansion_document_id(job.job_id), jobId=job.job_id, done=True, images=1000, chunks=2)
    )
    started = utcnow()
    ctx.store.upsert_chunk(
        ChunkDocument(
            id=chunk_document_id(job.job_id, 0), jobId=job.job_id, chunk=0, state="done", images=500,
            counts=ImageCounts(succeeded=500), started_at=started, finished_at=started, finished_epoch=0.0,
        )
    )
    roll_up_status(ctx)
    found = ctx.store.get_job(job.job_id)
    assert found is not None
    assert (found[0].total_chunks, found[0].total_images, found[0].state) == (2, 1000, JobState.RUNNING), found[0]
    ctx.store.upsert_chunk(
        ChunkDocument(
            id=chunk_document_id(job.job_id, 1), jobId=job.job_id, chunk=1, state="done", images=500,
            counts=ImageCounts(succeeded=500), started_at=started, finished_at=started, finished_epoch=0.0,
        )
    )
    roll_up_status(ctx)
    found = ctx.store.get_job(job.job_id)
    assert found is not None and found[0].state is JobState.SUCCEEDED and found[0].counts.succeeded == 1000


def test_a_one_chunk_job_is_seen_done_before_the_timer_and_acted_on_as_done(rollup_context: AppContext) -> None:
    """A status read settles a one-chunk job's finished chunk in memory; cancel and export act on that same view:
    a job a tenant has seen succeed cannot be cancelled, and its export waits for the timer's record, not a 409."""
    from shared.services import jobs
    from shared.services.tenants import create_tenant

    ctx = rollup_context
    tenant = create_tenant(ctx.store, "one-chunk", "new").tenant
    job = _job("jonechunk01").model_copy(update={"tenant_id": tenant.tenant_id})
    ctx.store.create_job(job)
    started = utcnow()
    ctx.store.upsert_chunk(
        ChunkDocument(
            id=chunk_document_id(job.job_id, 0), jobId=job.job_id, chunk=0, state="done", images=1,
            counts=ImageCounts(succeeded=1), started_at=started, finished_at=started + timedelta(seconds=1),
            finished_epoch=started.timestamp() + 1,
        )
    )  # fmt: skip

    assert jobs.get_job_status(ctx, tenant, job.job_id).state == JobState.SUCCEEDED
    cancelled = jobs.cancel_job(ctx, tenant, job.job_id)
    assert cancelled.state == JobState.SUCCEEDED and not cancelled.cancel_requested
    stored = ctx.store.get_job(job.job_id)
    assert stored is not None and not stored[0].cancel_requested, "the job must not be flagged for cancelling"
    exported = jobs.export_results(ctx, tenant, job.job_id)
    assert not isinstance(exported, str) and exported.state == "exporting"
