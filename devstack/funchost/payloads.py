"""Picklable data that crosses the pipe between the host process and its worker processes.

The host never imports the app; it passes plain data, and the worker builds the azure.functions objects
(HttpRequest, ServiceBusMessage, TimerRequest) from it, as the real Python worker does from gRPC messages.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FunctionMetadata:
    """One indexed function: its name and its bindings as function.json dictionaries."""

    name: str
    bindings: list[dict[str, Any]]

    @property
    def trigger(self) -> dict[str, Any]:
        for binding in self.bindings:
            if str(binding.get("type", "")).lower().endswith("trigger"):
                return binding
        raise ValueError(f"function {self.name} has no trigger binding")

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


@dataclass(frozen=True)
class HttpRequestData:
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str]
    route_params: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpResponseData:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class TimerData:
    past_due: bool
    schedule_status: dict[str, str] = field(default_factory=dict)
    schedule: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceBusMessageData:
    body: bytes
    message_id: str
    application_properties: dict[str, Any]
    content_type: str | None = None
    correlation_id: str | None = None
    dead_letter_error_description: str | None = None
    dead_letter_reason: str | None = None
    dead_letter_source: str | None = None
    delivery_count: int | None = None
    enqueued_sequence_number: int | None = None
    enqueued_time_utc: datetime.datetime | None = None
    expires_at_utc: datetime.datetime | None = None
    locked_until: datetime.datetime | None = None
    lock_token: str | None = None
    partition_key: str | None = None
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    scheduled_enqueue_time_utc: datetime.datetime | None = None
    sequence_number: int | None = None
    session_id: str | None = None
    subject: str | None = None
    time_to_live: datetime.timedelta | None = None
    to: str | None = None


TriggerData = HttpRequestData | TimerData | ServiceBusMessageData


@dataclass(frozen=True)
class Invocation:
    invocation_id: str
    function_name: str
    trigger_data: TriggerData


@dataclass(frozen=True)
class InvocationResult:
    invocation_id: str
    succeeded: bool
    http_response: HttpResponseData | None = None
    error: str | None = None


@dataclass(frozen=True)
class WorkerReady:
    pid: int
    functions: list[FunctionMetadata]


@dataclass(frozen=True)
class WorkerStartupFailed:
    error: str
