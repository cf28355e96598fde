"""Build the azure.functions objects a function receives, and turn what it returns into response data."""

from __future__ import annotations

from typing import Any

import azure.functions as func
from azure.functions.http import HttpRequest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from devstack.funchost.payloads import (
    HttpRequestData,
    HttpResponseData,
    ServiceBusMessageData,
    TimerData,
    TriggerData,
)


class InvocationContext(func.Context):
    """The ``context`` argument the Python worker passes to functions that declare one."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


def build_trigger_object(data: TriggerData) -> Any:
    if isinstance(data, HttpRequestData):
        return HttpRequest(
            method=data.method,
            url=data.url,
            headers=data.headers,
            params=data.params,
            route_params=data.route_params,
            body_type="bytes",
            body=data.body,
        )
    if isinstance(data, TimerData):
        return TimerRequest(past_due=data.past_due, schedule_status=data.schedule_status, schedule=data.schedule)
    if isinstance(data, ServiceBusMessageData):
        return ServiceBusMessage(
            body=data.body,
            trigger_metadata=_service_bus_trigger_metadata(data),
            application_properties=data.application_properties,
            content_type=data.content_type,
            correlation_id=data.correlation_id,
            dead_letter_error_description=data.dead_letter_error_description,
            dead_letter_reason=data.dead_letter_reason,
            dead_letter_source=data.dead_letter_source,
            delivery_count=data.delivery_count,
            enqueued_sequence_number=data.enqueued_sequence_number,
            enqueued_time_utc=data.enqueued_time_utc,
            expires_at_utc=data.expires_at_utc,
            label=data.subject,
            locked_until=data.locked_until,
            lock_token=data.lock_token,
            message_id=data.message_id,
            partition_key=data.partition_key,
            reply_to=data.reply_to,
            reply_to_session_id=data.reply_to_session_id,
            scheduled_enqueue_time_utc=data.scheduled_enqueue_time_utc,
            sequence_number=data.sequence_number,
            session_id=data.session_id,
            subject=data.subject,
            time_to_live=data.time_to_live,
            to=data.to,
            user_properties=data.application_properties,
        )
    raise TypeError(f"no trigger object for {type(data).__name__}")


def _service_bus_trigger_metadata(data: ServiceBusMessageData) -> dict[str, Any]:
    # The subset of the host's trigger metadata that describes the message itself.
    return {
        "MessageId": data.message_id,
        "SessionId": data.session_id,
        "DeliveryCount": data.delivery_count,
        "SequenceNumber": data.sequence_number,
        "EnqueuedTimeUtc": data.enqueued_time_utc.isoformat() if data.enqueued_time_utc else None,
        "ContentType": data.content_type,
        "CorrelationId": data.correlation_id,
        "UserProperties": data.application_properties,
        "ApplicationProperties": data.application_properties,
    }


def http_response_data(returned: Any) -> HttpResponseData:
    """Map a function's return value to the HTTP answer, like the worker's HttpResponseConverter."""
    if returned is None:
        return HttpResponseData(status_code=204, headers=[], body=b"")
    if isinstance(returned, str):
        return HttpResponseData(
            status_code=200, headers=[("Content-Type", "text/plain; charset=utf-8")], body=returned.encode()
        )
    if isinstance(returned, func.HttpResponse):
        headers = [(name, value) for name, value in returned.headers.items()]
        if not any(name.lower() == "content-type" for name, _ in headers):
            mimetype = returned.mimetype
            content_type = f"{mimetype}; charset={returned.charset}" if mimetype.startswith("text/") else mimetype
            headers.append(("Content-Type", content_type))
        return HttpResponseData(status_code=int(returned.status_code), headers=headers, body=returned.get_body())
    raise TypeError(f"an HTTP function must return HttpResponse or str, not {type(returned).__name__}")
