"""Timer trigger: rolls chunk results, dead letters and expansion progress up into job documents."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.services.context import get_context
from shared.services.rollup import report_json, roll_up_status

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%STATUS_TIMER_SCHEDULE%", run_on_startup=False, use_monitor=False)
def status_timer(timer: func.TimerRequest) -> None:
    report = roll_up_status(get_context())
    if report.jobs_changed or report.dead_letters_moved:
        log.info("status roll-up: %s", report_json(report))
