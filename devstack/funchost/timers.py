"""Timer triggers: NCRONTAB (six fields, seconds first) or TimeSpan schedules, one execution at a time.

NCRONTAB is ``{second} {minute} {hour} {day} {month} {day-of-week}``; croniter's six-field form puts
seconds last, so it is read with ``second_at_beginning=True``. Times are UTC (WEBSITE_TIME_ZONE is not
honoured). A TimeSpan schedule (``hh:mm:ss``) fires at that interval after each start, as on dedicated plans.

Like the platform, a timer never overlaps itself: the next occurrence is waited for only after the running
invocation ends. When a run overran one or more occurrences, the latest missed one fires at once with
``past_due`` True (one catch-up, not one per missed occurrence).
"""

from __future__ import annotations

import datetime
import logging
import threading

from croniter import croniter

from devstack.funchost.host_config import parse_timespan
from devstack.funchost.invoker import Invoker
from devstack.funchost.payloads import TimerData

log = logging.getLogger("funchost")
_PAST_DUE_TOLERANCE = datetime.timedelta(seconds=0.5)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Schedule:
    """Occurrences of an NCRONTAB expression or a TimeSpan interval."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self._interval: datetime.timedelta | None = None
        fields = self.expression.split()
        if len(fields) == 1 and ":" in self.expression:
            self._interval = datetime.timedelta(seconds=parse_timespan(self.expression))
            if self._interval <= datetime.timedelta(0):
                raise ValueError(f"timer interval must be positive: {expression!r}")
        elif len(fields) == 6:
            croniter(self.expression, second_at_beginning=True)  # validates now, not at the first firing
        else:
            raise ValueError(
                f"timer schedule {expression!r} is neither a six-field NCRONTAB expression "
                "(second minute hour day month day-of-week) nor a TimeSpan hh:mm:ss"
            )

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        if self._interval is not None:
            return moment + self._interval
        upcoming: datetime.datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(
            datetime.datetime
        )
        return upcoming

    def latest_not_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        if self._interval is not None:
            return None  # an interval restarts from each run, so nothing is ever missed
        previous: datetime.datetime = croniter(
            self.expression, moment + datetime.timedelta(microseconds=1), second_at_beginning=True
        ).get_prev(datetime.datetime)
        return previous


class TimerTrigger:
    def __init__(
        self,
        function_name: str,
        schedule: Schedule,
        run_on_startup: bool,
        invoker: Invoker,
        stopping: threading.Event,
    ) -> None:
        self.function_name = function_name
        self._schedule = schedule
        self._run_on_startup = run_on_startup
        self._invoker = invoker
        self._stopping = stopping
        self._thread = threading.Thread(target=self._run, name=f"timer-{function_name}", daemon=True)
        self._last: datetime.datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _fire(self, due: datetime.datetime, next_due: datetime.datetime) -> None:
        now = _utcnow()
        status = {
            "Last": (self._last or now).isoformat(),
            "Next": next_due.isoformat(),
            "LastUpdated": now.isoformat(),
        }
        data = TimerData(past_due=now - due > _PAST_DUE_TOLERANCE, schedule_status=status)
        self._invoker.invoke(self.function_name, data, trigger_detail=f"schedule {self._schedule.expression}")
        self._last = now

    def _run(self) -> None:
        due = _utcnow()
        if self._run_on_startup:
            self._fire(due, self._schedule.next_after(due))
        due = self._schedule.next_after(due)
        while not self._stopping.is_set():
            if self._stopping.wait(max(0.0, (due - _utcnow()).total_seconds())):
                return
            self._fire(due, self._schedule.next_after(due))
            now = _utcnow()
            missed = self._schedule.latest_not_after(now)
            due = missed if missed is not None and missed > due else self._schedule.next_after(max(due, now))
