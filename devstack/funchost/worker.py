"""A worker process: imports the app once, then runs invocations sent by the host on a thread pool.

Like the Functions Python worker, synchronous functions run on a ThreadPoolExecutor whose size is
PYTHON_THREADPOOL_THREAD_COUNT, or Python's own default (min(32, cpu + 4)) when unset, which is what the worker
does on Python 3.9 and later; coroutine functions run on one event loop of the process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from devstack.funchost.app_loader import import_function_app, index_functions
from devstack.funchost.payloads import (
    HttpRequestData,
    Invocation,
    InvocationResult,
    WorkerReady,
    WorkerStartupFailed,
)
from devstack.funchost.trigger_objects import InvocationContext, build_trigger_object, http_response_data

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
_CONTEXT_PARAMETER = "context"


def thread_pool_size() -> int | None:
    """PYTHON_THREADPOOL_THREAD_COUNT, or None for ThreadPoolExecutor's default (the worker's 3.9+ behaviour)."""
    raw = os.environ.get(THREAD_COUNT_SETTING, "").strip()
    if not raw:
        return None
    count = int(raw)
    if count < 1:
        raise ValueError(f"{THREAD_COUNT_SETTING} must be at least 1")
    return count


class InvocationRunner:
    """Calls user functions with their trigger objects; one instance per worker process."""

    def __init__(self, script_root: Path) -> None:
        self._script_root = script_root
        app = import_function_app(script_root)
        self._indexed = index_functions(app)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="async-functions", daemon=True).start()

    def metadata(self) -> list[Any]:
        return [metadata for metadata, _ in self._indexed.values()]

    def run(self, invocation: Invocation) -> InvocationResult:
        try:
            metadata, function = self._indexed[invocation.function_name]
            user_function = function.get_user_function()
            arguments = {metadata.trigger["name"]: build_trigger_object(invocation.trigger_data)}
            if _CONTEXT_PARAMETER in inspect.signature(user_function).parameters:
                arguments[_CONTEXT_PARAMETER] = InvocationContext(
                    invocation.invocation_id, invocation.function_name, str(self._script_root)
                )
            if inspect.iscoroutinefunction(user_function):
                returned = asyncio.run_coroutine_threadsafe(user_function(**arguments), self._loop).result()
            else:
                returned = user_function(**arguments)
            response = http_response_data(returned) if isinstance(invocation.trigger_data, HttpRequestData) else None
        except Exception as error:
            logging.getLogger("funchost.worker").error(
                "function %s (%s) raised:\n%s",
                invocation.function_name,
                invocation.invocation_id,
                "".join(traceback.format_exception(error)),
            )
            return InvocationResult(invocation.invocation_id, False, error=f"{type(error).__name__}: {error}")
        return InvocationResult(invocation.invocation_id, True, http_response=response)


def run_worker(script_root: str, connection: Connection) -> None:
    """Process entry point (multiprocessing spawn target)."""
    # The host decides when workers stop: a Ctrl-C or a SIGTERM sent to the whole process group must not
    # interrupt invocations that the host is still letting finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="[worker %(process)d] %(levelname)s %(name)s: %(message)s")
    # The real worker forwards the Azure SDKs' INFO records too (per-request and per-link lines); on a
    # terminal they drown the app's own logs, so only their warnings are shown here.
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        runner = InvocationRunner(Path(script_root))
    except Exception as error:
        connection.send(WorkerStartupFailed("".join(traceback.format_exception(error))))
        return
    send_lock = threading.Lock()
    connection.send(WorkerReady(pid=os.getpid(), functions=runner.metadata()))

    def run_and_reply(invocation: Invocation) -> None:
        result = runner.run(invocation)
        with send_lock:
            try:
                connection.send(result)
            except (TypeError, ValueError, AttributeError) as error:  # pickling failed, e.g. an odd header value
                failure = InvocationResult(invocation.invocation_id, False, error=f"result not sendable: {error!r}")
                connection.send(failure)

    with ThreadPoolExecutor(max_workers=thread_pool_size(), thread_name_prefix="invocation") as pool:
        while True:
            try:
                message = connection.recv()
            except EOFError:
                return  # the host went away
            if message is None:
                return  # orderly stop: the executor finishes what it runs before the process exits
            pool.submit(run_and_reply, message)
