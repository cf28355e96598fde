"""FUNCTIONS_WORKER_PROCESS_COUNT worker processes owned by the host, restarted when one dies.

The host sends each invocation to the least busy live worker over a pipe. When a worker process exits
(crash, kill -9, function timeout), every invocation it was running fails at once and the worker is started
again, which is what the Functions host does: the trigger then abandons the message, so it is redelivered.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from devstack.funchost.payloads import (
    FunctionMetadata,
    Invocation,
    InvocationResult,
    TriggerData,
    WorkerReady,
    WorkerStartupFailed,
)
from devstack.funchost.worker import run_worker

PROCESS_COUNT_SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"
WORKER_STARTUP_TIMEOUT = 120.0
_RESTART_BACKOFF = 1.0

log = logging.getLogger("funchost")


class WorkerDiedError(RuntimeError):
    """The worker process running the invocation exited before answering."""


class FunctionTimeoutError(RuntimeError):
    """The invocation outlasted host.json functionTimeout; its worker was restarted."""


class WorkerStartupError(RuntimeError):
    """A worker process could not import or index the app."""


def worker_process_count() -> int:
    raw = os.environ.get(PROCESS_COUNT_SETTING, "").strip()
    count = int(raw) if raw else 1
    if not 1 <= count <= 10:
        raise ValueError(f"{PROCESS_COUNT_SETTING} must be between 1 and 10 (the platform's limit)")
    return count


@dataclass
class _WorkerSlot:
    index: int
    process: BaseProcess | None = None
    connection: Connection | None = None
    pid: int | None = None
    ready: bool = False
    restarts: int = 0
    pending: dict[str, Future[InvocationResult]] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerPool:
    def __init__(self, script_root: Path, process_count: int) -> None:
        self._script_root = script_root
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_WorkerSlot(index) for index in range(process_count)]
        self._changed = threading.Condition()
        self._stopping = False
        self.functions: list[FunctionMetadata] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> list[FunctionMetadata]:
        """Start every worker; returns the functions the app registered (from the first worker's index)."""
        for slot in self._slots:
            metadata = self._start_slot(slot)
            if not self.functions:
                self.functions = metadata
        return self.functions

    def _start_slot(self, slot: _WorkerSlot) -> list[FunctionMetadata]:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=run_worker,
            args=(str(self._script_root), child_end),
            name=f"funchost-worker-{slot.index}",
            # Not daemonic: like the real Python worker, a function may start processes of its own (the image
            # pipeline isolates decoding in a child). stop() ends the workers explicitly.
            daemon=False,
        )
        process.start()
        child_end.close()  # so the parent's recv() sees EOF as soon as the worker dies
        if not parent_end.poll(WORKER_STARTUP_TIMEOUT):
            process.kill()
            raise WorkerStartupError(f"worker {slot.index} did not report ready in {WORKER_STARTUP_TIMEOUT} s")
        try:
            first = parent_end.recv()
        except EOFError as error:
            raise WorkerStartupError(f"worker {slot.index} exited during startup") from error
        if isinstance(first, WorkerStartupFailed):
            process.join(5)
            raise WorkerStartupError(f"worker {slot.index} could not load the app:\n{first.error}")
        assert isinstance(first, WorkerReady)
        with self._changed:
            slot.process, slot.connection, slot.pid, slot.ready = process, parent_end, first.pid, True
            self._changed.notify_all()
        reader = threading.Thread(
            target=self._read_results, args=(slot,), name=f"worker-{slot.index}-results", daemon=True
        )
        reader.start()
        log.info("worker %d started (pid %d, %d functions)", slot.index, first.pid, len(first.functions))
        return first.functions

    def _read_results(self, slot: _WorkerSlot) -> None:
        connection = slot.connection
        assert connection is not None
        while True:
            try:
                result = connection.recv()
            except (EOFError, OSError):
                break
            with self._changed:
                future = slot.pending.pop(result.invocation_id, None)
                self._changed.notify_all()
            if future is not None:
                future.set_result(result)
        self._on_worker_exit(slot)

    def _on_worker_exit(self, slot: _WorkerSlot) -> None:
        process = slot.process
        if process is not None:
            process.join(5)
        with self._changed:
            slot.ready = False
            orphaned = list(slot.pending.values())
            slot.pending.clear()
            stopping = self._stopping
        exit_code = process.exitcode if process is not None else None
        for future in orphaned:
            future.set_exception(WorkerDiedError(f"worker {slot.index} (pid {slot.pid}) exited with {exit_code}"))
        if stopping:
            return
        log.warning(
            "worker %d (pid %s) exited with code %s during %d invocation(s); restarting",
            slot.index,
            slot.pid,
            exit_code,
            len(orphaned),
        )
        while not self._stopping:
            try:
                self._start_slot(slot)
                slot.restarts += 1
                return
            except WorkerStartupError as error:
                log.error("restarting worker %d failed: %s", slot.index, error)
                time.sleep(_RESTART_BACKOFF)

    def stop(self, grace: float) -> None:
        """Let running invocations finish for up to ``grace`` seconds, then end the workers."""
        deadline = time.monotonic() + grace
        with self._changed:
            self._stopping = True
            while any(slot.pending for slot in self._slots) and time.monotonic() < deadline:
                self._changed.wait(0.1)
        for slot in self._slots:
            if slot.connection is not None:
                try:
                    with slot.send_lock:
                        slot.connection.send(None)
                except OSError:
                    pass
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(max(0.1, deadline - time.monotonic()))
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join(5)

    # -- invocations -------------------------------------------------------------------------------

    def submit(self, function_name: str, trigger_data: TriggerData) -> tuple[str, Future[InvocationResult]]:
        invocation = Invocation(str(uuid.uuid4()), function_name, trigger_data)
        future: Future[InvocationResult] = Future()
        with self._changed:
            while True:
                if self._stopping:
                    raise WorkerDiedError("the host is stopping")
                live = [slot for slot in self._slots if slot.ready]
                if live:
                    break
                self._changed.wait(0.5)  # every worker is restarting
            slot = min(live, key=lambda candidate: len(candidate.pending))
            slot.pending[invocation.invocation_id] = future
        try:
            assert slot.connection is not None
            with slot.send_lock:
                slot.connection.send(invocation)
        except (OSError, ValueError) as error:
            with self._changed:
                slot.pending.pop(invocation.invocation_id, None)
            future.set_exception(WorkerDiedError(f"could not send to worker {slot.index}: {error}"))
        return invocation.invocation_id, future

    def wait(self, invocation_id: str, future: Future[InvocationResult], timeout: float | None) -> InvocationResult:
        """The result; on timeout the worker that runs it is killed (and restarted), failing the invocation."""
        try:
            return future.result(timeout)
        except FutureTimeoutError:
            self._kill_worker_running(invocation_id)
            raise FunctionTimeoutError(f"invocation {invocation_id} exceeded functionTimeout ({timeout} s)") from None

    def _kill_worker_running(self, invocation_id: str) -> None:
        with self._changed:
            owners = [slot for slot in self._slots if invocation_id in slot.pending]
        for slot in owners:
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    def describe(self) -> list[dict[str, Any]]:
        with self._changed:
            return [
                {
                    "index": slot.index,
                    "pid": slot.pid,
                    "ready": slot.ready,
                    "inFlight": len(slot.pending),
                    "restarts": slot.restarts,
                }
                for slot in self._slots
            ]
