"""Service Bus triggers against the real emulator: sessions, settlement, dead-lettering, lock renewal, limits."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.funchost.conftest import HostFactory
from tests.funchost.host_process import read_events, wait_for
from tests.funchost.servicebus_messages import receive_dead_letters, send

pytestmark = pytest.mark.slow  # each test runs real host (and emulator) processes


def _events(path: Path, kind: str, function: str) -> list[dict[str, Any]]:
    return [event for event in read_events(path) if event["event"] == kind and event["function"] == function]


def _max_overlap(intervals: list[tuple[float, float, str]]) -> int:
    """Largest number of distinct keys whose [start, end] intervals overlap at one moment."""
    moments = sorted({start for start, _, _ in intervals})
    return max((len({key for start, end, key in intervals if start <= moment < end}) for moment in moments), default=0)


def test_sessions_in_order_and_at_most_max_concurrent_sessions(
    start_host: HostFactory, servicebus_connection: str, tmp_path: Path
) -> None:
    start_host({"SESSION_QUEUE": "order-sessions"})
    sessions, per_session = ["a", "b", "c", "d"], 3
    send(
        servicebus_connection,
        "order-sessions",
        [(f"{session}-{index}", session, {"sleep": 0.3}) for index in range(per_session) for session in sessions],
    )
    events = tmp_path / "events.jsonl"
    wait_for(
        lambda: len(_events(events, "end", "session_worker")) >= len(sessions) * per_session,
        timeout=30,
        message="all session messages processed",
    )
    starts = _events(events, "start", "session_worker")
    ends = _events(events, "end", "session_worker")
    by_session: dict[str, list[str]] = defaultdict(list)
    for event in starts:
        by_session[event["session_id"]].append(event["message_id"])
    for session in sessions:
        assert by_session[session] == [f"{session}-{index}" for index in range(per_session)]  # in order, once each
    end_of = {event["message_id"]: event["t"] for event in ends}
    intervals = [(event["t"], end_of[event["message_id"]], event["session_id"]) for event in starts]
    # One message of a session at a time, and host.json maxConcurrentSessions = 2 sessions at once.
    for session in sessions:
        own = sorted((start, end) for start, end, key in intervals if key == session)
        assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(own))
    assert _max_overlap(intervals) == 2


def test_complete_on_success_abandon_on_exception_then_dead_letter(
    start_host: HostFactory, servicebus_connection: str, tmp_path: Path
) -> None:
    host = start_host({"SESSION_QUEUE": "fail-sessions"})  # MaxDeliveryCount 3 on this queue
    send(
        servicebus_connection,
        "fail-sessions",
        [("bad-1", "bad", {"fail": True}), ("good-1", "good", {"sleep": 0})],
    )
    events = tmp_path / "events.jsonl"
    wait_for(lambda: len(_events(events, "fail", "session_worker")) >= 3, timeout=30, message="three failures")
    dead = wait_for(
        lambda: receive_dead_letters(servicebus_connection, "fail-sessions", wait=1.0),
        timeout=15,
        message="the failing message in the dead-letter queue",
    )
    assert dead == ["bad-1"]
    attempts = [event for event in _events(events, "start", "session_worker") if event["message_id"] == "bad-1"]
    counts = [event["delivery_count"] for event in attempts]
    assert len(counts) == 3 and counts == sorted(set(counts)), counts  # abandoned: the count rises each time
    gaps = [later["t"] - earlier["t"] for earlier, later in itertools.pairwise(attempts)]
    # Redelivered at once: not after the 5 s lock expired, nor after the 1 s sessionIdleTimeout released the
    # session with the message still unsettled.
    assert all(gap < 0.8 for gap in gaps), gaps
    good = [event for event in _events(events, "start", "session_worker") if event["message_id"] == "good-1"]
    assert len(good) == 1  # completed on success: never redelivered
    assert "Executed 'Functions.session_worker' (Failed" in host.log()


def test_lock_is_renewed_beyond_the_lock_duration(
    start_host: HostFactory, servicebus_connection: str, tmp_path: Path
) -> None:
    host = start_host({"PLAIN_QUEUE": "renew-plain"})  # LockDuration PT2S on this queue
    send(servicebus_connection, "renew-plain", [("slow-1", None, {"sleep": 6})])
    events = tmp_path / "events.jsonl"
    wait_for(lambda: _events(events, "end", "plain_worker"), timeout=20, message="the slow message to finish")
    wait_for(lambda: "slow-1, DeliveryCount" in host.log(), timeout=5, message="the invocation log line")
    # Without renewal the lock would lapse after 2 s and the second receive loop would get the message again.
    assert [event["message_id"] for event in _events(events, "start", "plain_worker")] == ["slow-1"]
    assert "could not complete" not in host.log()
    send(servicebus_connection, "renew-plain", [("marker-1", None, {})])
    wait_for(lambda: len(_events(events, "end", "plain_worker")) == 2, timeout=10, message="the marker message")
    assert [event["message_id"] for event in _events(events, "start", "plain_worker")] == ["slow-1", "marker-1"]


def test_non_session_trigger_runs_at_most_max_concurrent_calls(
    start_host: HostFactory, servicebus_connection: str, tmp_path: Path
) -> None:
    start_host({"PLAIN_QUEUE": "calls-plain", "FUNCTIONS_WORKER_PROCESS_COUNT": "2"})
    send(servicebus_connection, "calls-plain", [(f"call-{index}", None, {"sleep": 0.8}) for index in range(6)])
    events = tmp_path / "events.jsonl"
    wait_for(lambda: len(_events(events, "end", "plain_worker")) == 6, timeout=20, message="six messages")
    end_of = {event["message_id"]: event["t"] for event in _events(events, "end", "plain_worker")}
    intervals = [
        (event["t"], end_of[event["message_id"]], event["message_id"])
        for event in _events(events, "start", "plain_worker")
    ]
    assert _max_overlap(intervals) == 2  # host.json maxConcurrentCalls = 2
    first = _events(events, "start", "plain_worker")[0]
    assert first["properties"] == {"test": "funchost"}  # application properties reach user_properties
