"""The host process: loads settings and host.json, starts the worker processes, then the triggers.

It owns everything that is not user code (HTTP server, Service Bus receivers and lock renewal, timers), as
the Functions host does, and dispatches each invocation to a worker process.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.funchost.host_config import HostConfig, load_host_config
from devstack.funchost.http_server import FunctionsHttpServer
from devstack.funchost.invoker import Invoker
from devstack.funchost.payloads import FunctionMetadata
from devstack.funchost.routing import RouteTable
from devstack.funchost.settings import apply_local_settings, resolve_binding_expression
from devstack.funchost.timers import Schedule, TimerTrigger
from devstack.funchost.worker_pool import WorkerPool, worker_process_count

if TYPE_CHECKING:
    from devstack.funchost.servicebus_trigger import ServiceBusTrigger

log = logging.getLogger("funchost")

READY_MARKER = "funchost ready"
HTTP_TRIGGER, TIMER_TRIGGER, SERVICE_BUS_TRIGGER = "httptrigger", "timertrigger", "servicebustrigger"
# Bindings the host itself satisfies; anything else is reported as not supported by this host.
_HANDLED_BINDINGS = {HTTP_TRIGGER, TIMER_TRIGGER, SERVICE_BUS_TRIGGER, "http"}


def _is_disabled(function_name: str) -> bool:
    """The platform's per-function switch: app setting ``AzureWebJobs.<name>.Disabled`` = true or 1."""
    return os.environ.get(f"AzureWebJobs.{function_name}.Disabled", "").strip().lower() in ("true", "1")


class FunctionsHost:
    def __init__(self, script_root: Path, bind_host: str, port: int, shutdown_grace: float) -> None:
        self.script_root = script_root.resolve()
        self._bind_host = bind_host
        self._port = port
        self._shutdown_grace = shutdown_grace
        self.stopping = threading.Event()
        self.config: HostConfig = HostConfig()
        self.functions: list[FunctionMetadata] = []
        self._pool: WorkerPool | None = None
        self._http: FunctionsHttpServer | None = None
        self._timers: list[TimerTrigger] = []
        self._service_bus: list[ServiceBusTrigger] = []

    @property
    def port(self) -> int:
        return self._http.server_address[1] if self._http else self._port

    def start(self) -> None:
        applied = apply_local_settings(self.script_root)
        log.info("loaded %d setting(s) from local.settings.json (names only are logged)", len(applied))
        self.config = load_host_config(self.script_root)
        self._pool = WorkerPool(self.script_root, worker_process_count())
        self.functions = self._pool.start()
        invoker = Invoker(self._pool, self.config.function_timeout)
        routes = RouteTable()
        for function in self.functions:
            if _is_disabled(function.name):
                log.info("function %s is disabled (AzureWebJobs.%s.Disabled)", function.name, function.name)
                continue
            self._warn_unsupported_bindings(function)
            trigger = function.trigger
            kind = function.trigger_type.lower()
            if kind == HTTP_TRIGGER:
                routes.add(function.name, trigger.get("route") or function.name, trigger.get("methods"))
            elif kind == TIMER_TRIGGER:
                schedule = Schedule(resolve_binding_expression(trigger["schedule"]))
                timer = TimerTrigger(function.name, schedule, bool(trigger.get("runOnStartup")), invoker, self.stopping)
                self._timers.append(timer)
            elif kind == SERVICE_BUS_TRIGGER:
                self._add_service_bus_trigger(function, invoker)
            else:
                log.warning("function %s: trigger %s is not supported by the development host", function.name, kind)
        self._http = FunctionsHttpServer(
            (self._bind_host, self._port),
            routes,
            self.config.route_prefix,
            invoker,
            {
                "/admin/host/status": lambda: {"state": "Running", "workers": self._pool_view()},
                "/admin/host/workers": self._pool_view,
                "/admin/functions": self._functions_view,
            },
        )
        threading.Thread(target=self._http.serve_forever, name="http-server", daemon=True).start()
        for timer in self._timers:
            timer.start()
        for receiver in self._service_bus:
            receiver.start()
        self._announce(routes)

    def _add_service_bus_trigger(self, function: FunctionMetadata, invoker: Invoker) -> None:
        # Imported here so that HTTP- and timer-only apps do not need the Service Bus SDK.
        from devstack.funchost.servicebus_trigger import ServiceBusTrigger, UnsupportedTriggerError

        try:
            trigger = ServiceBusTrigger(function, self.config.service_bus, invoker, self.stopping)
        except UnsupportedTriggerError as error:
            # Like the real host with a listener it cannot start: report it, run the other functions.
            log.error("%s; the function will not run", error)
            return
        self._service_bus.append(trigger)

    def _warn_unsupported_bindings(self, function: FunctionMetadata) -> None:
        for binding in function.bindings:
            if str(binding.get("type", "")).lower() not in _HANDLED_BINDINGS:
                log.warning(
                    "function %s: binding %s (%s) is not supported by the development host",
                    function.name,
                    binding.get("name"),
                    binding.get("type"),
                )

    def _pool_view(self) -> list[dict[str, Any]]:
        return self._pool.describe() if self._pool else []

    def _functions_view(self) -> list[dict[str, Any]]:
        return [{"name": function.name, "bindings": function.bindings} for function in self.functions]

    def _announce(self, routes: RouteTable) -> None:
        base = f"http://{self._bind_host}:{self.port}"
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        lines = ["Functions:"]
        for route in routes:
            methods = ",".join(sorted(route.methods)) if route.methods else "ANY"
            lines.append(f"  {route.function_name}: [{methods}] {base}{prefix}/{route.template}")
        for timer in self._timers:
            lines.append(f"  {timer.function_name}: timerTrigger")
        for receiver in self._service_bus:
            lines.append(f"  {receiver.function_name}: serviceBusTrigger")
        log.info("\n".join(lines))
        pids = ",".join(str(worker["pid"]) for worker in self._pool_view())
        log.info("%s http=%s%s workers=%s", READY_MARKER, base, prefix, pids)

    def stop(self) -> None:
        """Stop receiving, give running invocations the grace period, abandon the rest, stop the workers."""
        log.info("stopping: no new invocations, %.0f s for running ones", self._shutdown_grace)
        self.stopping.set()
        if self._http is not None:
            self._http.shutdown()
        for receiver in self._service_bus:
            receiver.stop_receiving()
        if self._pool is not None:
            self._pool.stop(self._shutdown_grace)
        # Each trigger's close waits out its pending receives; close them side by side, not one after another.
        closers = [
            threading.Thread(target=receiver.join, args=(self._shutdown_grace,), daemon=True)
            for receiver in self._service_bus
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(self._shutdown_grace + 5)
        for timer in self._timers:
            timer.join(1.0)
        if self._http is not None:
            self._http.server_close()
        log.info("stopped")
