"""The status timer's cost on the local emulators: idle jobs against jobs that changed.

    .venv/bin/python -m bench.rollup_bench [--idle 10000] [--changed 1000] [--concurrency 8]

Starts its own stack (Azurite, Cosmos and Service Bus emulators on free ports), writes `--idle` running jobs with
nothing new, lets one tick take them out of the change window, then times:
- a tick with only those idle jobs (Cosmos requests and milliseconds: the target is <= 5 requests);
- a tick after `--changed` of them got a finished chunk each, all at once (target: <= 5 s locally);
- the tick after that, with nothing new again.
The roll-up runs in this process exactly as the timer function runs it (`roll_up_status`). Prints figures, asserts
nothing; one run on a noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from devstack.stack import LocalStack, StackPorts, provision_app_stores
from shared.config import Lane, Settings
from shared.messages import chunk_document_id
from shared.models import ChunkDocument, ImageCounts, JobDocument, JobOptions, JobState, utcnow
from shared.services.context import AppContext
from shared.services.rollup import RollUpReport, roll_up_status


def _job(job_id: str) -> JobDocument:
    return JobDocument(
        id=job_id, jobId=job_id, tenantId="t-bench", lane=Lane.BULK, concurrency=1, source="urls",
        options=JobOptions(analyses=["exif"]), total_images=1, total_chunks=1, created_at=utcnow(),
        state=JobState.RUNNING,
    )  # fmt: skip


def _line(label: str, report: RollUpReport) -> str:
    return (
        f"{label:<44} {report.cosmos_requests:>6} Cosmos requests  {report.duration_ms / 1000:>6.2f} s  "
        f"jobs changed {report.jobs_changed}, finished {len(report.jobs_finished)}, conflicts {report.conflicts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data, LocalStack(Path(data), StackPorts.free()) as stack:
        env = {**stack.settings_env(), "STATUS_ROLLUP_CONCURRENCY": str(args.concurrency)}
        provision_app_stores(env)
        ctx = AppContext.from_settings(Settings.from_env(env))
        started = time.monotonic()
        job_ids = [f"jbench{n:06d}" for n in range(args.idle)]
        for job_id in job_ids:
            ctx.store.create_job(_job(job_id))
        print(f"wrote {args.idle} running jobs in {time.monotonic() - started:.1f} s")
        roll_up_status(ctx)
        time.sleep(11)  # past the change query's overlap, so the jobs' creation is not "new" to anyone
        print(_line(f"tick, {args.idle} idle jobs", roll_up_status(ctx)))

        now = utcnow()
        for job_id in job_ids[: args.changed]:
            ctx.store.upsert_chunk(
                ChunkDocument(
                    id=chunk_document_id(job_id, 0), jobId=job_id, chunk=0, state="done", images=1,
                    counts=ImageCounts(succeeded=1), started_at=now, finished_at=now + timedelta(seconds=1),
                    finished_epoch=now.timestamp() + 1,
                )
            )
        print(_line(f"tick, {args.changed} of them changed at once", roll_up_status(ctx)))
        print(_line("next tick, nothing new", roll_up_status(ctx)))


if __name__ == "__main__":
    main()
