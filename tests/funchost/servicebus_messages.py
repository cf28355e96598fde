"""Send the sample app's instruction messages and read dead letters with the unmodified azure-servicebus SDK."""

from __future__ import annotations

import json
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue


def send(connection: str, queue: str, messages: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    """Send (message_id, session_id, instructions) triples in order."""
    with ServiceBusClient.from_connection_string(connection) as client, client.get_queue_sender(queue) as sender:
        sender.send_messages(
            [
                ServiceBusMessage(
                    json.dumps(instructions),
                    message_id=message_id,
                    session_id=session_id,
                    content_type="application/json",
                    application_properties={"test": "funchost"},
                )
                for message_id, session_id, instructions in messages
            ]
        )


def receive_dead_letters(connection: str, queue: str, wait: float = 3.0) -> list[str]:
    """Message ids in the queue's dead-letter sub-queue (completed as they are read)."""
    with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=wait) as receiver,
    ):
        found = []
        for message in receiver:
            found.append(str(message.message_id))
            receiver.complete_message(message)
        return found
