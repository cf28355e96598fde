"""Queues and their dead-letter subqueues: the message state machine, kept in memory and written
through to the store on every change.

A message is ACTIVE, DEFERRED or SCHEDULED (the values of `x-opt-message-state`), and independently
may hold a lock (peek-lock delivery). The delivery count is raised when a message is handed out,
like Service Bus, so a broker crash between hand-out and settlement still counts the attempt.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from proton import timestamp

from .amqp_codec import (
    ParsedMessage,
    encode_annotations,
    encode_header,
    encode_stored,
    parse_message,
    with_application_properties,
)
from .config import QueueConfig
from .store import NewMessageRow, Store

ACTIVE = 0
DEFERRED = 1
SCHEDULED = 2

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
REASON_MAX_DELIVERY = "MaxDeliveryCountExceeded"
REASON_TTL_EXPIRED = "TTLExpiredException"



@dataclass(eq=False)
class Lock:
    token: uuid.UUID
    message: QueueMessage
    locked_until_ms: int
    # The receiver the message was delivered to (None when locked through $management).
    owner: Any = None


@dataclass(eq=False)
class QueueMessage:
    entity: Entity
    sequence: int
    state: int
    parsed: ParsedMessage
    session_id: str | None
    enqueued_ms: int
    expires_ms: int | None
    scheduled_ms: int | None
    delivery_count: int = 0
    lock: Lock | None = None
    removed: bool = False

    def annotations(self, locked_until_ms: int | None) -> dict[str, Any]:
        annotations = dict(self.parsed.annotations)
        annotations["x-opt-sequence-number"] = self.sequence
        annotations["x-opt-enqueued-time"] = timestamp(self.enqueued_ms)
        if self.state != ACTIVE:
            annotations["x-opt-message-state"] = self.state
        if locked_until_ms is not None:
            annotations["x-opt-locked-until"] = timestamp(locked_until_ms)
        return annotations

    def wire_bytes(self, locked_until_ms: int | None, prior_deliveries: int | None = None) -> bytes:
        """The message as a receiver gets it: header with the number of earlier deliveries, broker
        annotations, and the sender's sections untouched."""
        count = self.delivery_count if prior_deliveries is None else prior_deliveries
        header = encode_header(self.parsed.durable, self.parsed.priority, self.parsed.ttl_ms, count)
        return header + encode_annotations(self.annotations(locked_until_ms)) + self.parsed.tail()


@dataclass(eq=False)
class SessionQueue:
    """The messages of one session, and who holds its lock."""

    session_id: str
    available: list[int] = field(default_factory=list)  # heap of sequence numbers
    holder: Any = None
    locked_until_ms: int = 0
    state: bytes | None = None

    def has_available(self, entity: Entity) -> bool:
        while self.available:
            message = entity.messages.get(self.available[0])
            if message is not None and message.state == ACTIVE and message.lock is None:
                return True
            heapq.heappop(self.available)
        return False


class Entity:
    """A queue, or the dead-letter subqueue of one (`<queue>/$deadletterqueue`)."""

    def __init__(self, name: str, config: QueueConfig, store: Store, dead_letter: Entity | None) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.dead_letter = dead_letter
        self.is_dead_letter = dead_letter is None
        self.requires_session = config.requires_session and not self.is_dead_letter
        self.messages: dict[int, QueueMessage] = {}
        self.available: list[int] = []  # heap of sequence numbers (queues without sessions)
        self.sessions: dict[str, SessionQueue] = {}
        self.scheduled: list[tuple[int, int]] = []  # heap of (enqueue time, sequence)
        self.expiring: list[tuple[int, int]] = []  # heap of (expiry time, sequence)
        self.duplicates: dict[str, int] = {}  # message id -> first seen (ms)
        self.last_sequence = 0
        self.state_counts = [0, 0, 0]  # by state; read by the admin endpoint from another thread
        self.consumers: list[Any] = []  # receivers attached to this entity (owned by the broker)
        self.waiting_for_session: list[Any] = []  # next-available session receivers not yet placed

    # --- bookkeeping ----------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionQueue:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = SessionQueue(session_id)
        return session

    def _add(self, message: QueueMessage) -> None:
        self.messages[message.sequence] = message
        self.state_counts[message.state] += 1
        if message.state == SCHEDULED and message.scheduled_ms is not None:
            heapq.heappush(self.scheduled, (message.scheduled_ms, message.sequence))
        if message.expires_ms is not None and message.state != SCHEDULED:
            heapq.heappush(self.expiring, (message.expires_ms, message.sequence))
        if message.state == ACTIVE and message.lock is None:
            self._make_available(message)

    def _make_available(self, message: QueueMessage) -> None:
        if self.requires_session:
            heapq.heappush(self.session(message.session_id or "").available, message.sequence)
        else:
            heapq.heappush(self.available, message.sequence)

    def _remove(self, message: QueueMessage) -> None:
        if message.removed:
            return
        message.removed = True
        self.messages.pop(message.sequence, None)
        self.state_counts[message.state] -= 1
        message.lock = None

    def _set_state(self, message: QueueMessage, state: int) -> None:
        self.state_counts[message.state] -= 1
        self.state_counts[state] += 1
        message.state = state

    def counts(self) -> dict[str, int]:
        active, deferred, scheduled = self.state_counts
        return {"active": active, "deferred": deferred, "scheduled": scheduled, "total": active + deferred + scheduled}

    # --- loading ------------------------------------------------------------------------------

    def restore(self, row: Any, now_ms: int) -> QueueMessage:
        message = QueueMessage(
            entity=self,
            sequence=row.sequence,
            state=row.state,
            parsed=parse_message(row.raw),
            session_id=row.session_id,
            enqueued_ms=row.enqueued_ms,
            expires_ms=row.expires_ms,
            scheduled_ms=row.scheduled_ms,
            delivery_count=row.delivery_count,
        )
        if row.lock_token is not None and row.locked_until_ms is not None and not self.requires_session:
            # The lock outlives the broker, as in Service Bus; it expires on the usual timer.
            message.lock = Lock(uuid.UUID(bytes=row.lock_token), message, row.locked_until_ms)
        elif row.lock_token is not None:
            # A session lock dies with its link, so its messages are free again (the count stays raised).
            self.store.unlock(self.name, message.sequence, message.state, message.delivery_count)
        self._add(message)
        return message

    # --- enqueue ------------------------------------------------------------------------------

    def _expiry(self, parsed: ParsedMessage, enqueued_ms: int) -> int | None:
        if self.is_dead_letter:
            return None  # dead letters never expire
        ttl = self.config.default_ttl_ms
        if parsed.ttl_ms is not None and parsed.ttl_ms > 0:
            ttl = min(ttl, parsed.ttl_ms)
        return enqueued_ms + ttl

    def enqueue(self, parsed_messages: list[ParsedMessage], now_ms: int, schedule: bool = False) -> list[int]:
        """Add messages in one transaction; returns their sequence numbers (0 for dropped duplicates).

        `schedule` marks messages sent through `schedule-message`; a message sent normally with
        `x-opt-scheduled-enqueue-time` in the future is scheduled too.
        """
        rows: list[NewMessageRow] = []
        added: list[QueueMessage] = []
        seen: list[tuple[str, int]] = []
        sequences: list[int] = []
        for parsed in parsed_messages:
            if self.config.requires_duplicate_detection and not self.is_dead_letter:
                message_id = parsed.message_id
                if message_id is not None:
                    key = str(message_id)
                    first_seen = self.duplicates.get(key)
                    if first_seen is not None and now_ms - first_seen < self.config.duplicate_window_ms:
                        sequences.append(0)
                        continue
                    self.duplicates[key] = now_ms
                    seen.append((key, now_ms))
            scheduled_ms = _scheduled_time(parsed)
            is_scheduled = scheduled_ms is not None and (schedule or scheduled_ms > now_ms)
            self.last_sequence += 1
            enqueued_ms = scheduled_ms if is_scheduled and scheduled_ms is not None else now_ms
            message = QueueMessage(
                entity=self,
                sequence=self.last_sequence,
                state=SCHEDULED if is_scheduled else ACTIVE,
                parsed=parsed,
                session_id=parsed.session_id,
                enqueued_ms=enqueued_ms,
                expires_ms=self._expiry(parsed, enqueued_ms),
                scheduled_ms=scheduled_ms if is_scheduled else None,
            )
            rows.append(
                NewMessageRow(
                    message.sequence,
                    message.state,
                    encode_stored(parsed),
                    message.session_id,
                    message.enqueued_ms,
                    message.expires_ms,
                    message.scheduled_ms,
                )
            )
            added.append(message)
            sequences.append(message.sequence)
        self.store.add_messages(self.name, rows, self.last_sequence, seen)
        for message in added:
            self._add(message)
        return sequences

    def add_dead_letter(self, source: QueueMessage, reason: str | None, description: str | None, now_ms: int) -> None:
        """Move `source` (a message of the parent queue) into this dead-letter subqueue."""
        updates: dict[str, Any] = {}
        if reason is not None:
            updates["DeadLetterReason"] = reason
        if description is not None:
            updates["DeadLetterErrorDescription"] = description
        parsed = with_application_properties(source.parsed, updates) if updates else source.parsed
        parsed.annotations["x-opt-deadletter-source"] = source.entity.name
        self.last_sequence += 1
        message = QueueMessage(
            entity=self,
            sequence=self.last_sequence,
            state=ACTIVE,
            parsed=parsed,
            session_id=source.session_id,
            enqueued_ms=source.enqueued_ms,
            expires_ms=None,
            scheduled_ms=None,
            delivery_count=source.delivery_count,
        )
        row = NewMessageRow(message.sequence, ACTIVE, encode_stored(parsed), message.session_id,
                            message.enqueued_ms, None, None)
        self.store.add_messages(self.name, [row], self.last_sequence, removed=[(source.entity.name, source.sequence)])
        self._add(message)

    # --- hand-out and settlement ---------------------------------------------------------------

    def next_available(self, session: SessionQueue | None, now_ms: int) -> QueueMessage | None:
        heap = session.available if session is not None else self.available
        while heap:
            sequence = heapq.heappop(heap)
            message = self.messages.get(sequence)
            if message is None or message.state != ACTIVE or message.lock is not None:
                continue
            if message.expires_ms is not None and message.expires_ms <= now_ms:
                self.expire(message, now_ms)
                continue
            return message
        return None

    def lock_message(self, message: QueueMessage, owner: Any, locked_until_ms: int) -> Lock:
        message.delivery_count += 1
        lock = Lock(uuid.uuid4(), message, locked_until_ms, owner)
        message.lock = lock
        self.store.lock(self.name, message.sequence, message.delivery_count, lock.token.bytes, locked_until_ms)
        return lock

    def hand_out_and_delete(self, message: QueueMessage) -> None:
        """RECEIVE_AND_DELETE: the message is gone once it is on the wire."""
        message.delivery_count += 1
        self.store.delete(self.name, [message.sequence])
        self._remove(message)

    def complete(self, message: QueueMessage) -> None:
        self.store.delete(self.name, [message.sequence])
        self._remove(message)

    def unlock(self, message: QueueMessage, now_ms: int, counted: bool = True) -> bool:
        """Return a locked message to its queue (abandon, lock expiry, release).

        `counted=False` is a release: the hand-out did not count. Returns True when the message is
        available again (False when it was dead-lettered or stays deferred).
        """
        message.lock = None
        if not counted:
            message.delivery_count = max(0, message.delivery_count - 1)
        if (
            counted
            and not self.is_dead_letter
            and message.delivery_count >= self.config.max_delivery_count
        ):
            self.dead_letter_message(message, REASON_MAX_DELIVERY,
                                     f"Message could not be consumed after {message.delivery_count} delivery attempts.",
                                     now_ms)
            return False
        self.store.unlock(self.name, message.sequence, message.state, message.delivery_count)
        if message.state != ACTIVE:
            return False
        self._make_available(message)
        return True

    def defer(self, message: QueueMessage) -> None:
        message.lock = None
        self._set_state(message, DEFERRED)
        self.store.unlock(self.name, message.sequence, DEFERRED, message.delivery_count)

    def dead_letter_message(self, message: QueueMessage, reason: str | None, description: str | None,
                            now_ms: int) -> None:
        if self.dead_letter is None:
            # Dead-lettering a dead letter: Service Bus keeps it where it is.
            message.lock = None
            self.store.unlock(self.name, message.sequence, message.state, message.delivery_count)
            if message.state == ACTIVE:
                self._make_available(message)
            return
        self._remove(message)
        self.dead_letter.add_dead_letter(message, reason, description, now_ms)

    def expire(self, message: QueueMessage, now_ms: int) -> None:
        if self.config.dead_letter_on_expiration and self.dead_letter is not None:
            self.dead_letter_message(message, REASON_TTL_EXPIRED, "Message expired before it was consumed.", now_ms)
        else:
            self.complete(message)

    # --- timers --------------------------------------------------------------------------------

    def activate_due(self, now_ms: int) -> bool:
        """Scheduled messages whose time has come become active; returns True if any did."""
        activated = False
        while self.scheduled and self.scheduled[0][0] <= now_ms:
            _, sequence = heapq.heappop(self.scheduled)
            message = self.messages.get(sequence)
            if message is None or message.state != SCHEDULED:
                continue
            self._set_state(message, ACTIVE)
            message.enqueued_ms = now_ms
            message.expires_ms = self._expiry(message.parsed, now_ms)
            if message.expires_ms is not None:
                heapq.heappush(self.expiring, (message.expires_ms, sequence))
            self.store.set_state(self.name, sequence, ACTIVE)
            self._make_available(message)
            activated = True
        return activated

    def expire_due(self, now_ms: int) -> bool:
        """Expire messages whose time to live is over; True if any expired."""
        expired = False
        while self.expiring and self.expiring[0][0] <= now_ms:
            _, sequence = heapq.heappop(self.expiring)
            message = self.messages.get(sequence)
            if message is None or message.lock is not None or message.state == SCHEDULED:
                continue  # a locked message expires when it comes back (next_available checks)
            if message.expires_ms is not None and message.expires_ms <= now_ms:
                self.expire(message, now_ms)
                expired = True
        return expired

    def forget_old_duplicates(self, now_ms: int) -> None:
        cutoff = now_ms - self.config.duplicate_window_ms
        stale = [key for key, seen in self.duplicates.items() if seen < cutoff]
        if stale:
            for key in stale:
                del self.duplicates[key]
            self.store.forget_duplicates(self.name, cutoff)

    def cancel_scheduled(self, sequences: list[int]) -> None:
        doomed = [self.messages[s] for s in sequences if s in self.messages and self.messages[s].state == SCHEDULED]
        self.store.delete(self.name, [m.sequence for m in doomed])
        for message in doomed:
            self._remove(message)

    def peek(self, from_sequence: int, count: int, session_id: str | None) -> Iterator[QueueMessage]:
        found = 0
        # `messages` is in sequence order: messages are only ever added with a new, higher sequence number.
        for sequence, message in list(self.messages.items()):
            if sequence < from_sequence:
                continue
            if session_id is not None and message.session_id != session_id:
                continue
            yield message
            found += 1
            if found >= count:
                return


def _scheduled_time(parsed: ParsedMessage) -> int | None:
    value = parsed.annotations.get("x-opt-scheduled-enqueue-time")
    if value is None:
        return None
    if hasattr(value, "timestamp") and callable(value.timestamp):
        return int(value.timestamp() * 1000)
    return int(value)
