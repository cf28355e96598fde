"""An in-process MessageBusPort: the stand-in for MessageBus in fast tests of the use cases.

Each queue keeps what was sent to it, in order, for the test to look at (`messages`) or take as a consumer would
(`take`). Duplicate detection is on for every queue, as the infrastructure configures it (the use cases rely on it:
a redelivered expand step re-sends identical chunk messages): a message id already sent to a queue is dropped. A
scheduled message is kept with its time; it is never made visible by a clock here, the test reads it where it is.
Dead letters are put in by the test (`dead_letter`) and drained by the status timer as from Service Bus.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from shared.adapters.servicebus import DeadLetter, OutgoingMessage, QueueDepth


@dataclass(frozen=True)
class ScheduledMessage:
    message: OutgoingMessage
    at: datetime


class InMemoryMessageBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[OutgoingMessage]] = defaultdict(list)
        self._scheduled: dict[str, list[ScheduledMessage]] = defaultdict(list)
        self._dead: dict[str, list[DeadLetter]] = defaultdict(list)
        self._seen: dict[str, set[str]] = defaultdict(set)

    # --- the port ------------------------------------------------------------------------------------
    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> int:
        sent = 0
        with self._lock:
            for message in messages:
                sent += 1  # the broker accepts a duplicate and drops it: the sender cannot tell
                if self._first(queue, message):
                    self._queues[queue].append(message)
        return sent

    def schedule(self, queue: str, message: OutgoingMessage, at: datetime) -> None:
        with self._lock:
            if self._first(queue, message):
                self._scheduled[queue].append(ScheduledMessage(message, at))

    def open_senders(self, queues: Iterable[str]) -> None:
        pass  # nothing to connect

    def drain_dead_letters(self, queue: str, handle: Callable[[DeadLetter], None], max_messages: int = 100) -> int:
        handled = 0
        while handled < max_messages:
            with self._lock:
                if not self._dead[queue]:
                    break
                dead = self._dead[queue][0]
            handle(dead)  # removed only once handled, as a peek-locked message is completed only then
            with self._lock:
                self._dead[queue].pop(0)
            handled += 1
        return handled

    def queue_depths(self, queues: Iterable[str]) -> dict[str, QueueDepth]:
        with self._lock:
            return {
                q: QueueDepth(
                    active=len(self._queues[q]), scheduled=len(self._scheduled[q]), dead_letter=len(self._dead[q])
                )
                for q in queues
            }

    # --- for tests -----------------------------------------------------------------------------------
    def messages(self, queue: str) -> list[OutgoingMessage]:
        """What waits on the queue, oldest first (left there)."""
        with self._lock:
            return list(self._queues[queue])

    def take(self, queue: str) -> list[OutgoingMessage]:
        """What waits on the queue, oldest first, removed as a consumer completing them would."""
        with self._lock:
            taken, self._queues[queue] = self._queues[queue], []
            return taken

    def scheduled(self, queue: str) -> list[ScheduledMessage]:
        with self._lock:
            return list(self._scheduled[queue])

    def dead_letter(self, queue: str, dead: DeadLetter) -> None:
        """Puts a message in the queue's dead-letter subqueue, as Service Bus does after maxDeliveryCount."""
        with self._lock:
            self._dead[queue].append(dead)

    def _first(self, queue: str, message: OutgoingMessage) -> bool:
        """Whether the message id is new on the queue (duplicate detection; the caller holds the lock)."""
        if message.message_id in self._seen[queue]:
            return False
        self._seen[queue].add(message.message_id)
        return True
