"""Start the emulator as a child process and wait until it answers (for pytest fixtures and scripts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "devstack" / "servicebus.config.json"


def connection_string(port: int = 5672, host: str = "localhost") -> str:
    """The connection string the unmodified azure-servicebus SDK uses for this emulator."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_emulator(
    config_path: str | Path = DEFAULT_CONFIG,
    port: int = 5672,
    data_dir: str | Path = REPO_ROOT / ".devstack-data" / "servicebus",
    admin_port: int = 5300,
    host: str = "127.0.0.1",
    timeout_s: float = 20.0,
    log_file: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Run `python -m devstack.servicebus_emulator ...` and return once its AMQP port accepts connections.

    Stop it with `process.terminate(); process.wait()` (SIGTERM closes it cleanly).
    """
    command = [
        sys.executable, "-m", "devstack.servicebus_emulator",
        "--config", str(config_path), "--host", host, "--port", str(port),
        "--data-dir", str(data_dir), "--admin-port", str(admin_port),
    ]
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=output, stderr=output, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"servicebus emulator exited with {process.returncode} during start-up")
        if _answers(host, port) and (not admin_port or _answers(host, admin_port)):
            return process
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise TimeoutError(f"servicebus emulator did not answer on {host}:{port} within {timeout_s} s")
