"""Worker processes: kill -9 mid-invocation fails the invocation (message redelivered) and the host restarts the
worker; SIGTERM lets running invocations finish within the grace period and abandons the rest."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient

from tests.funchost.conftest import HostFactory
from tests.funchost.host_process import read_events, wait_for
from tests.funchost.servicebus_messages import send

pytestmark = pytest.mark.slow  # each test runs real host (and emulator) processes


def test_killed_worker_is_restarted_and_its_message_redelivered(
    start_host: HostFactory, servicebus_connection: str, tmp_path: Path
) -> None:
    host = start_host({"PLAIN_QUEUE": "kill-plain", "FUNCTIONS_WORKER_PROCESS_COUNT": "2"})
    pids_before = host.worker_pids()
    assert len(pids_before) == 2
    send(servicebus_connection, "kill-plain", [("victim-1", None, {"sleep": 3})])
    events = tmp_path / "events.jsonl"
    first = wait_for(
        lambda: [event for event in read_events(events) if event["event"] == "start"],
        timeout=15,
        message="the invocation to start",
    )[0]
    assert first["pid"] in pids_before  # the function runs in a worker process, not in the host
    os.kill(first["pid"], signal.SIGKILL)

    ended = wait_for(
        lambda: [event for event in read_events(events) if event["event"] == "end"],
        timeout=20,
        message="the redelivered message to finish",
    )
    starts = [event for event in read_events(events) if event["event"] == "start"]
    assert [event["message_id"] for event in starts] == ["victim-1", "victim-1"]
    assert starts[1]["delivery_count"] > starts[0]["delivery_count"]  # abandoned, not lost or left locked
    assert starts[1]["pid"] != first["pid"]
    assert ended[0]["message_id"] == "victim-1"
    # Redelivered at once (abandon), not after the 5 s lock expiry.
    assert starts[1]["t"] - first["t"] < 3.5 + 1.0

    workers = wait_for(
        lambda: (
            [w for w in host.get_json("/admin/host/workers") if w["ready"]] if len(host.worker_pids()) == 2 else None
        ),
        timeout=15,
        message="two live workers again",
    )
    assert first["pid"] not in [worker["pid"] for worker in workers]
    assert sum(worker["restarts"] for worker in workers) == 1
    log = host.log()
    assert "Executed 'Functions.plain_worker' (Failed" in log and "WorkerDiedError" in log
    assert "Executed 'Functions.plain_worker' (Succeeded" in log


def test_function_timeout_fails_the_invocation_and_restarts_its_worker(start_host: HostFactory) -> None:
    host = start_host(host_json_changes={"functionTimeout": "00:00:02"})
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(f"{host.base_url}/api/slow?seconds=20", timeout=30)
    assert failed.value.code == 500
    assert 1.5 < time.monotonic() - started < 6
    assert "FunctionTimeoutError" in host.log()
    workers = wait_for(
        lambda: [w for w in host.get_json("/admin/host/workers") if w["ready"] and w["restarts"] == 1],
        timeout=15,
        message="the worker to be restarted",
    )
    assert len(workers) == 1


def test_sigterm_finishes_short_invocations_and_abandons_long_ones(
    start_host: HostFactory, servicebus_connection: str, tmp_path: Path
) -> None:
    host = start_host({"SESSION_QUEUE": "shutdown-sessions"})  # the fixture's host runs with --shutdown-grace 3
    send(
        servicebus_connection,
        "shutdown-sessions",
        [("short-1", "short", {"sleep": 1.5}), ("long-1", "long", {"sleep": 30})],
    )
    events = tmp_path / "events.jsonl"
    wait_for(lambda: len(read_events(events)) == 2, timeout=15, message="both invocations to start")
    started = time.monotonic()
    assert host.stop() == 0
    assert time.monotonic() - started < 10
    by_message = {(event["message_id"], event["event"]) for event in read_events(events)}
    assert by_message == {("short-1", "start"), ("short-1", "end"), ("long-1", "start")}
    assert host.log().rstrip().endswith("stopped")
    # The short one was completed; the long one was abandoned, so it is back at once with a higher count.
    with (
        ServiceBusClient.from_connection_string(servicebus_connection) as client,
        client.get_queue_receiver("shutdown-sessions", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=3) as receiver,
    ):
        left = receiver.receive_messages(max_message_count=10, max_wait_time=2)
        assert [str(message.message_id) for message in left] == ["long-1"]
        assert left[0].delivery_count == 1 + next(
            event["delivery_count"] for event in read_events(events) if event["message_id"] == "long-1"
        )
        receiver.complete_message(left[0])
