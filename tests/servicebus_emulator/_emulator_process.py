"""Start, stop, restart and kill -9 a Service Bus emulator process for the durability and load tests.

Launches the documented command (``python -m devstack.servicebus_emulator --config FILE --host 127.0.0.1
--port PORT --data-dir DIR --admin-port N``) as a real subprocess, waits for its ``servicebus-emulator ready``
line, and keeps its output in a log file in the data directory so a failing test can show it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_MARKER = "servicebus-emulator ready"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(port: int) -> str:
    return (
        f"Endpoint=sb://localhost:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


def queue_config(
    name: str,
    *,
    requires_session: bool = False,
    lock_duration: str = "PT5S",
    max_delivery_count: int = 10,
    default_ttl: str = "P14D",
    dead_letter_on_expiration: bool = True,
) -> dict[str, Any]:
    return {
        "Name": name,
        "Properties": {
            "RequiresSession": requires_session,
            "LockDuration": lock_duration,
            "MaxDeliveryCount": max_delivery_count,
            "DefaultMessageTimeToLive": default_ttl,
            "DeadLetteringOnMessageExpiration": dead_letter_on_expiration,
        },
    }


def write_config(path: Path, queues: list[dict[str, Any]]) -> Path:
    config = {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": queues}]}}
    path.write_text(json.dumps(config, indent=2))
    return path


class EmulatorProcess:
    """One emulator on a fixed port and data directory, restartable (SIGTERM or kill -9) on both."""

    def __init__(self, config_path: Path, data_dir: Path, port: int | None = None) -> None:
        self.config_path = config_path
        self.data_dir = data_dir
        self.port = port or free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.has_started = False
        self.log_path = data_dir.parent / f"{data_dir.name}-emulator.log"

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait for the ready line. Restarts reuse the ports; a first start whose free port was
        taken by someone else in the meantime retries on new ports."""
        for _ in range(3):
            error = self._start_once(timeout)
            if error is None:
                self.has_started = True
                return
            if self.has_started or "Address already in use" not in error:
                break
            self.port, self.admin_port = free_port(), free_port()
        raise RuntimeError(error)

    def _start_once(self, timeout: float) -> str | None:
        assert self.proc is None or self.proc.poll() is not None, "emulator already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            offset = log.tell()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.servicebus_emulator",
                    "--config",
                    str(self.config_path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--admin-port",
                    str(self.admin_port),
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"emulator exited with {self.proc.returncode} during start:\n{self.log_tail()}"
            with self.log_path.open("rb") as f:
                f.seek(offset)
                if READY_MARKER.encode() in f.read() and self._port_open():
                    return None
            time.sleep(0.05)
        self.kill()
        return f"emulator not ready after {timeout}s:\n{self.log_tail()}"

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (kills with SIGKILL and raises if it hangs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"emulator ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        """kill -9: no chance to flush or close anything."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, *, hard: bool) -> None:
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def counts(self) -> dict[str, dict[str, int]]:
        """Per-queue counts from the admin endpoint's `$counts` (HTTPS with the emulator's self-signed
        certificate: verification is off for this one local request only)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        url = f"https://127.0.0.1:{self.admin_port}/$counts"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            data: dict[str, dict[str, int]] = json.loads(response.read())
        return data

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@contextmanager
def running_emulator(tmp_path: Path, queues: list[dict[str, Any]], name: str = "sb") -> Iterator[EmulatorProcess]:
    config = write_config(tmp_path / f"{name}-config.json", queues)
    emulator = EmulatorProcess(config, tmp_path / f"{name}-data")
    emulator.start()
    try:
        yield emulator
    finally:
        # Captured by pytest and shown only when a test fails.
        print(f"--- emulator log ({emulator.log_path}) ---\n{emulator.log_tail()}")
        if emulator.proc is not None and emulator.proc.poll() is None:
            with suppress(RuntimeError):
                emulator.stop()


def sb_client(emulator: EmulatorProcess, **kwargs: Any) -> ServiceBusClient:
    """A ServiceBusClient for the emulator with no SDK retries (errors surface at once)."""
    kwargs.setdefault("retry_total", 0)
    return ServiceBusClient.from_connection_string(emulator.connection_string, **kwargs)


def close_quietly(*handlers: Any) -> None:
    """Close SDK handlers whose broker may have been killed under them."""
    for handler in handlers:
        with suppress(Exception):
            handler.close()


def receive_n(receiver: Any, count: int, timeout: float, batch: int = 50) -> list[Any]:
    """Receive until `count` messages arrived or `timeout` passed (returns what arrived)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got.extend(receiver.receive_messages(max_message_count=min(batch, count - len(got)), max_wait_time=left))
    return got
