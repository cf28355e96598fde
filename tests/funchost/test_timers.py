"""Timer triggers: a six-field NCRONTAB schedule fires on its seconds; a timer never overlaps itself."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.funchost.conftest import HostFactory
from tests.funchost.host_process import read_events, wait_for

pytestmark = pytest.mark.slow  # each test runs real host (and emulator) processes


def _starts(events: Path) -> list[dict[str, Any]]:
    return [event for event in read_events(events) if event["event"] == "start"]


def test_timer_fires_on_a_seconds_schedule(start_host: HostFactory, tmp_path: Path) -> None:
    start_host({"TICK_SCHEDULE": "*/2 * * * * *"})
    events = tmp_path / "events.jsonl"
    starts = wait_for(lambda: _starts(events) if len(_starts(events)) >= 3 else None, 10, message="3 runs")[:3]
    seconds = [event["t"] % 60 for event in starts]
    # Seconds first: the runs land on even seconds, two seconds apart (not every two minutes).
    assert all(second % 2 < 0.5 for second in seconds), seconds
    gaps = [later["t"] - earlier["t"] for earlier, later in itertools.pairwise(starts)]
    assert all(1.5 < gap < 2.5 for gap in gaps), gaps
    assert not any(event["past_due"] for event in starts)


def test_timer_runs_one_at_a_time_and_reports_past_due(start_host: HostFactory, tmp_path: Path) -> None:
    start_host({"TICK_SCHEDULE": "* * * * * *", "TICK_SLEEP": "1.8", "FUNCTIONS_WORKER_PROCESS_COUNT": "2"})
    events = tmp_path / "events.jsonl"
    wait_for(lambda: sum(event["event"] == "end" for event in read_events(events)) >= 3, timeout=12, message="3 runs")
    runs = read_events(events)
    open_runs = 0
    for event in runs:  # in file order, which is time order
        open_runs += 1 if event["event"] == "start" else -1
        assert open_runs <= 1, "a timer run started while the previous one was still running"
    assert any(event.get("past_due") for event in runs if event["event"] == "start")
