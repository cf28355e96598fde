"""What one storage operation costs on the local stack, in CPU: the app's side (the Azure SDK call) and the emulator's.

    .venv/bin/python -m bench.op_costs [--calls 300]

It starts its own stack (Azurite, the Cosmos and Service Bus emulators on free ports, temporary data), then makes
`--calls` of each operation a job makes, one after another from one thread, through the app's own adapters:

- a Cosmos point read (a tenant document), an upsert of a ~1.3 KB document (an image result's size) and a
  single-partition query (a job's image results page);
- a 20 KB block-blob write (a thumbnail's size) to Azurite;
- a one-message send to a Service Bus queue.

For each: wall time, this process's CPU time and each emulator's CPU time (from /proc), per call. These are the
figures that put a floor under a one-image job's cost: multiply them by the operations a job makes (README,
"Benchmarks"). Prints figures; asserts nothing; exits 0. One run on a noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devstack.stack import LocalStack, StackPorts, example_app_settings, provision_app_stores
from shared.adapters.servicebus import OutgoingMessage
from shared.config import FINISH_QUEUE, THUMBNAILS_CONTAINER, Settings
from shared.models import ImageResultDocument, image_bucket, utcnow
from shared.services.context import AppContext
from shared.services.tenants import create_tenant


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(label: str, call: Callable[[int], object], calls: int, emulators: dict[str, int]) -> None:
    call(-1)  # warm: connections, query plans
    before = {name: process_cpu(pid) for name, pid in emulators.items()}
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        call(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    spent = {name: process_cpu(pid) - before[name] for name, pid in emulators.items()}
    emulator_ms = ", ".join(f"{name} {seconds / calls * 1000:.2f}" for name, seconds in spent.items())
    print(
        f"{label:<44} wall {wall / calls * 1000:6.2f} ms | app CPU {cpu / calls * 1000:5.2f} ms | "
        f"emulators' CPU ms: {emulator_ms}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each operation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(data_dir=Path(tmp) / "stack", ports=StackPorts.free())
        stack.start()
        try:
            env = {**example_app_settings(), **stack.settings_env()}
            provision_app_stores(env)
            ctx = AppContext.from_settings(Settings.from_env(env))
            emulators = {p.name: p.pid for p in stack.processes}
            tenant_id = create_tenant(ctx.store, "op-costs", "new").tenant.tenant_id
            job_id = "jopcosts"
            thumbnail = os.urandom(20_000)

            def result(i: int) -> ImageResultDocument:
                index = max(i, 0)
                return ImageResultDocument(
                    id=f"{job_id}.{index}",
                    bucket=image_bucket(index),
                    jobId=job_id,
                    index=index,
                    chunk=0,
                    kind="url",
                    ref=f"https://images.example.com/photo-{index}.jpg",
                    processed_at=utcnow(),
                    ok=True,
                    sha256="ab" * 32,
                    result={"width": 1200, "height": 800, "format": "JPEG", "exif": {"Model": "x" * 40}},
                    thumbnails=[
                        {"size": s, "format": f, "blob": f"t/thumbs/{'ab' * 32}/{s}.{f}", "width": s, "height": s}
                        for s in (150, 300, 600)
                        for f in ("jpeg", "webp")
                    ],
                )

            print(f"{args.calls} calls each, one thread; per call:", flush=True)
            measure("Cosmos point read", lambda i: ctx.store.get_tenant(tenant_id), args.calls, emulators)
            measure("Cosmos upsert (an image result, ~1.3 KB)", lambda i: ctx.store.upsert_image(result(i)),
                    args.calls, emulators)  # fmt: skip
            measure("Cosmos query (a page of 10 results)", lambda i: ctx.store.page_images(job_id, 10, None),
                    args.calls, emulators)  # fmt: skip
            measure("Blob write, 20 KB (a thumbnail)",
                    lambda i: ctx.blobs.write(THUMBNAILS_CONTAINER, f"op-costs/{i}.webp", thumbnail, "image/webp"),
                    args.calls, emulators)  # fmt: skip
            measure("Service Bus send, one message",
                    lambda i: ctx.bus.send(FINISH_QUEUE, [OutgoingMessage(body="{}", message_id=f"op-{i}")]),
                    args.calls, emulators)  # fmt: skip
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
