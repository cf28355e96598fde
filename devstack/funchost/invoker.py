"""Runs one invocation on the worker pool and writes the host's one log line for it."""

from __future__ import annotations

import logging
import time

from devstack.funchost.payloads import InvocationResult, TriggerData
from devstack.funchost.worker_pool import FunctionTimeoutError, WorkerDiedError, WorkerPool

log = logging.getLogger("funchost")
_MAX_ERROR_IN_LOG = 300


class Invoker:
    def __init__(self, pool: WorkerPool, function_timeout: float | None) -> None:
        self._pool = pool
        self._function_timeout = function_timeout

    def invoke(self, function_name: str, trigger_data: TriggerData, trigger_detail: str = "") -> InvocationResult:
        """Blocks until the function returns, raises, times out or loses its worker; never raises itself."""
        started = time.monotonic()
        invocation_id = "-"
        try:
            invocation_id, future = self._pool.submit(function_name, trigger_data)
            result = self._pool.wait(invocation_id, future, self._function_timeout)
        except (WorkerDiedError, FunctionTimeoutError) as error:
            result = InvocationResult(invocation_id, False, error=f"{type(error).__name__}: {error}")
        duration_ms = (time.monotonic() - started) * 1000
        outcome = "Succeeded" if result.succeeded else "Failed"
        detail = f", {trigger_detail}" if trigger_detail else ""
        # Only names, ids and the error text go to the log: never setting values, which may be secrets.
        failure = f": {(result.error or '')[:_MAX_ERROR_IN_LOG]}" if not result.succeeded else ""
        log.info(
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms%s)%s",
            function_name,
            outcome,
            result.invocation_id,
            duration_ms,
            detail,
            failure,
        )
        return result
