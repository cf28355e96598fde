"""The local stack: Azurite, the Cosmos DB emulator and the Service Bus emulator on 127.0.0.1.

Used by `devstack/up` (default ports), by the pytest session fixture (free ports, temporary data) and by hand:

    .venv/bin/python -m devstack.stack start [--data-dir .devstack-data]   # prints the settings, keeps running
    .venv/bin/python -m devstack.stack stop  [--data-dir .devstack-data]   # stops what a detached start left

Every process is started by this module, recorded by PID in `<data-dir>/stack.pids`, and stopped by that PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "devstack" / "node_modules" / ".bin"
SERVICEBUS_CONFIG = ROOT / "devstack" / "servicebus.config.json"

# Well-known development credentials of the emulators (public, documented by Microsoft; not secrets).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

ALL_SERVICES = ("azurite", "cosmos", "servicebus")
# Where each service keeps its data under the stack's data directory.
_DATA_SUBDIRECTORY = {"azurite": "azurite", "cosmos": "cosmos", "servicebus": "servicebus"}


@dataclass(frozen=True)
class StackPorts:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    cosmos: int = 8081
    servicebus: int = 5672
    servicebus_admin: int = 5300

    @classmethod
    def free(cls) -> StackPorts:
        """Ports the OS says are free now, so a test stack never collides with a running dev stack."""
        ports = _free_ports(6)
        return cls(*ports)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class StackProcess:
    name: str
    pid: int
    port: int
    log: str


@dataclass
class LocalStack:
    data_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    servicebus_config: Path = SERVICEBUS_CONFIG
    # Keep the Cosmos emulator's state in `<data_dir>/cosmos` across restarts (Azurite and the Service Bus emulator
    # always keep theirs on disk). Off for a throw-away stack that is never restarted: snapshots cost CPU.
    persist_cosmos: bool = True
    processes: list[StackProcess] = field(default_factory=list)
    _popens: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # --- settings the app and tests use ---------------------------------------------------------
    @property
    def storage_connection_string(self) -> str:
        p = self.ports
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{p.blob}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{p.queue}/{AZURITE_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{p.table}/{AZURITE_ACCOUNT};"
        )

    @property
    def cosmos_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.ports.cosmos}/"

    @property
    def cosmos_key(self) -> str:
        return COSMOS_EMULATOR_KEY

    @property
    def servicebus_connection_string(self) -> str:
        return (
            f"Endpoint=sb://localhost:{self.ports.servicebus};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    @property
    def servicebus_admin_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.ports.servicebus_admin}"

    def settings_env(self) -> dict[str, str]:
        """The app settings (environment variables) that point the app at this stack."""
        return {
            "AzureWebJobsStorage": self.storage_connection_string,
            "ServiceBusConnection": self.servicebus_connection_string,
            "SERVICEBUS_ADMIN_ENDPOINT": self.servicebus_admin_endpoint,
            "COSMOS_ENDPOINT": self.cosmos_endpoint,
            "COSMOS_KEY": self.cosmos_key,
            "COSMOS_EMULATOR_INSECURE_TLS": "true",
        }

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, services: Sequence[str] = ALL_SERVICES, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        try:
            for name in services:
                self._start_one(name)
            deadline = time.monotonic() + timeout
            for proc in self.processes:
                self._wait_until_answers(proc, deadline)
        except BaseException:
            self.stop()
            raise
        self._write_pids()

    def _command(self, name: str) -> tuple[list[str], int]:
        p = self.ports
        if name == "azurite":
            location = self.data_dir / "azurite"
            location.mkdir(exist_ok=True)
            return [
                str(NODE_BIN / "azurite"),
                "--silent",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--location",
                str(location),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(p.blob),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(p.queue),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(p.table),
            ], p.blob
        if name == "cosmos":
            # Through a launcher that turns on keep-alive (the package's CLI closes every connection).
            launcher = ROOT / "devstack" / "cosmos_server.js"
            node = shutil.which("node") or "node"
            command = [node, str(launcher), "--host", "127.0.0.1", "--port", str(p.cosmos)]
            if self.persist_cosmos:
                command += ["--data-dir", str(self.data_dir / "cosmos")]
            return command, p.cosmos
        if name == "servicebus":
            return [
                sys.executable,
                "-m",
                "devstack.servicebus_emulator",
                "--config",
                str(self.servicebus_config),
                "--host",
                "127.0.0.1",
                "--port",
                str(p.servicebus),
                "--admin-port",
                str(p.servicebus_admin),
                "--data-dir",
                str(self.data_dir / "servicebus"),
            ], p.servicebus
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(ALL_SERVICES)}")

    def _start_one(self, name: str) -> None:
        command, port = self._command(name)
        if port_answers(port):
            raise RuntimeError(f"{name}: port {port} on 127.0.0.1 is already in use (is a stack running?)")
        log_path = self.data_dir / "logs" / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._popens[popen.pid] = popen
        self.processes.append(StackProcess(name, popen.pid, port, str(log_path)))

    def _wait_until_answers(self, proc: StackProcess, deadline: float) -> None:
        popen = self._popens.get(proc.pid)
        while time.monotonic() < deadline:
            if popen is not None and popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {popen.returncode}; see {proc.log}:\n{_tail(proc.log)}")
            if port_answers(proc.port):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{proc.name} did not answer on 127.0.0.1:{proc.port}; see {proc.log}:\n{_tail(proc.log)}")

    def restart(self, name: str, *, kill: bool = False, down_seconds: float = 0.0, timeout: float = 60.0) -> None:
        """Stops one service (SIGTERM, or SIGKILL with `kill`: no chance to save anything) and starts it again on
        the same port with the same data directory, once the port is free again."""
        proc = self.process(name)
        popen = self._popens.pop(proc.pid, None)
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            if popen is not None:
                popen.wait(10)
        else:
            stop_pid(proc.pid, grace=15, popen=popen)
        self.processes.remove(proc)
        deadline = time.monotonic() + timeout
        while port_answers(proc.port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: port {proc.port} still answers after the stop")
            time.sleep(0.05)
        time.sleep(down_seconds)
        self._start_one(name)
        self._wait_until_answers(self.process(name), time.monotonic() + timeout)
        self._write_pids()

    def process(self, name: str) -> StackProcess:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise LookupError(f"{name} is not running in this stack")

    def reset(self, services: Sequence[str] = ALL_SERVICES) -> list[Path]:
        """Deletes the data of the given services (the stack must be stopped). Returns the directories removed."""
        if self.processes:
            raise RuntimeError("stop the stack before resetting its data")
        removed = []
        for name in services:
            directory = self.data_dir / _DATA_SUBDIRECTORY[name]
            if directory.exists():
                shutil.rmtree(directory)
                removed.append(directory)
        return removed

    def stop(self, grace: float = 10.0) -> None:
        for proc in reversed(self.processes):
            stop_pid(proc.pid, grace, self._popens.get(proc.pid))
        self.processes.clear()
        self._popens.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "stack.pids").unlink()

    def _write_pids(self) -> None:
        record = {"ports": asdict(self.ports), "processes": [asdict(p) for p in self.processes]}
        (self.data_dir / "stack.pids").write_text(json.dumps(record, indent=2))

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def example_app_settings() -> dict[str, str]:
    """The app settings a user starts from (local.settings.example.json's Values): what a benchmark should run with,
    so that it measures what users get and does not depend on a local.settings.json left by ./devstack/up."""
    values: dict[str, str] = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    return values


def provision_app_stores(settings_env: dict[str, str]) -> None:
    """Creates the Cosmos database and containers and the blob containers the app uses, on the local emulators
    (in Azure the Bicep creates them)."""
    from shared.adapters.blobs import BlobStore
    from shared.adapters.cosmos import make_cosmos_client, provision_local
    from shared.config import Settings

    settings = Settings.from_env(settings_env)
    provision_local(make_cosmos_client(settings), settings)
    BlobStore.from_settings(settings).provision_local()


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def start_functions_host(
    settings_env: dict[str, str], port: int, log_path: Path, timeout: float = 90.0, extra_args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Starts the development Functions host on function_app.py with these app settings (they win over the
    caller's FUNCTIONS_* environment) and returns once it reports ready. Stop it with stop_pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCTIONS_")}
    env.update(settings_env, PYTHONUNBUFFERED="1")
    start_offset = log_path.stat().st_size if log_path.exists() else 0  # an appended log may hold an earlier "ready"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.funchost", "--script-root", str(ROOT), "--port", str(port), *extra_args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while "funchost ready" not in _read_from(log_path, start_offset):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_pid(process.pid, grace=5, popen=process)
            raise RuntimeError(f"the Functions host did not start:\n{_tail(str(log_path), 60)}")
        time.sleep(0.1)
    return process


def stop_pid(pid: int, grace: float = 10.0, popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Only the PID this module started."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not _pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if popen is not None:
        popen.wait(5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running_stack(data_dir: Path, ports: StackPorts | None = None) -> Iterator[LocalStack]:
    stack = LocalStack(data_dir=data_dir, ports=ports or StackPorts())
    with stack:
        yield stack


def stop_recorded(data_dir: Path) -> int:
    """Stops the processes recorded in `<data-dir>/stack.pids`. Returns how many were stopped."""
    record_path = data_dir / "stack.pids"
    if not record_path.exists():
        return 0
    record = json.loads(record_path.read_text())
    for proc in reversed(record["processes"]):
        stop_pid(int(proc["pid"]))
    record_path.unlink()
    return len(record["processes"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".devstack-data")
    parser.add_argument("--services", default=",".join(ALL_SERVICES))
    args = parser.parse_args(argv)
    if args.action == "stop":
        print(f"stopped {stop_recorded(args.data_dir)} process(es)")
        return 0
    stack = LocalStack(data_dir=args.data_dir)
    stack.start(services=[s for s in args.services.split(",") if s])
    for proc in stack.processes:
        print(f"{proc.name}: pid {proc.pid}, 127.0.0.1:{proc.port}, log {proc.log}")
    print("stack is up; Ctrl-C stops it", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
