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
from collections.abc import Sequence
from pathlib import Path

from devstack.stack import ROOT, LocalStack, StackPorts, provision_app_stores, stop_pid


def app_settings(local_settings: Path, stack: LocalStack) -> dict[str, str]:
    values = {k: str(v) for k, v in json.loads(local_settings.read_text()).get("Values", {}).items()}
    values.update(stack.settings_env())  # the stack's actual endpoints win over stale files
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack/up", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".devstack-data")
    parser.add_argument("--port", type=int, default=7071, help="the Functions host's HTTP port")
    args = parser.parse_args(argv)
    # Ctrl-C / SIGTERM only set a flag (handlers run on the main thread, between steps), so a start-up or a
    # teardown is never cut half-way; a blocked signal mask would instead be inherited by the emulators.
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    local_settings = ROOT / "local.settings.json"
    if not local_settings.exists():
        shutil.copyfile(ROOT / "local.settings.example.json", local_settings)
        print("created local.settings.json from local.settings.example.json")

    stack = LocalStack(data_dir=args.data_dir, ports=StackPorts())
    stack.start()
    if stop_requested.is_set():
        stack.stop()
        return 0
    host: subprocess.Popen[bytes] | None = None
    try:
        env = {**os.environ, **app_settings(local_settings, stack)}
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
            "create a tenant: .venv/bin/python -m shared.cli create-tenant --name demo --tier new "
            "--local-settings local.settings.json"
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
