"""One emulator process for the feature tests, on free ports with a temporary data directory.

Every test gets queues of its own (named after the feature) so tests never see each other's messages.
Lock durations are short and SDK retries are off, so failures surface in seconds, not minutes. Senders run
without the SDK's keep-alive thread (keep_alive=0): closing one otherwise waits for that thread to wake.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusSender

from devstack.servicebus_emulator.launcher import connection_string, free_port, start_emulator

LOCK_DURATION_S = 2
MAX_DELIVERY_COUNT = 3

# Queues without sessions, one per feature test.
PLAIN_QUEUES = (
    "send-single",
    "send-batch",
    "receive-and-delete",
    "complete",
    "abandon",
    "defer",
    "dead-letter",
    "lock-expiry",
    "renew-lock",
    "auto-renew",
    "max-delivery",
    "schedule",
    "peek",
    "properties",
    "oversize",
    "oversize-raw",
    "counts",
    "async-plain",
    "admin-client",
    "garbage",
)
SESSION_QUEUES = (
    "session-next",
    "session-named",
    "session-expiry",
    "session-renew",
    "session-state",
    "session-async",
    "session-auto-renew",
)


def _queue(name: str, **overrides: Any) -> dict[str, Any]:
    properties = {
        "RequiresSession": False,
        "LockDuration": f"PT{LOCK_DURATION_S}S",
        "MaxDeliveryCount": MAX_DELIVERY_COUNT,
        "DefaultMessageTimeToLive": "P14D",
        "DeadLetteringOnMessageExpiration": False,
    }
    properties.update(overrides)
    return {"Name": name, "Properties": properties}


def feature_config() -> dict[str, Any]:
    queues = [_queue(name) for name in PLAIN_QUEUES]
    queues += [_queue(name, RequiresSession=True) for name in SESSION_QUEUES]
    # Held across several receiver opens (each costs the SDK about half a second): a longer lock.
    queues.append(_queue("session-exclusive", RequiresSession=True, LockDuration="PT15S"))
    queues.append(_queue("ttl-dead-letter", DeadLetteringOnMessageExpiration=True))
    queues.append(_queue("ttl-drop", DeadLetteringOnMessageExpiration=False))
    queues.append(_queue("duplicates", RequiresDuplicateDetection=True, DuplicateDetectionHistoryTimeWindow="PT1M"))
    return {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": queues}]}}


@dataclass(frozen=True)
class RunningEmulator:
    port: int
    admin_port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)


@pytest.fixture(scope="session")
def feature_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    root = tmp_path_factory.mktemp("servicebus-features")
    config_path = root / "config.json"
    config_path.write_text(json.dumps(feature_config()), encoding="utf-8")
    port, admin_port = free_port(), free_port()
    data_dir = root / "data"
    process = start_emulator(config_path, port, data_dir, admin_port, log_file=root / "emulator.log")
    try:
        yield RunningEmulator(port, admin_port, data_dir, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def sb_client(feature_emulator: RunningEmulator) -> Iterator[ServiceBusClient]:
    """A client that does not retry: the emulator answers at once or the test should fail."""
    with ServiceBusClient.from_connection_string(feature_emulator.connection_string, retry_total=0) as client:
        yield client


class SenderCache:
    """Senders kept open for the whole session: opening one costs the SDK about half a second."""

    def __init__(self, client: ServiceBusClient) -> None:
        self._client = client
        self._senders: dict[str, ServiceBusSender] = {}

    def __call__(self, queue: str) -> ServiceBusSender:
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._senders[queue] = self._client.get_queue_sender(queue, keep_alive=0)
            sender.__enter__()
        return sender

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()


@pytest.fixture(scope="session")
def senders(feature_emulator: RunningEmulator) -> Iterator[SenderCache]:
    with ServiceBusClient.from_connection_string(feature_emulator.connection_string, retry_total=0) as client:
        cache = SenderCache(client)
        try:
            yield cache
        finally:
            cache.close()
