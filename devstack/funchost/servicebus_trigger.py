"""Service Bus queue triggers with the Functions host's semantics, on the azure-servicebus SDK.

Per function, from host.json ``extensions.serviceBus``:
- session-enabled: ``maxConcurrentSessions`` session loops, each accepting NEXT_AVAILABLE_SESSION, taking the
  session's messages one at a time in order, and releasing the session after ``sessionIdleTimeout`` without a
  message, then taking the next available session;
- otherwise: ``maxConcurrentCalls`` receive loops, so at most that many invocations at once;
- ``autoCompleteMessages``: complete on success, abandon on failure (an exception, a worker that died, a
  function timeout); redelivery and dead-lettering after MaxDeliveryCount are the broker's;
- message and session locks renewed by an AutoLockRenewer for up to ``maxAutoLockRenewalDuration``;
- ``prefetchCount`` per receiver.
Each loop owns its receiver: receiving and settling happen on one thread, as the SDK's sync API expects.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
)
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from devstack.funchost.host_config import ServiceBusOptions
from devstack.funchost.invoker import Invoker
from devstack.funchost.payloads import FunctionMetadata, ServiceBusMessageData
from devstack.funchost.settings import resolve_binding_expression

log = logging.getLogger("funchost")

# How long one attempt to lock a session waits when none is available; short, so stopping is prompt.
SESSION_ACCEPT_WAIT = 2.0
# How long a non-session receive waits before checking whether the host is stopping.
RECEIVE_POLL = 1.0
_ERROR_BACKOFF = 1.0


class UnsupportedTriggerError(ValueError):
    """A Service Bus trigger shape this host does not run (topics, batches)."""


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def message_body(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes, whatever AMQP body section carried it."""
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    body = message.body
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, default=str).encode()


def message_data(message: ServiceBusReceivedMessage) -> ServiceBusMessageData:
    properties = {_text(key): _text(value) for key, value in (message.application_properties or {}).items()}
    ttl = message.time_to_live
    return ServiceBusMessageData(
        body=message_body(message),
        message_id=str(message.message_id),
        application_properties=properties,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=message.delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        expires_at_utc=message.expires_at_utc,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token) if message.lock_token else None,
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        subject=message.subject,
        time_to_live=ttl if isinstance(ttl, datetime.timedelta) or ttl is None else None,
        to=message.to,
    )


class ServiceBusTrigger:
    def __init__(
        self,
        function: FunctionMetadata,
        options: ServiceBusOptions,
        invoker: Invoker,
        host_stopping: threading.Event,
    ) -> None:
        trigger = function.trigger
        self.function_name = function.name
        if "topicName" in trigger:
            raise UnsupportedTriggerError(f"function {function.name}: topic triggers are not supported by this host")
        if str(trigger.get("cardinality", "one")).lower() == "many":
            raise UnsupportedTriggerError(f"function {function.name}: cardinality=many is not supported by this host")
        self._queue_name = resolve_binding_expression(trigger["queueName"])
        self._connection_setting = trigger.get("connection") or "AzureWebJobsServiceBus"
        self._sessions = bool(trigger.get("isSessionsEnabled"))
        auto_complete = trigger.get("autoCompleteMessages")
        self._auto_complete = options.auto_complete_messages if auto_complete is None else bool(auto_complete)
        self._options = options
        self._invoker = invoker
        self._stopping = host_stopping
        self._threads: list[threading.Thread] = []
        # Loops that hold a received message; stopping waits for them to settle it, not for idle loops.
        self._busy = 0
        self._busy_changed = threading.Condition()
        self._client: ServiceBusClient | None = None

    def _connection_string(self) -> str:
        value = os.environ.get(self._connection_setting)
        if not value:
            raise ValueError(
                f"function {self.function_name}: app setting {self._connection_setting} (a Service Bus "
                "connection string) is not set; identity-based connections are not supported by this host"
            )
        return value

    def start(self) -> None:
        self._client = ServiceBusClient.from_connection_string(
            self._connection_string(), retry_total=2, retry_backoff_factor=0.2, retry_backoff_max=2
        )
        if self._sessions:
            count, loop, kind = self._options.max_concurrent_sessions, self._session_loop, "session"
        else:
            count, loop, kind = self._options.max_concurrent_calls, self._message_loop, "receive"
        for index in range(count):
            thread = threading.Thread(target=loop, name=f"sb-{self.function_name}-{kind}-{index}", daemon=True)
            self._threads.append(thread)
            thread.start()
        log.info(
            "function %s: listening on queue %s (%s, %d concurrent)",
            self.function_name,
            self._queue_name,
            "sessions" if self._sessions else "no sessions",
            count,
        )

    def stop_receiving(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> None:
        """Wait until no loop holds a message (each settles what it holds), then close the links.

        Loops that are only waiting for a session or a message are not waited for: closing the client
        ends their pending receive, and they exit because the host is stopping.
        """
        deadline = time.monotonic() + timeout
        with self._busy_changed:
            while self._busy and time.monotonic() < deadline:
                self._busy_changed.wait(0.1)
        # Closing links under a pending open makes the SDK log errors that mean nothing at shutdown.
        logging.getLogger("azure").setLevel(logging.CRITICAL)
        if self._client is not None:
            self._client.close()

    # -- loops -------------------------------------------------------------------------------------

    @contextmanager
    def _renewing_receiver(self, **kwargs: Any) -> Iterator[ServiceBusReceiver]:
        """An open receiver whose session (if any) and messages have their locks renewed.

        Each receiver gets its own AutoLockRenewer, closed before the receiver: a renewer shared across
        receivers keeps renewing a released session's lock on the closed link and fails noisily.
        """
        assert self._client is not None
        renewer = AutoLockRenewer(
            max_lock_renewal_duration=self._options.max_auto_lock_renewal_duration,
            on_lock_renew_failure=self._lock_renewal_failed,
        )
        receiver = self._client.get_queue_receiver(
            self._queue_name, prefetch_count=self._options.prefetch_count, auto_lock_renewer=renewer, **kwargs
        )
        try:
            with receiver:
                try:
                    yield receiver
                finally:
                    renewer.close()  # before the link closes under it
        finally:
            renewer.close()  # also when the link never opened (closing twice is harmless)

    def _lock_renewal_failed(self, renewable: Any, error: Exception | None) -> None:
        what = getattr(renewable, "message_id", None) or f"session {getattr(renewable, 'session_id', '?')}"
        if not self._stopping.is_set():
            log.warning("function %s: lock renewal for %s failed: %r", self.function_name, what, error)

    def _session_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                # Opening the link locks the next available session.
                with self._renewing_receiver(
                    session_id=NEXT_AVAILABLE_SESSION, max_wait_time=SESSION_ACCEPT_WAIT
                ) as receiver:
                    session_id = receiver.session.session_id
                    log.debug("function %s: locked session %s", self.function_name, session_id)
                    while not self._stopping.is_set():
                        messages = receiver.receive_messages(
                            max_message_count=1, max_wait_time=self._options.session_idle_timeout
                        )
                        if not messages:
                            break  # sessionIdleTimeout: release this session, take the next one
                        self._process(receiver, messages[0])
            except OperationTimeoutError:
                continue  # no session was available
            except Exception as error:
                self._after_receiver_error(error)

    def _message_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._renewing_receiver() as receiver:
                    while not self._stopping.is_set():
                        for message in receiver.receive_messages(max_message_count=1, max_wait_time=RECEIVE_POLL):
                            self._process(receiver, message)
            except Exception as error:
                self._after_receiver_error(error)

    def _after_receiver_error(self, error: Exception) -> None:
        # A receiver failing while the host stops is its client being closed; otherwise retry after a pause,
        # as the host's listeners do after a transient connection error.
        if not self._stopping.is_set():
            log.warning("function %s: receiver error, retrying: %r", self.function_name, error)
            self._stopping.wait(_ERROR_BACKOFF)

    def _process(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        with self._busy_changed:
            self._busy += 1
        try:
            self._invoke_and_settle(receiver, message)
        finally:
            with self._busy_changed:
                self._busy -= 1
                self._busy_changed.notify_all()

    def _invoke_and_settle(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        detail = f"MessageId={message.message_id}, DeliveryCount={message.delivery_count}"
        if message.session_id is not None:
            detail += f", SessionId={message.session_id}"
        result = self._invoker.invoke(self.function_name, message_data(message), trigger_detail=detail)
        if not self._auto_complete:
            return  # the function owns settlement; this host cannot hand it the receiver, so the lock expires
        try:
            if result.succeeded:
                receiver.complete_message(message)
            else:
                receiver.abandon_message(message)
        except ServiceBusError as error:
            log.warning(
                "function %s: could not %s message %s: %s",
                self.function_name,
                "complete" if result.succeeded else "abandon",
                message.message_id,
                error,
            )
