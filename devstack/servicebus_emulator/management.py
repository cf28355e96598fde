"""The `<entity>/$management` request/response operations the SDK uses.

Each operation takes the decoded request body (a map) and returns the reply body, or None for
"204 no content"; failures raise `ManagementError`, which the broker turns into a status code and an
`errorCondition` the SDK maps onto its exception types.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proton import Array, Data, Message, symbol, timestamp

from .amqp_codec import CodecError, parse_message
from .entities import DEFERRED, Entity

if TYPE_CHECKING:
    from .broker import Broker

UNDESCRIBED = Data.NULL


class ManagementError(Exception):
    def __init__(self, status: int, condition: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.condition = condition
        self.description = description


def _lock_lost(description: str = "The lock supplied is invalid. Either the lock expired, or the message has "
               "already been removed from the queue.") -> ManagementError:
    return ManagementError(410, "com.microsoft:message-lock-lost", description)


def _session_lock_lost(session_id: str) -> ManagementError:
    return ManagementError(410, "com.microsoft:session-lock-lost", f"The session lock on '{session_id}' was lost.")


def _elements(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _field(body: dict[Any, Any], name: str) -> Any:
    for key, value in body.items():
        if str(key) == name:
            return value
    return None


def _as_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return uuid.UUID(bytes=bytes(value))
    return uuid.UUID(str(value))


def _bytes(value: Any) -> bytes:
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise ManagementError(400, "com.microsoft:argument-error", "expected a binary value")


def _renew_lock(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    expirations = []
    for token in _elements(_field(body, "lock-tokens")):
        lock = broker.locks.get(_as_uuid(token))
        if lock is None or lock.message.entity is not entity:
            raise _lock_lost()
        if lock.message.entity.requires_session:
            raise ManagementError(400, "com.microsoft:argument-error", "Session messages are locked by the session.")
        expirations.append(timestamp(broker.renew_lock(lock, now)))
    return {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *expirations)}


def _held_session(entity: Entity, body: dict[Any, Any], now: int) -> Any:
    session_id = str(_field(body, "session-id"))
    session = entity.sessions.get(session_id)
    if session is None or session.holder is None or session.locked_until_ms <= now:
        raise _session_lock_lost(session_id)
    return session


def _renew_session_lock(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    session = _held_session(entity, body, now)
    return {"expiration": timestamp(broker.renew_session(session, entity, now))}


def _get_session_state(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    session = _held_session(entity, body, now)
    return {"session-state": session.state}


def _set_session_state(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    session = _held_session(entity, body, now)
    raw = _field(body, "session-state")
    state = None if raw is None else _bytes(raw)
    entity.store.set_session_state(entity.name, session.session_id, state)
    session.state = state
    return {}


def _peek(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    from_sequence = int(_field(body, "from-sequence-number") or 0)
    count = int(_field(body, "message-count") or 1)
    session_id = _field(body, "session-id")
    found = [
        {"message": message.wire_bytes(None)}
        for message in entity.peek(from_sequence, count, None if session_id is None else str(session_id))
    ]
    return {"messages": found} if found else None


def _schedule(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    parsed = []
    for item in _elements(_field(body, "messages")):
        try:
            parsed.append(parse_message(_bytes(_field(item, "message"))))
        except CodecError as error:
            raise ManagementError(400, "amqp:decode-error", str(error)) from error
    if entity.requires_session and any(p.session_id is None for p in parsed):
        raise ManagementError(400, "amqp:not-allowed", f"'{entity.name}' requires a session id on every message.")
    sequences = entity.enqueue(parsed, now, schedule=True)
    broker.dispatch(entity)
    return {"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *sequences)}


def _cancel_scheduled(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    entity.cancel_scheduled([int(s) for s in _elements(_field(body, "sequence-numbers"))])
    return {}


def _receive_by_sequence(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    receive_and_delete = int(_field(body, "receiver-settle-mode") or 0) == 0
    sequences = [int(s) for s in _elements(_field(body, "sequence-numbers"))]
    messages = []
    for sequence in sequences:
        message = entity.messages.get(sequence)
        if message is None or message.state != DEFERRED or message.lock is not None:
            raise ManagementError(404, "com.microsoft:message-not-found",
                                  f"No deferred message with sequence number {sequence}.")
        messages.append(message)
    replies: list[dict[str, Any]] = []
    for message in messages:
        if receive_and_delete:
            replies.append({"message": message.wire_bytes(None)})
            entity.hand_out_and_delete(message)
        else:
            prior = message.delivery_count
            lock = broker.lock_for_management(message, now)
            wire = message.wire_bytes(lock.locked_until_ms, prior)
            replies.append({"message": wire, "lock-token": lock.token})
    return {"messages": replies}


def _update_disposition(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    status = str(_field(body, "disposition-status"))
    if status not in ("completed", "abandoned", "suspended", "defered"):
        raise ManagementError(400, "com.microsoft:argument-error", f"unknown disposition {status!r}")
    reason = _field(body, "deadletter-reason")
    description = _field(body, "deadletter-description")
    locks = []
    for token in _elements(_field(body, "lock-tokens")):
        lock = broker.locks.get(_as_uuid(token))
        if lock is None:
            raise _lock_lost()
        locks.append(lock)
    for lock in locks:
        broker.settle(lock, status, now, None if reason is None else str(reason),
                      None if description is None else str(description))
    return {}


def _message_sessions(broker: Broker, entity: Entity, body: dict[Any, Any], now: int) -> Any:
    ids = sorted({m.session_id for m in entity.messages.values() if m.session_id is not None})
    if not ids:
        return None
    return {"skip": 0, "sessions-ids": Array(UNDESCRIBED, Data.STRING, *ids)}


_OPERATIONS: dict[str, Callable[[Broker, Entity, dict[Any, Any], int], Any]] = {
    "com.microsoft:renew-lock": _renew_lock,
    "com.microsoft:renew-session-lock": _renew_session_lock,
    "com.microsoft:get-session-state": _get_session_state,
    "com.microsoft:set-session-state": _set_session_state,
    "com.microsoft:peek-message": _peek,
    "com.microsoft:schedule-message": _schedule,
    "com.microsoft:cancel-scheduled-message": _cancel_scheduled,
    "com.microsoft:receive-by-sequence-number": _receive_by_sequence,
    "com.microsoft:update-disposition": _update_disposition,
    "com.microsoft:get-message-sessions": _message_sessions,
}


def handle_management(broker: Broker, entity: Entity, request: Message, now: int) -> Any:
    properties: dict[Any, Any] = dict(request.properties or {})
    operation = str(properties.get("operation") or properties.get(symbol("operation")))
    handler = _OPERATIONS.get(operation)
    if handler is None:
        raise ManagementError(501, "amqp:not-implemented", f"operation {operation!r} is not supported")
    body = request.body if isinstance(request.body, dict) else {}
    return handler(broker, entity, body, now)
