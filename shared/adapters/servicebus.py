"""Service Bus: sending chunk and expand messages, draining dead letters, reading queue depths.

The only module that imports azure.servicebus. Receiving for processing is the Functions host's job (trigger
bindings under peek-lock); the app itself only sends, and the status timer moves dead letters into Cosmos.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageSizeExceededError

from shared.adapters.identity import azure_credential
from shared.config import Settings


@dataclass(frozen=True)
class OutgoingMessage:
    body: str
    message_id: str
    session_id: str | None = None
    subject: str | None = None
    properties: dict[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    body: str
    message_id: str | None
    session_id: str | None
    reason: str
    description: str
    enqueued_time_utc: Any


@dataclass(frozen=True)
class QueueDepth:
    active: int
    scheduled: int
    dead_letter: int


class MessageBusPort(Protocol):
    """What the app needs of Service Bus: the contract MessageBus keeps and InMemoryMessageBus
    (shared/adapters/memory_bus.py) stands in for in fast tests. Beside its adapter, as the other ports are: it
    speaks this module's OutgoingMessage, DeadLetter and QueueDepth. Every queue detects duplicates by message id
    (the infrastructure configures it), which the use cases rely on to make a repeated send harmless."""

    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> int: ...
    def schedule(self, queue: str, message: OutgoingMessage, at: datetime) -> None: ...
    def open_senders(self, queues: Iterable[str]) -> None: ...
    def drain_dead_letters(
        self, queue: str, handle: Callable[[DeadLetter], None], max_messages: int = 100
    ) -> int: ...
    def queue_depths(self, queues: Iterable[str]) -> dict[str, QueueDepth]: ...


class MessageBus:
    """Sends to Service Bus queues. One sender per queue, kept open; senders are not thread-safe, hence the lock."""

    def __init__(self, client: ServiceBusClient, admin: Any | None = None) -> None:
        self._client = client
        self._admin = admin
        self._senders: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageBus:
        if settings.servicebus_connection:
            client = ServiceBusClient.from_connection_string(settings.servicebus_connection)
        else:
            credential = azure_credential(settings.servicebus_client_id)
            client = ServiceBusClient(str(settings.servicebus_namespace), credential)
        return cls(client, _admin_client(settings))

    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> int:
        """Sends in as few batches as fit. Returns how many were sent."""
        with self._lock:
            sender = self._sender(queue)
            sent = 0
            batch = sender.create_message_batch()
            for message in messages:
                sb_message = _to_sb(message)
                try:
                    batch.add_message(sb_message)
                except MessageSizeExceededError:
                    if len(batch) == 0:
                        raise
                    sender.send_messages(batch)
                    sent += len(batch)
                    batch = sender.create_message_batch()
                    batch.add_message(sb_message)
            if len(batch):
                sender.send_messages(batch)
                sent += len(batch)
            return sent

    def schedule(self, queue: str, message: OutgoingMessage, at: datetime) -> None:
        """Sends one message that becomes visible at `at` (UTC)."""
        with self._lock:
            sender = self._sender(queue)
            sender.schedule_messages(_to_sb(message), at)

    def open_senders(self, queues: Iterable[str]) -> None:
        """Opens the connection and a sender link per queue now, not on the first send (~0.5 s on a fresh process:
        AMQP connection, claims-based auth, link attach). A batch cannot be made without the link's size limit, so
        making one opens the link."""
        with self._lock:
            for queue in queues:
                self._sender(queue).create_message_batch()

    def _sender(self, queue: str) -> Any:
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._senders[queue] = self._client.get_queue_sender(queue)
        return sender

    def drain_dead_letters(self, queue: str, handle: Callable[[DeadLetter], None], max_messages: int = 100) -> int:
        """Receives up to `max_messages` from the queue's dead-letter subqueue under peek-lock, calls `handle`
        for each and completes it only when `handle` returned (so a failure leaves it for the next run)."""
        handled = 0
        with self._client.get_queue_receiver(
            queue,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            max_wait_time=1,
        ) as receiver:
            # A peek answers at once; receiving from an empty queue would wait out max_wait_time every tick.
            if not receiver.peek_messages(max_message_count=1):
                return 0
            while handled < max_messages:
                batch = receiver.receive_messages(max_message_count=min(50, max_messages - handled), max_wait_time=1)
                if not batch:
                    break
                for msg in batch:
                    handle(
                        DeadLetter(
                            body=b"".join(msg.body).decode("utf-8", errors="replace"),
                            message_id=msg.message_id,
                            session_id=msg.session_id,
                            reason=str(msg.dead_letter_reason or ""),
                            description=str(msg.dead_letter_error_description or ""),
                            enqueued_time_utc=msg.enqueued_time_utc,
                        )
                    )
                    receiver.complete_message(msg)
                    handled += 1
        return handled

    def queue_depths(self, queues: Iterable[str]) -> dict[str, QueueDepth]:
        if self._admin is None:
            return {}
        depths = {}
        for queue in queues:
            props = self._admin.get_queue_runtime_properties(queue)
            depths[queue] = QueueDepth(
                active=props.active_message_count,
                scheduled=props.scheduled_message_count,
                dead_letter=props.dead_letter_message_count,
            )
        return depths

    def close(self) -> None:
        with self._lock:
            for sender in self._senders.values():
                sender.close()
            self._senders.clear()
        self._client.close()


def _to_sb(message: OutgoingMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        session_id=message.session_id,
        subject=message.subject,
        content_type="application/json",
        application_properties=dict(message.properties) or None,  # type: ignore[arg-type]
    )


def _admin_client(settings: Settings) -> Any | None:
    from azure.servicebus.management import ServiceBusAdministrationClient

    if settings.servicebus_admin_endpoint:
        # Local emulator only: its admin endpoint is HTTPS with a self-signed certificate on its own port.
        host = settings.servicebus_admin_endpoint.removeprefix("https://").rstrip("/")
        from shared.adapters.emulator_transport import emulator_transport

        return ServiceBusAdministrationClient.from_connection_string(
            f"Endpoint=sb://{host};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;",
            connection_verify=False,
            transport=emulator_transport(),
        )
    if settings.servicebus_namespace:
        return ServiceBusAdministrationClient(
            settings.servicebus_namespace, azure_credential(settings.servicebus_client_id)
        )
    return None
