"""Run ``python -m devstack.funchost`` as a real subprocess on a copy of the sample app, for the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
READY_MARKER = "funchost ready"
# A timer schedule that never fires during a test (midnight on 1 January).
NEVER = "0 0 0 1 1 *"


def prepare_script_root(
    directory: Path, settings: dict[str, str], host_json_changes: dict[str, Any] | None = None
) -> Path:
    """A copy of the sample app with a local.settings.json of ``settings`` and top-level host.json changes."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE_APP / "function_app.py", directory / "function_app.py")
    host_json = {**json.loads((SAMPLE_APP / "host.json").read_text()), **(host_json_changes or {})}
    (directory / "host.json").write_text(json.dumps(host_json))
    values = {"FUNCTIONS_WORKER_RUNTIME": "python", "TICK_SCHEDULE": NEVER, **settings}
    (directory / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return directory


class FunctionsHostProcess:
    def __init__(self, script_root: Path, port: int, env_overrides: dict[str, str] | None = None) -> None:
        self.script_root = script_root
        self.port = port
        self.log_path = script_root / "host.log"
        self._env_overrides = env_overrides or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FUNCTIONS_")}
        env.update(self._env_overrides, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.funchost",
                    "--script-root",
                    str(self.script_root),
                    "--port",
                    str(self.port),
                    "--shutdown-grace",
                    "3",
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"host exited with {self.process.returncode} during start:\n{self.log()}")
            if READY_MARKER in self.log():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"host not ready after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as a terminal or a supervisor would; kill -9 if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
            return json.loads(response.read())

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes, from the host's /admin/host/workers endpoint."""
        return [worker["pid"] for worker in self.get_json("/admin/host/workers") if worker["ready"]]


def read_events(path: Path) -> list[dict[str, Any]]:
    """The sample app's event lines (see record() in sample_app/function_app.py)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition: Any, timeout: float, interval: float = 0.1, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
