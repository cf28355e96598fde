"""The parts of host.json that the development host honours, with the real host's defaults."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST_FILE = "host.json"
_CPU_COUNT = os.cpu_count() or 1
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def parse_timespan(text: str) -> float:
    """A .NET TimeSpan (``[d.]hh:mm:ss[.fff]``) in seconds."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ValueError(f"not a TimeSpan (expected [d.]hh:mm:ss[.fff]): {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class ServiceBusOptions:
    """host.json ``extensions.serviceBus``; defaults are those of the Service Bus extension 5.x."""

    prefetch_count: int = 0
    auto_complete_messages: bool = True
    max_auto_lock_renewal_duration: float = 300.0
    max_concurrent_calls: int = 16 * _CPU_COUNT
    max_concurrent_sessions: int = 8 * _CPU_COUNT
    session_idle_timeout: float = 60.0


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    function_timeout: float | None = None
    service_bus: ServiceBusOptions = ServiceBusOptions()


def _case_insensitive(section: dict[str, Any]) -> dict[str, Any]:
    # host.json keys are case-insensitive for the real host.
    return {key.lower(): value for key, value in section.items()}


def _service_bus_options(section: dict[str, Any]) -> ServiceBusOptions:
    options = _case_insensitive(section)
    defaults = ServiceBusOptions()
    renewal = options.get("maxautolockrenewalduration")
    idle = options.get("sessionidletimeout")
    return ServiceBusOptions(
        prefetch_count=int(options.get("prefetchcount", defaults.prefetch_count)),
        auto_complete_messages=bool(options.get("autocompletemessages", defaults.auto_complete_messages)),
        max_auto_lock_renewal_duration=(
            parse_timespan(renewal) if renewal else defaults.max_auto_lock_renewal_duration
        ),
        max_concurrent_calls=int(options.get("maxconcurrentcalls", defaults.max_concurrent_calls)),
        max_concurrent_sessions=int(options.get("maxconcurrentsessions", defaults.max_concurrent_sessions)),
        session_idle_timeout=parse_timespan(idle) if idle else defaults.session_idle_timeout,
    )


def load_host_config(script_root: Path) -> HostConfig:
    path = script_root / HOST_FILE
    if not path.is_file():
        return HostConfig()
    document = _case_insensitive(json.loads(path.read_text(encoding="utf-8")))
    extensions = _case_insensitive(document.get("extensions") or {})
    http = _case_insensitive(extensions.get("http") or {})
    prefix = http.get("routeprefix", "api")
    timeout = document.get("functiontimeout")
    return HostConfig(
        route_prefix=str(prefix).strip("/"),
        function_timeout=parse_timespan(timeout) if timeout and timeout != "-1" else None,
        service_bus=_service_bus_options(extensions.get("servicebus") or {}),
    )
