"""Fixtures: one Service Bus emulator for the package (short lock durations), and development hosts on
copies of the sample app, each stopped by SIGTERM at the end of its test."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.servicebus_emulator.launcher import connection_string, free_port, start_emulator
from tests.funchost.host_process import FunctionsHostProcess, prepare_script_root

SESSION_QUEUES = {"idle-sessions": 10, "order-sessions": 10, "fail-sessions": 3, "shutdown-sessions": 10}
PLAIN_QUEUES = {"renew-plain": "PT2S", "kill-plain": "PT5S", "calls-plain": "PT5S", "idle-plain": "PT5S"}


def _queue(name: str, *, sessions: bool, lock: str, max_delivery: int) -> dict[str, Any]:
    return {
        "Name": name,
        "Properties": {
            "RequiresSession": sessions,
            "LockDuration": lock,
            "MaxDeliveryCount": max_delivery,
            "DefaultMessageTimeToLive": "PT1H",
            "DeadLetteringOnMessageExpiration": False,
        },
    }


@pytest.fixture(scope="package")
def servicebus_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("funchost-servicebus")
    queues = [_queue(name, sessions=True, lock="PT5S", max_delivery=count) for name, count in SESSION_QUEUES.items()]
    queues += [_queue(name, sessions=False, lock=lock, max_delivery=10) for name, lock in PLAIN_QUEUES.items()]
    config = root / "config.json"
    config.write_text(json.dumps({"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": queues}]}}))
    port = free_port()
    process: subprocess.Popen[bytes] = start_emulator(
        config, port=port, data_dir=root / "data", admin_port=0, log_file=root / "emulator.log"
    )
    try:
        yield connection_string(port)
    finally:
        process.terminate()
        process.wait(15)


HostFactory = Callable[..., FunctionsHostProcess]


@pytest.fixture
def start_host(tmp_path: Path, servicebus_connection: str) -> Iterator[HostFactory]:
    """start_host(settings, env, host_json_changes) -> a running host; settings go to local.settings.json."""
    started: list[FunctionsHostProcess] = []

    def start(
        settings: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        host_json_changes: dict[str, Any] | None = None,
    ) -> FunctionsHostProcess:
        values = {
            "ServiceBusConnection": servicebus_connection,
            "SESSION_QUEUE": "idle-sessions",
            "PLAIN_QUEUE": "idle-plain",
            "SAMPLE_EVENTS_FILE": str(tmp_path / "events.jsonl"),
            **(settings or {}),
        }
        root = prepare_script_root(tmp_path / f"app{len(started)}", values, host_json_changes)
        host = FunctionsHostProcess(root, free_port(), env)
        started.append(host)
        host.start()
        return host

    yield start
    for host in started:
        host.stop()
