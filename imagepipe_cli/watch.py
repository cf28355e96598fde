"""Following a job until it ends: a live progress bar on a terminal (rich), one line per change otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from imagepipe_cli.api import TERMINAL_STATES, ApiClient, ApiFailure, ExitCode

# Failures to read the status in a row (the API restarting, a network blip) tolerated before giving up.
MAX_CONSECUTIVE_FAILURES = 5


def done(status: dict[str, Any]) -> int:
    counts = status.get("counts") or {}
    return int(counts.get("succeeded", 0)) + int(counts.get("failed", 0)) + int(counts.get("skipped", 0))


def failed(status: dict[str, Any]) -> int:
    return int((status.get("counts") or {}).get("failed", 0))


def rate_text(status: dict[str, Any]) -> str:
    rate = status.get("images_per_second")
    return "-" if rate is None else f"{rate:.1f}"


def eta_text(status: dict[str, Any]) -> str:
    eta = status.get("eta_seconds")
    if eta is None or status.get("state") in TERMINAL_STATES:
        return "-"
    minutes, seconds = divmod(round(float(eta)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_line(status: dict[str, Any]) -> str:
    total = status.get("total_images")
    return (
        f"{status['job_id']} {status['state']}: {done(status)}/{'?' if total is None else total} done, "
        f"{failed(status)} failed, {rate_text(status)} images/s, ETA {eta_text(status)}"
    )


def watch_job(client: ApiClient, job_id: str, console: Console, interval: float) -> dict[str, Any]:
    """Polls the job's status until it ends and returns the last one."""
    if not console.is_terminal:
        return _watch_plain(client, job_id, console, interval)
    columns = (
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]} images/s"),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        task = progress.add_task(job_id, total=None, failed=0, rate="-", eta="-")
        for status in _statuses(client, job_id, interval):
            progress.update(
                task,
                description=f"{job_id} {status['state']}",
                total=status.get("total_images"),
                completed=done(status),
                failed=failed(status),
                rate=rate_text(status),
                eta=eta_text(status),
            )
        progress.stop_task(task)
    return status


def _watch_plain(client: ApiClient, job_id: str, console: Console, interval: float) -> dict[str, Any]:
    last = ""
    for status in _statuses(client, job_id, interval):
        line = progress_line(status)
        if line != last:
            console.print(line, highlight=False)
            last = line
    return status


def _statuses(client: ApiClient, job_id: str, interval: float) -> Any:
    failures = 0
    while True:
        try:
            status = client.job(job_id)
            failures = 0
        except ApiFailure as failure:
            failures += 1
            if failure.exit_code != ExitCode.UNAVAILABLE or failures >= MAX_CONSECUTIVE_FAILURES:
                raise
            time.sleep(interval)
            continue
        yield status
        if status.get("state") in TERMINAL_STATES:
            return
        time.sleep(interval)
