"""The AMQP side of the emulator: connections, links, dispatch of messages to receivers, settlement,
session locks and the timer that expires locks, activates scheduled messages and expires old ones.

Everything runs on proton's single reactor thread. A handler that fails closes only the connection
it was serving, so one misbehaving client never disturbs the others.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, Terminus, symbol

from .addresses import Address, parse_address
from .amqp_codec import CodecError, parse_message, split_batch
from .config import QueueConfig
from .entities import DEAD_LETTER_SUFFIX, Entity, Lock, QueueMessage, SessionQueue
from .management import ManagementError, handle_management
from .store import Store

log = logging.getLogger("servicebus_emulator")

# Standard tier's limit, for a single message and for a whole batch transfer.
MAX_MESSAGE_SIZE = 256 * 1024
# Transfers a sender may have in flight before it must wait; topped up when half is used.
_INCOMING_CREDIT = 200
_TIMER_INTERVAL_S = 0.05
_DEFAULT_SESSION_WAIT_MS = 60_000
_DUPLICATE_SWEEP_MS = 10_000
_TICKS_AT_EPOCH = 621_355_968_000_000_000

SESSION_FILTER = symbol("com.microsoft:session-filter")
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
TIMEOUT_PROPERTY = "com.microsoft:timeout"

ERROR_NOT_FOUND = "amqp:not-found"
ERROR_NOT_ALLOWED = "amqp:not-allowed"
ERROR_TIMEOUT = "com.microsoft:timeout"
ERROR_SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"
ERROR_SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
ERROR_MESSAGE_LOCK_LOST = "com.microsoft:message-lock-lost"
ERROR_MESSAGE_TOO_LARGE = "amqp:link:message-size-exceeded"
ERROR_DECODE = "amqp:decode-error"


def now_ms() -> int:
    return int(time.time() * 1000)


def dotnet_ticks(ms: int) -> int:
    return ms * 10_000 + _TICKS_AT_EPOCH


@dataclass(eq=False)
class Consumer:
    """A receiving client: our outgoing link on an entity."""

    link: Any
    entity: Entity
    receive_and_delete: bool
    session: SessionQueue | None = None
    wants_session: bool = False  # a session receiver (named or next-available)
    wait_deadline_ms: int = 0  # next-available: when to give up waiting for a free session
    locks: dict[uuid.UUID, Lock] = field(default_factory=dict)
    closed: bool = False


F = TypeVar("F", bound=Callable[..., None])


def _guarded(method: F) -> F:
    """Contain a failure to the connection whose event caused it."""

    @functools.wraps(method)
    def wrapper(self: Broker, event: Any) -> None:
        try:
            method(self, event)
        except Exception:
            log.exception("error handling %s; closing that connection", event.type)
            connection = event.connection
            if connection is not None and not connection.state & Endpoint.LOCAL_CLOSED:
                connection.condition = Condition("amqp:internal-error", "emulator error")
                connection.close()

    return wrapper  # type: ignore[return-value]


class Broker(Handler):
    def __init__(self, queues: list[QueueConfig], store: Store) -> None:
        super().__init__()
        self.store = store
        self.entities: dict[str, Entity] = {}
        for config in queues:
            dead_letter = Entity(config.name + DEAD_LETTER_SUFFIX, config, store, None)
            queue = Entity(config.name, config, store, dead_letter)
            self.entities[queue.name] = queue
            self.entities[dead_letter.name] = dead_letter
        self.locks: dict[uuid.UUID, Lock] = {}
        self._lock_expiry: list[tuple[int, int, uuid.UUID]] = []
        self._session_expiry: list[tuple[int, int, Consumer]] = []
        self._tie = itertools.count()
        self._next_duplicate_sweep_ms = 0
        self._restore()

    # --- start-up -------------------------------------------------------------------------------

    def _restore(self) -> None:
        now = now_ms()
        for name, last in self.store.last_sequences().items():
            if name in self.entities:
                self.entities[name].last_sequence = last
        for row in self.store.messages():
            entity = self.entities.get(row.entity)
            if entity is None:
                continue  # a queue removed from the config: its messages stay on disk, untouched
            message = entity.restore(row, now)
            if message.lock is not None:
                self._track_lock(message.lock)
        for name, session_id, state in self.store.session_states():
            if name in self.entities:
                self.entities[name].session(session_id).state = state
        for name, message_id, seen in self.store.duplicate_history():
            if name in self.entities:
                self.entities[name].duplicates[message_id] = seen

    def _track_lock(self, lock: Lock) -> None:
        self.locks[lock.token] = lock
        heapq.heappush(self._lock_expiry, (lock.locked_until_ms, next(self._tie), lock.token))

    # --- reactor lifecycle ----------------------------------------------------------------------

    @_guarded
    def on_reactor_init(self, event: Any) -> None:
        event.reactor.schedule(_TIMER_INTERVAL_S, self)

    @_guarded
    def on_timer_task(self, event: Any) -> None:
        try:
            self._run_timers(now_ms())
        finally:
            event.reactor.schedule(_TIMER_INTERVAL_S, self)

    def _run_timers(self, now: int) -> None:
        touched: set[Entity] = set()
        while self._lock_expiry and self._lock_expiry[0][0] <= now:
            _, _, token = heapq.heappop(self._lock_expiry)
            lock = self.locks.get(token)
            if lock is None or lock.locked_until_ms > now:
                continue
            self._drop_lock(lock)
            entity = lock.message.entity
            entity.unlock(lock.message, now)
            touched.add(entity)
            if entity.dead_letter is not None:
                touched.add(entity.dead_letter)  # it may have gone there (MaxDeliveryCount)
        while self._session_expiry and self._session_expiry[0][0] <= now:
            _, _, consumer = heapq.heappop(self._session_expiry)
            session = consumer.session
            if consumer.closed or session is None or session.holder is not consumer:
                continue
            if session.locked_until_ms > now:
                continue
            self._close_link(consumer.link, ERROR_SESSION_LOCK_LOST, "The session lock has expired.")
            self._release_consumer(consumer, now)
            touched.add(consumer.entity)
        for entity in self.entities.values():
            if entity.activate_due(now):
                touched.add(entity)
            if entity.expire_due(now) and entity.dead_letter is not None:
                touched.add(entity.dead_letter)
            if entity.waiting_for_session:
                self._expire_session_waits(entity, now)
            if entity.duplicates and now >= self._next_duplicate_sweep_ms:
                entity.forget_old_duplicates(now)
        if now >= self._next_duplicate_sweep_ms:
            self._next_duplicate_sweep_ms = now + _DUPLICATE_SWEEP_MS
        for entity in touched:
            self.dispatch(entity)

    # --- connections and sessions ---------------------------------------------------------------

    @_guarded
    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")

    @_guarded
    def on_connection_remote_open(self, event: Any) -> None:
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.open()

    @_guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @_guarded
    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    @_guarded
    def on_connection_remote_close(self, event: Any) -> None:
        self._forget_connection(event.connection)
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._forget_connection(event.connection)
            event.connection.free()

    def _forget_connection(self, connection: Any) -> None:
        link = connection.link_head(0)
        now = now_ms()
        while link is not None:
            consumer = getattr(link, "consumer", None)
            if consumer is not None and not consumer.closed:
                self._release_consumer(consumer, now)
                self.dispatch(consumer.entity)
            _forget_link_attributes(link)
            link = link.next(0)
        session = connection.session_head(0)
        while session is not None:
            session.reply_links = None
            session = session.next(0)

    # --- links ------------------------------------------------------------------------------------

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        remote_terminus = link.remote_target if link.is_receiver else link.remote_source
        address = parse_address(remote_terminus.address)
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if address is None:
            self._refuse(link, ERROR_NOT_FOUND, "The link has no address.")
            return
        if address.is_cbs or address.management:
            self._open_request_link(link, address)
            return
        entity = self.entities.get(address.entity)
        if entity is None:
            self._refuse(link, ERROR_NOT_FOUND, f"The messaging entity '{address.entity}' could not be found.")
            return
        if link.is_receiver:
            self._open_producer(link, entity)
        else:
            self._open_consumer(link, entity)

    def _refuse(self, link: Any, condition: str, description: str) -> None:
        # The SDK needs an attach before the detach that carries the reason.
        link.source.type = Terminus.UNSPECIFIED
        link.target.type = Terminus.UNSPECIFIED
        link.open()
        self._close_link(link, condition, description)

    def _close_link(self, link: Any, condition: str, description: str) -> None:
        if link.state & Endpoint.LOCAL_CLOSED:
            return
        if link.state & Endpoint.LOCAL_UNINIT:
            link.open()
        link.condition = Condition(condition, description)
        link.close()

    def _open_request_link(self, link: Any, address: Address) -> None:
        if not address.is_cbs and address.entity not in self.entities:
            self._refuse(link, ERROR_NOT_FOUND, f"The messaging entity '{address.entity}' could not be found.")
            return
        link.request_address = address
        link.open()
        if link.is_receiver:
            link.flow(_INCOMING_CREDIT)
        else:
            replies = getattr(link.session, "reply_links", None)
            if replies is None:
                replies = {}
                link.session.reply_links = replies
            replies[(address.entity, address.management)] = link

    def _open_producer(self, link: Any, entity: Entity) -> None:
        if entity.is_dead_letter:
            self._refuse(link, ERROR_NOT_ALLOWED, "Cannot send to a dead-letter subqueue.")
            return
        link.producer_entity = entity
        link.max_message_size = MAX_MESSAGE_SIZE
        link.open()
        link.flow(_INCOMING_CREDIT)

    def _open_consumer(self, link: Any, entity: Entity) -> None:
        receive_and_delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        consumer = Consumer(link, entity, receive_and_delete)
        filters = _read_filter(link.remote_source)
        if SESSION_FILTER in filters or "com.microsoft:session-filter" in filters:
            if not entity.requires_session:
                self._refuse(link, ERROR_NOT_ALLOWED, f"'{entity.name}' does not require sessions.")
                return
            consumer.wants_session = True
            requested = filters.get(SESSION_FILTER, filters.get("com.microsoft:session-filter"))
            now = now_ms()
            if requested is not None:
                session = entity.sessions.get(str(requested))
                if session is not None and session.holder is not None:
                    self._refuse(
                        link, ERROR_SESSION_CANNOT_BE_LOCKED,
                        f"The session '{requested}' is locked by another receiver.",
                    )
                    return
                self._grant_session(consumer, entity.session(str(requested)), now)
                return
            wait_ms = _DEFAULT_SESSION_WAIT_MS
            properties = link.remote_properties or {}
            for key, value in properties.items():
                if str(key) == TIMEOUT_PROPERTY and value is not None:
                    wait_ms = int(value)
            consumer.wait_deadline_ms = now + wait_ms
            link.consumer = consumer
            entity.waiting_for_session.append(consumer)
            self._place_waiting(entity, now)
            return
        if entity.requires_session:
            self._refuse(link, ERROR_NOT_ALLOWED, f"'{entity.name}' requires a session receiver.")
            return
        link.consumer = consumer
        entity.consumers.append(consumer)
        link.open()

    def _grant_session(self, consumer: Consumer, session: SessionQueue, now: int) -> None:
        entity = consumer.entity
        link = consumer.link
        session.holder = consumer
        session.locked_until_ms = now + entity.config.lock_duration_ms
        consumer.session = session
        link.consumer = consumer
        link.source.filter.clear()
        link.source.filter.put_object({SESSION_FILTER: session.session_id})
        link.properties = {LOCKED_UNTIL_UTC: dotnet_ticks(session.locked_until_ms)}
        entity.consumers.append(consumer)
        heapq.heappush(self._session_expiry, (session.locked_until_ms, next(self._tie), consumer))
        link.open()
        self._feed(consumer, now)

    def _place_waiting(self, entity: Entity, now: int) -> None:
        """Give free sessions with messages to next-available receivers, oldest message first."""
        while entity.waiting_for_session:
            candidates = []
            for session in list(entity.sessions.values()):
                if session.holder is not None:
                    continue
                if session.has_available(entity):
                    candidates.append(session)
                elif session.state is None:
                    # Nothing to remember: forget it (it is recreated when a message for it arrives).
                    del entity.sessions[session.session_id]
            if not candidates:
                return
            session = min(candidates, key=lambda s: s.available[0])
            consumer = entity.waiting_for_session.pop(0)
            self._grant_session(consumer, session, now)

    def _expire_session_waits(self, entity: Entity, now: int) -> None:
        for consumer in [c for c in entity.waiting_for_session if c.wait_deadline_ms <= now]:
            entity.waiting_for_session.remove(consumer)
            consumer.closed = True
            self._refuse(consumer.link, ERROR_TIMEOUT, "No session was available within the wait time.")

    @_guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        consumer = getattr(link, "consumer", None)
        if consumer is not None and not consumer.closed:
            self._release_consumer(consumer, now_ms())
            self.dispatch(consumer.entity)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    on_link_remote_detach = on_link_remote_close

    @_guarded
    def on_link_final(self, event: Any) -> None:
        _forget_link_attributes(event.link)

    def _release_consumer(self, consumer: Consumer, now: int) -> None:
        """A receiver is gone. Session receivers give up their session lock and its messages; a
        plain receiver's locks stay until they expire, as they would in Service Bus."""
        consumer.closed = True
        entity = consumer.entity
        if consumer in entity.consumers:
            entity.consumers.remove(consumer)
        if consumer in entity.waiting_for_session:
            entity.waiting_for_session.remove(consumer)
        session = consumer.session
        if session is not None and session.holder is consumer:
            session.holder = None
            for held in list(consumer.locks.values()):
                if self.locks.get(held.token) == held:  # eq=False: identity
                    self._drop_lock(held)
                    entity.unlock(held.message, now)
            consumer.locks.clear()

    # --- dispatch ---------------------------------------------------------------------------------

    @_guarded
    def on_link_flow(self, event: Any) -> None:
        consumer = getattr(event.link, "consumer", None)
        if consumer is not None and not consumer.closed:
            self._feed(consumer, now_ms())

    def dispatch(self, entity: Entity) -> None:
        now = now_ms()
        if entity.waiting_for_session:
            self._place_waiting(entity, now)
        for consumer in list(entity.consumers):
            if not consumer.closed:
                self._feed(consumer, now)

    def _feed(self, consumer: Consumer, now: int) -> None:
        link = consumer.link
        if consumer.wants_session and consumer.session is None:
            return
        entity = consumer.entity
        while link.credit > 0:
            message = entity.next_available(consumer.session, now)
            if message is None:
                break
            self._deliver(consumer, message, now)
        if link.drain_mode and link.credit > 0:
            link.drained()

    def _deliver(self, consumer: Consumer, message: QueueMessage, now: int) -> None:
        link = consumer.link
        entity = consumer.entity
        if consumer.receive_and_delete:
            payload = message.wire_bytes(None)
            entity.hand_out_and_delete(message)
            delivery = link.delivery(uuid.uuid4().bytes)
            link.send(payload)
            link.advance()
            delivery.settle()
            return
        if consumer.session is not None:
            locked_until = consumer.session.locked_until_ms
        else:
            locked_until = now + entity.config.lock_duration_ms
        prior = message.delivery_count
        lock = entity.lock_message(message, consumer, locked_until)
        self.locks[lock.token] = lock
        if consumer.session is None:
            heapq.heappush(self._lock_expiry, (locked_until, next(self._tie), lock.token))
        consumer.locks[lock.token] = lock
        payload = message.wire_bytes(locked_until, prior)
        delivery = link.delivery(lock.token.bytes_le)
        delivery.lock_token = lock.token
        link.send(payload)
        link.advance()

    # --- deliveries ---------------------------------------------------------------------------------

    @_guarded
    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        if link.is_receiver:
            self._on_incoming(delivery, link)
        else:
            self._on_settlement(delivery)

    def _on_incoming(self, delivery: Any, link: Any) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        if not delivery.readable:
            return
        received = getattr(delivery, "received", None)
        if received is None:
            received = bytearray()
            delivery.received = received
        chunk = link.recv(delivery.pending)
        # Keep reading an oversize message (to drain it) but stop storing it.
        if chunk and len(received) <= MAX_MESSAGE_SIZE:
            received += chunk
        if delivery.partial:
            return
        delivery.received = None
        link.advance()
        if link.credit < _INCOMING_CREDIT // 2:
            link.flow(_INCOMING_CREDIT - link.credit)
        data = bytes(received)
        request_address = getattr(link, "request_address", None)
        if request_address is not None:
            self._on_request(link, request_address, data)
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            return
        entity = getattr(link, "producer_entity", None)
        if entity is None:
            delivery.settle()
            return
        outcome = self._accept_messages(entity, data)
        if outcome is not None:
            # The SDK reads the error's info field by position: send one, or it fails with IndexError and hangs.
            delivery.local.condition = Condition(outcome[0], outcome[1], {symbol("entity"): entity.name})
            delivery.update(Delivery.REJECTED)
        else:
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()

    def _accept_messages(self, entity: Entity, data: bytes) -> tuple[str, str] | None:
        """Enqueue a transfer (one message or a batch); returns an error (condition, description) or None."""
        if len(data) > MAX_MESSAGE_SIZE:
            return (ERROR_MESSAGE_TOO_LARGE,
                    f"The message is larger than the maximum of {MAX_MESSAGE_SIZE} bytes.")
        try:
            encoded = split_batch(data) or [data]
            parsed = [parse_message(item) for item in encoded]
        except CodecError as error:
            return (ERROR_DECODE, f"The message could not be decoded: {error}")
        if entity.requires_session and any(p.session_id is None for p in parsed):
            return (ERROR_NOT_ALLOWED, f"'{entity.name}' requires a session id on every message.")
        entity.enqueue(parsed, now_ms())
        self.dispatch(entity)
        return None

    def _on_settlement(self, delivery: Any) -> None:
        token = getattr(delivery, "lock_token", None)
        if token is None:
            if delivery.settled:
                delivery.settle()
            return
        outcome = delivery.remote_state
        if not outcome and not delivery.settled:
            return
        lock = self.locks.get(token)
        consumer = getattr(delivery.link, "consumer", None)
        if lock is None:
            if delivery.settled or outcome == Delivery.RELEASED:
                delivery.settle()
                return
            lost = ERROR_MESSAGE_LOCK_LOST
            if consumer is not None and consumer.session is not None:
                lost = ERROR_SESSION_LOCK_LOST
            delivery.local.condition = Condition(lost, "The lock on the message was lost.", {symbol("lost"): True})
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        now = now_ms()
        remote = delivery.remote
        if outcome == Delivery.ACCEPTED:
            self.settle(lock, "completed", now)
        elif outcome == Delivery.REJECTED:
            reason, description = _dead_letter_details(remote.condition)
            self.settle(lock, "suspended", now, reason, description)
        elif outcome == Delivery.MODIFIED:
            if remote.undeliverable:
                self.settle(lock, "defered", now)
            else:
                self.settle(lock, "abandoned", now)
            delivery.local.failed = remote.failed
            delivery.local.undeliverable = remote.undeliverable
        elif outcome == Delivery.RELEASED:
            self.settle(lock, "released", now)
        if outcome:
            delivery.update(outcome)
        delivery.settle()

    def settle(self, lock: Lock, disposition: str, now: int, reason: str | None = None,
               description: str | None = None) -> None:
        """Apply a client's decision about a locked message (from a link or from $management)."""
        self._drop_lock(lock)
        message = lock.message
        entity = message.entity
        if disposition == "completed":
            entity.complete(message)
            return
        if disposition == "suspended":
            entity.dead_letter_message(message, reason, description, now)
            if entity.dead_letter is not None:
                self.dispatch(entity.dead_letter)
            return
        if disposition == "defered":
            entity.defer(message)
            return
        entity.unlock(message, now, counted=disposition != "released")
        self.dispatch(entity)
        if entity.dead_letter is not None and entity.dead_letter.consumers:
            self.dispatch(entity.dead_letter)

    def _drop_lock(self, lock: Lock) -> None:
        self.locks.pop(lock.token, None)
        owner = lock.owner
        if isinstance(owner, Consumer):
            owner.locks.pop(lock.token, None)

    def lock_for_management(self, message: QueueMessage, now: int) -> Lock:
        """Lock a deferred message fetched by sequence number (no link carries it)."""
        entity = message.entity
        lock = entity.lock_message(message, None, now + entity.config.lock_duration_ms)
        self._track_lock(lock)
        return lock

    def renew_lock(self, lock: Lock, now: int) -> int:
        entity = lock.message.entity
        lock.locked_until_ms = now + entity.config.lock_duration_ms
        entity.store.renew(entity.name, lock.message.sequence, lock.locked_until_ms)
        heapq.heappush(self._lock_expiry, (lock.locked_until_ms, next(self._tie), lock.token))
        return lock.locked_until_ms

    def renew_session(self, session: SessionQueue, entity: Entity, now: int) -> int:
        session.locked_until_ms = now + entity.config.lock_duration_ms
        holder = session.holder
        for lock in holder.locks.values():
            lock.locked_until_ms = session.locked_until_ms
        heapq.heappush(self._session_expiry, (session.locked_until_ms, next(self._tie), holder))
        return session.locked_until_ms

    # --- request/response: $cbs and $management ------------------------------------------------------

    def _on_request(self, link: Any, address: Address, data: bytes) -> None:
        request = Message()
        request.decode(data)
        properties: dict[str, Any] = {}
        if address.is_cbs:
            properties = {"status-code": 202, "status-description": "Accepted"}
            body: Any = None
        else:
            entity = self.entities[address.entity]
            try:
                body = handle_management(self, entity, request, now_ms())
                if body is None:
                    properties = {"statusCode": 204, "statusDescription": "No content"}
                else:
                    properties = {"statusCode": 200, "statusDescription": "OK"}
            except ManagementError as error:
                body = None
                properties = {
                    "statusCode": error.status,
                    "statusDescription": error.description,
                    "errorCondition": symbol(error.condition),
                }
        reply = Message(correlation_id=request.id, properties=properties, body=body)
        reply_link = self._reply_link(link, address, request.reply_to)
        if reply_link is None:
            log.warning("no reply link for %s request", address.entity)
            return
        delivery = reply_link.delivery(uuid.uuid4().bytes)
        reply_link.send(reply.encode())
        reply_link.advance()
        delivery.settle()

    def _reply_link(self, link: Any, address: Address, reply_to: str | None) -> Any:
        replies = getattr(link.session, "reply_links", None) or {}
        wanted = parse_address(reply_to) if reply_to else None
        for key in ([(wanted.entity, wanted.management)] if wanted else []) + [(address.entity, address.management)]:
            candidate = replies.get(key)
            if candidate is not None and not candidate.state & Endpoint.LOCAL_CLOSED:
                return candidate
        return None

    # --- admin (read from another thread) ------------------------------------------------------------

    def queue_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for entity in list(self.entities.values()):
            if entity.is_dead_letter:
                continue
            figures = entity.counts()
            dead_letter = entity.dead_letter.counts()["total"] if entity.dead_letter else 0
            counts[entity.name] = {
                "active": figures["active"],
                "scheduled": figures["scheduled"],
                "deferred": figures["deferred"],
                "deadLetter": dead_letter,
                "total": figures["total"] + dead_letter,
            }
        return counts


def _forget_link_attributes(link: Any) -> None:
    """Drop what the broker hung on a link. Proton keeps these in the C object's record, where Python's
    garbage collector cannot see the cycle link -> Consumer -> link: without this each connection leaks."""
    for name in ("consumer", "request_address", "producer_entity"):
        if getattr(link, name, None) is not None:
            setattr(link, name, None)


def _read_filter(terminus: Any) -> dict[Any, Any]:
    data = terminus.filter
    data.rewind()
    if not data.next():
        return {}
    value = data.get_object()
    return dict(value) if isinstance(value, dict) else {}


def _dead_letter_details(condition: Any) -> tuple[str | None, str | None]:
    if condition is None:
        return None, None
    info = condition.info or {}
    reason = description = None
    for key, value in dict(info).items():
        if str(key) == "DeadLetterReason":
            reason = None if value is None else str(value)
        elif str(key) == "DeadLetterErrorDescription":
            description = None if value is None else str(value)
    return reason, description


__all__ = ["MAX_MESSAGE_SIZE", "Broker", "Consumer", "now_ms"]
