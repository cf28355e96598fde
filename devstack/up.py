"""`devstack/up`: the whole app on the local stack, in the foreground. Ctrl-C stops everything it started.

1. Starts Azurite, the Cosmos emulator and the Service Bus emulator on their default 127.0.0.1 ports.
2. Creates `local.settings.json` from `local.settings.example.json` if there is none.
3. Creates the Cosmos database and containers and the blob containers (in Azure, the Bicep does).
4. Runs the development Functions host (`devstack.funchost`) on http://127.0.0.1:7071/api.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.stack import ROOT, LocalStack, StackPorts, provision_app_stores, stop_pid

EPILOG = """\
app settings, one precedence (highest first):
  1. the environment of ./devstack/up (as `func start` does: a variable already set is never replaced)
  2. the local stack's endpoints (AzureWebJobsStorage, ServiceBusConnection, SERVICEBUS_ADMIN_ENDPOINT,
     COSMOS_ENDPOINT, COSMOS_KEY, COSMOS_EMULATOR_INSECURE_TLS), so a stale local.settings.json cannot point the
     app elsewhere
  3. local.settings.json "Values" (created from local.settings.example.json when missing)
  Names taken from the environment over another source are printed (names only, never values).

data:
  Azurite, the Cosmos emulator and the Service Bus emulator keep their data under --data-dir, so jobs, tenants,
  blobs and queued messages survive a restart. The Cosmos emulator holds its data in memory and snapshots it to
  <data-dir>/cosmos/cosmos.json at most every ~2 s and on a clean stop (Ctrl-C, SIGTERM): a kill -9 of it loses
  the last ~2 s of Cosmos writes (of Azurite: the last 5 s of blob metadata; of the Service Bus emulator:
  nothing it acknowledged). --reset deletes every emulator's data before starting.
"""

# The settings the stack decides (its endpoints); everything else comes from the environment or the file.
STACK_SETTING_NAMES = (
    "AzureWebJobsStorage",
    "ServiceBusConnection",
    "SERVICEBUS_ADMIN_ENDPOINT",
    "COSMOS_ENDPOINT",
    "COSMOS_KEY",
    "COSMOS_EMULATOR_INSECURE_TLS",
)


def read_local_settings(path: Path) -> dict[str, str]:
    values = json.loads(path.read_text()).get("Values", {}) if path.exists() else {}
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def app_settings(
    file_values: Mapping[str, str], stack_values: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The environment for the Functions host: the file's values, the stack's endpoints over them, the environment
    over both. Also returns the names the environment took over from the file or the stack."""
    merged = {**file_values, **stack_values, **environ}
    overridden = sorted(name for name in {*file_values, *stack_values} if name in environ)
    return merged, overridden


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="devstack/up",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / ".devstack-data",
        help="where the emulators keep their data and logs (default: .devstack-data/ in the repository)",
    )
    parser.add_argument("--port", type=int, default=7071, help="the Functions host's HTTP port (default: 7071)")
    parser.add_argument(
        "--reset", action="store_true", help="delete every emulator's data (blobs, documents, messages) first"
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="run the emulators on free ports instead of the defaults (10000-10002, 8081, 5672, 5300), e.g. next "
        "to another stack; the ports are printed and recorded in <data-dir>/stack.pids",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C / SIGTERM only set a flag (handlers run on the main thread, between steps), so a start-up or a
    # teardown is never cut half-way; a blocked signal mask would instead be inherited by the emulators.
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    local_settings = ROOT / "local.settings.json"
    if not local_settings.exists():
        shutil.copyfile(ROOT / "local.settings.example.json", local_settings)
        print("created local.settings.json from local.settings.example.json")

    stack = LocalStack(data_dir=args.data_dir, ports=StackPorts.free() if args.free_ports else StackPorts())
    if args.reset:
        removed = stack.reset()
        print(f"--reset: deleted {', '.join(str(d) for d in removed) or 'nothing (no data yet)'}")
    stack.start()
    if stop_requested.is_set():
        stack.stop()
        return 0
    host: subprocess.Popen[bytes] | None = None
    try:
        env, overridden = app_settings(read_local_settings(local_settings), stack.settings_env(), os.environ)
        if overridden:
            print(f"from the environment (over local.settings.json / the stack): {', '.join(overridden)}")
        provision_app_stores(env)
        for proc in stack.processes:
            print(f"{proc.name:<11} pid {proc.pid:<7} 127.0.0.1:{proc.port}  log {proc.log}")
        host = subprocess.Popen(
            [sys.executable, "-m", "devstack.funchost", "--script-root", str(ROOT), "--port", str(args.port)],
            cwd=ROOT,
            env=env,
        )
        print(f"functions   pid {host.pid:<7} http://127.0.0.1:{args.port}/api  (Ctrl-C stops everything)")
        print(f"dashboard   http://127.0.0.1:{args.port}/api/dashboard/")
        print(
            "create a tenant: .venv/bin/imagepipe create-tenant --name demo --tier new "
            "(then see the README's quickstart)",
            flush=True,
        )
        while not stop_requested.wait(0.5) and host.poll() is None:
            pass
    finally:
        if host is not None:
            stop_pid(host.pid, grace=15, popen=host)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
