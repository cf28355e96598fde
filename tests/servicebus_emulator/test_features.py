"""The Service Bus emulator's features, each driven through the unmodified azure-servicebus SDK over a real
socket. Every test uses queues of its own (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import urllib.request
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from azure.servicebus.management import ServiceBusAdministrationClient
from proton import Condition, Delivery, Message
from proton.utils import BlockingConnection

from .conftest import LOCK_DURATION_S, MAX_DELIVERY_COUNT, RunningEmulator, SenderCache

WAIT = 1  # seconds a receive waits for messages that should already be there
EMPTY_WAIT = 0.5  # seconds a receive waits to show that nothing is there


def drain(receiver: Any, count: int, rounds: int = 5) -> list[ServiceBusReceivedMessage]:
    """Receive until `count` messages arrived (a receive may return fewer than asked), in at most `rounds`
    receives. `rounds=1` when fewer than `count` should come: each extra round waits WAIT for nothing."""
    received: list[ServiceBusReceivedMessage] = []
    for _ in range(rounds):
        if len(received) >= count:
            break
        received += receiver.receive_messages(max_message_count=count - len(received), max_wait_time=WAIT)
    return received


def counts(emulator: RunningEmulator) -> dict[str, dict[str, int]]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the emulator's own self-signed certificate, this endpoint only
    url = f"https://127.0.0.1:{emulator.admin_port}/$counts"
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        result: dict[str, dict[str, int]] = json.load(response)
    return result


# --- sending and receiving ------------------------------------------------------------------------


def test_send_single_and_receive_peek_lock(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("send-single")
    sender.send_messages(ServiceBusMessage("hello"))
    with sb_client.get_queue_receiver("send-single") as receiver:
        [message] = drain(receiver, 1)
        assert str(message) == "hello"
        assert message.delivery_count == 0
        assert message.sequence_number == 1
        assert message.lock_token is not None
        assert message.locked_until_utc is not None and message.locked_until_utc > datetime.now(UTC)
        receiver.complete_message(message)
    assert counts(feature_emulator)["send-single"]["total"] == 0


def test_send_batch_keeps_order(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("send-batch")
    batch = sender.create_message_batch()
    for index in range(20):
        batch.add_message(ServiceBusMessage(f"batch-{index}"))
    sender.send_messages(batch)
    sender.send_messages([ServiceBusMessage(f"list-{index}") for index in range(5)])
    with sb_client.get_queue_receiver("send-batch") as receiver:
        messages = drain(receiver, 25)
        for message in messages:
            receiver.complete_message(message)
    bodies = [str(m) for m in messages]
    assert bodies == [f"batch-{i}" for i in range(20)] + [f"list-{i}" for i in range(5)]
    assert [m.sequence_number for m in messages] == list(range(1, 26))


def test_receive_and_delete_removes_at_once(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("receive-and-delete")
    sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    with sb_client.get_queue_receiver(
        "receive-and-delete", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        messages = drain(receiver, 2)
        assert sorted(str(m) for m in messages) == ["a", "b"]
        assert receiver.peek_messages(max_message_count=10) == []


def test_complete_removes_message(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    senders("complete").send_messages([ServiceBusMessage("keep"), ServiceBusMessage("done")])
    with sb_client.get_queue_receiver("complete") as receiver:
        messages = drain(receiver, 2)
        receiver.complete_message(next(m for m in messages if str(m) == "done"))
        receiver.abandon_message(next(m for m in messages if str(m) == "keep"))
        again = drain(receiver, 2, rounds=1)
        assert [str(m) for m in again] == ["keep"]
        receiver.complete_message(again[0])
    assert counts(feature_emulator)["complete"]["total"] == 0


def test_abandon_redelivers_with_count_raised(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("abandon")
    sender.send_messages(ServiceBusMessage("retry me"))
    with sb_client.get_queue_receiver("abandon") as receiver:
        [first] = drain(receiver, 1)
        receiver.abandon_message(first)
        [second] = drain(receiver, 1)
        assert str(second) == "retry me"
        assert second.sequence_number == first.sequence_number
        assert (first.delivery_count, second.delivery_count) == (0, 1)
        receiver.complete_message(second)


def test_defer_and_receive_deferred(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("defer")
    sender.send_messages(ServiceBusMessage("later"))
    with sb_client.get_queue_receiver("defer") as receiver:
        [message] = drain(receiver, 1)
        receiver.defer_message(message)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
        assert counts(feature_emulator)["defer"]["deferred"] == 1
        assert message.sequence_number is not None
        [deferred] = receiver.receive_deferred_messages([message.sequence_number])
        assert str(deferred) == "later"
        assert deferred.state == ServiceBusMessageState.DEFERRED
        receiver.complete_message(deferred)
        with pytest.raises(MessageNotFoundError):
            receiver.receive_deferred_messages([message.sequence_number])
    assert counts(feature_emulator)["defer"]["total"] == 0


def test_dead_letter_with_reason_and_read_subqueue(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("dead-letter")
    sender.send_messages(ServiceBusMessage("poison", application_properties={"kind": "test"}))
    with sb_client.get_queue_receiver("dead-letter") as receiver:
        [message] = drain(receiver, 1)
        receiver.dead_letter_message(message, reason="BadImage", error_description="cannot decode")
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
    with sb_client.get_queue_receiver("dead-letter", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        [dead] = drain(receiver, 1)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "BadImage"
        assert dead.dead_letter_error_description == "cannot decode"
        assert dead.dead_letter_source == "dead-letter"
        assert dead.application_properties is not None
        assert dead.application_properties[b"kind"] == b"test"
        receiver.complete_message(dead)
        assert receiver.peek_messages(max_message_count=5) == []


# --- locks ------------------------------------------------------------------------------------------


def test_lock_expiry_loses_lock_and_redelivers(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("lock-expiry")
    sender.send_messages(ServiceBusMessage("slow"))
    with sb_client.get_queue_receiver("lock-expiry") as receiver:
        [message] = drain(receiver, 1)
        time.sleep(LOCK_DURATION_S + 0.5)
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(message)
        [again] = drain(receiver, 1)
        assert again.sequence_number == message.sequence_number
        assert again.delivery_count == 1
        receiver.complete_message(again)


def test_settling_through_management_after_expiry_fails(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    """The broker itself refuses a stale lock token (not just the SDK's own clock check)."""
    sender = senders("lock-expiry")
    sender.send_messages(ServiceBusMessage("stale"))
    with sb_client.get_queue_receiver("lock-expiry") as receiver:
        [message] = drain(receiver, 1)
        time.sleep(LOCK_DURATION_S + 0.5)
        with pytest.raises(MessageLockLostError):
            receiver.renew_message_lock(message)  # renew goes to $management, no client-side check
        [again] = drain(receiver, 1)
        receiver.complete_message(again)


def test_renew_message_lock_extends_it(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("renew-lock")
    sender.send_messages(ServiceBusMessage("long job"))
    with sb_client.get_queue_receiver("renew-lock") as receiver:
        [message] = drain(receiver, 1)
        first_until = message.locked_until_utc
        assert first_until is not None
        for _ in range(2):
            time.sleep(LOCK_DURATION_S * 0.6)
            renewed = receiver.renew_message_lock(message)
        assert renewed > first_until + timedelta(seconds=LOCK_DURATION_S)
        receiver.complete_message(message)  # would fail had the lock expired
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []


def test_auto_lock_renewer_keeps_the_lock(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("auto-renew")
    sender.send_messages(ServiceBusMessage("renew me"))
    renewer = AutoLockRenewer(max_lock_renewal_duration=30)
    try:
        with sb_client.get_queue_receiver("auto-renew") as receiver:
            [message] = drain(receiver, 1)
            renewer.register(receiver, message)
            time.sleep(LOCK_DURATION_S * 1.3)
            receiver.complete_message(message)
    finally:
        renewer.close()
    assert counts(feature_emulator)["auto-renew"]["total"] == 0


def test_max_delivery_count_dead_letters(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("max-delivery")
    sender.send_messages(ServiceBusMessage("always fails"))
    with sb_client.get_queue_receiver("max-delivery") as receiver:
        for attempt in range(MAX_DELIVERY_COUNT):
            [message] = drain(receiver, 1)
            assert message.delivery_count == attempt
            receiver.abandon_message(message)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
    with sb_client.get_queue_receiver("max-delivery", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        [dead] = drain(receiver, 1)
        assert str(dead) == "always fails"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        receiver.complete_message(dead)


# --- time: TTL and scheduling ----------------------------------------------------------------------


def test_ttl_expiry_dead_letters_where_configured(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("ttl-dead-letter")
    sender.send_messages(ServiceBusMessage("short-lived", time_to_live=timedelta(seconds=1)))
    sender.send_messages(ServiceBusMessage("long-lived"))
    # Already waiting on the dead-letter queue when the message expires: the broker's timer must feed it.
    with sb_client.get_queue_receiver("ttl-dead-letter", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        [dead] = receiver.receive_messages(max_message_count=1, max_wait_time=3)
        assert str(dead) == "short-lived"
        assert dead.dead_letter_reason == "TTLExpiredException"
        receiver.complete_message(dead)
    with sb_client.get_queue_receiver("ttl-dead-letter") as receiver:
        live = drain(receiver, 2, rounds=1)
        assert [str(m) for m in live] == ["long-lived"]
        receiver.complete_message(live[0])


def test_ttl_expiry_drops_without_dead_lettering(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("ttl-drop")
    sender.send_messages(ServiceBusMessage("gone", time_to_live=timedelta(seconds=1)))
    assert counts(feature_emulator)["ttl-drop"]["active"] == 1
    time.sleep(1.5)
    assert counts(feature_emulator)["ttl-drop"] == {
        "active": 0,
        "scheduled": 0,
        "deferred": 0,
        "deadLetter": 0,
        "total": 0,
    }


def test_schedule_and_cancel(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    due = datetime.now(UTC) + timedelta(seconds=3)  # opening a link takes the SDK about half a second
    sender = senders("schedule")
    kept, cancelled = sender.schedule_messages([ServiceBusMessage("kept"), ServiceBusMessage("cancelled")], due)
    sender.cancel_scheduled_messages(cancelled)
    assert counts(feature_emulator)["schedule"]["scheduled"] == 1
    with sb_client.get_queue_receiver("schedule") as receiver:
        [peeked] = receiver.peek_messages(max_message_count=5)
        assert peeked.sequence_number == kept
        assert peeked.state == ServiceBusMessageState.SCHEDULED
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.3)
        messages = drain(receiver, 2, rounds=1)
        assert [str(m) for m in messages] == ["kept"]
        assert messages[0].scheduled_enqueue_time_utc is not None
        assert abs((messages[0].scheduled_enqueue_time_utc - due).total_seconds()) < 0.01
        assert messages[0].enqueued_time_utc is not None and messages[0].enqueued_time_utc >= due - timedelta(
            milliseconds=5
        )
        receiver.complete_message(messages[0])


def test_peek_does_not_lock_or_count(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("peek")
    sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(3)])
    with sb_client.get_queue_receiver("peek") as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        assert [str(m) for m in peeked] == ["p0", "p1", "p2"]
        assert [m.sequence_number for m in peeked] == [1, 2, 3]
        later = receiver.peek_messages(max_message_count=10, sequence_number=2)
        assert [str(m) for m in later] == ["p1", "p2"]
        messages = drain(receiver, 3)
        assert [m.delivery_count for m in messages] == [0, 0, 0]
        for message in messages:
            receiver.complete_message(message)


# --- sessions ----------------------------------------------------------------------------------------


def test_next_available_session_takes_a_session_with_messages(
    sb_client: ServiceBusClient, senders: SenderCache
) -> None:
    sender = senders("session-next")
    sender.send_messages([ServiceBusMessage(f"a{i}", session_id="job-a") for i in range(3)])
    sender.send_messages([ServiceBusMessage("b0", session_id="job-b")])
    seen: dict[str, list[str]] = {}
    for _ in range(2):
        with sb_client.get_queue_receiver(
            "session-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT
        ) as receiver:
            session_id = receiver.session.session_id
            messages = drain(receiver, 3 if session_id == "job-a" else 1)
            assert all(m.session_id == session_id for m in messages)
            seen[session_id] = [str(m) for m in messages]
            for message in messages:
                receiver.complete_message(message)
    assert seen == {"job-a": ["a0", "a1", "a2"], "job-b": ["b0"]}
    started = time.monotonic()
    with (
        pytest.raises(OperationTimeoutError),
        sb_client.get_queue_receiver("session-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver,
    ):
        receiver.receive_messages(max_wait_time=1)
    assert time.monotonic() - started < 5


def test_named_session_receives_only_its_messages(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("session-named")
    sender.send_messages([ServiceBusMessage("mine", session_id="s1"), ServiceBusMessage("other", session_id="s2")])
    with sb_client.get_queue_receiver("session-named", session_id="s2") as receiver:
        assert receiver.session.locked_until_utc is not None
        messages = drain(receiver, 2, rounds=1)
        assert [str(m) for m in messages] == ["other"]
        receiver.complete_message(messages[0])
    with sb_client.get_queue_receiver("session-named", session_id="s1") as receiver:
        [message] = drain(receiver, 1)
        receiver.complete_message(message)


def test_session_lock_is_exclusive(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("session-exclusive")
    sender.send_messages(ServiceBusMessage("x", session_id="only"))
    with sb_client.get_queue_receiver("session-exclusive", session_id="only") as holder:
        with (
            pytest.raises(SessionCannotBeLockedError),
            sb_client.get_queue_receiver("session-exclusive", session_id="only") as intruder,
        ):
            intruder.receive_messages(max_wait_time=WAIT)
        # Next-available must not hand out a session someone holds either.
        with (
            pytest.raises(OperationTimeoutError),
            sb_client.get_queue_receiver(
                "session-exclusive", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
            ) as other,
        ):
            other.receive_messages(max_wait_time=1)
        [message] = drain(holder, 1)
        holder.complete_message(message)
    # Released on close: the session can be taken again.
    with sb_client.get_queue_receiver("session-exclusive", session_id="only") as again:
        assert again.receive_messages(max_wait_time=0.5) == []


def test_session_lock_expiry_releases_session_and_messages(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("session-expiry")
    sender.send_messages(ServiceBusMessage("held", session_id="exp"))
    with sb_client.get_queue_receiver("session-expiry", session_id="exp") as receiver:
        [message] = drain(receiver, 1)
        time.sleep(LOCK_DURATION_S + 0.5)
        with pytest.raises(SessionLockLostError):
            receiver.complete_message(message)
    # The broker let the session go: another receiver gets it, with the message back and counted.
    with sb_client.get_queue_receiver("session-expiry", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT) as r:
        assert r.session.session_id == "exp"
        [again] = drain(r, 1)
        assert str(again) == "held" and again.delivery_count == 1
        r.complete_message(again)


def test_renew_session_lock(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("session-renew")
    sender.send_messages(ServiceBusMessage("keep", session_id="r"))
    with sb_client.get_queue_receiver("session-renew", session_id="r") as receiver:
        [message] = drain(receiver, 1)
        first = receiver.session.locked_until_utc
        assert first is not None
        for _ in range(2):
            time.sleep(LOCK_DURATION_S * 0.6)
            renewed = receiver.session.renew_lock()
        assert renewed > first + timedelta(seconds=LOCK_DURATION_S)
        receiver.complete_message(message)


def test_auto_lock_renewer_keeps_a_session(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    sender = senders("session-auto-renew")
    sender.send_messages(ServiceBusMessage("long", session_id="auto"))
    renewer = AutoLockRenewer(max_lock_renewal_duration=30)
    try:
        with sb_client.get_queue_receiver("session-auto-renew", session_id="auto") as receiver:
            renewer.register(receiver, receiver.session)
            [message] = drain(receiver, 1)
            time.sleep(LOCK_DURATION_S * 1.3)
            receiver.complete_message(message)
    finally:
        renewer.close()


def test_session_state_get_and_set(sb_client: ServiceBusClient) -> None:
    with sb_client.get_queue_receiver("session-state", session_id="stateful") as receiver:
        assert receiver.session.get_state() is None
        receiver.session.set_state(b"progress=3")
        assert receiver.session.get_state() == b"progress=3"
    with sb_client.get_queue_receiver("session-state", session_id="stateful") as receiver:
        assert receiver.session.get_state() == b"progress=3"
        receiver.session.set_state(None)
        assert receiver.session.get_state() is None
    with sb_client.get_queue_receiver("session-state", session_id="other") as receiver:
        assert receiver.session.get_state() is None


# --- entities, properties, duplicates, size ------------------------------------------------------------


def test_missing_queue_fails_at_once(feature_emulator: RunningEmulator) -> None:
    # Default retry policy on purpose: the error must not be retried.
    with ServiceBusClient.from_connection_string(feature_emulator.connection_string) as client:
        started = time.monotonic()
        with pytest.raises(MessagingEntityNotFoundError), client.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(MessagingEntityNotFoundError), client.get_queue_receiver("no-such-queue") as receiver:
            receiver.receive_messages(max_wait_time=1)
        assert time.monotonic() - started < 5


def test_message_properties_round_trip(sb_client: ServiceBusClient, senders: SenderCache) -> None:
    scheduled = datetime.now(UTC) + timedelta(milliseconds=300)
    sent = ServiceBusMessage(
        b"\x00\x01binary body",
        application_properties={"tenant": "t1", "count": 7, "ratio": 0.5, "flag": True},
        content_type="application/json",
        correlation_id="corr-1",
        subject="chunk",
        message_id="msg-1",
        reply_to="replies",
        to="somewhere",
        time_to_live=timedelta(minutes=5),
        scheduled_enqueue_time_utc=scheduled,
    )
    sender = senders("properties")
    sender.send_messages(sent)
    time.sleep(0.5)
    with sb_client.get_queue_receiver("properties") as receiver:
        [received] = drain(receiver, 1)
        receiver.complete_message(received)
    assert b"".join(received.body) == b"\x00\x01binary body"
    assert received.application_properties == {b"tenant": b"t1", b"count": 7, b"ratio": 0.5, b"flag": True}
    assert received.content_type == "application/json"
    assert received.correlation_id == "corr-1"
    assert received.subject == "chunk"
    assert received.message_id == "msg-1"
    assert received.reply_to == "replies"
    assert received.to == "somewhere"
    assert received.time_to_live == timedelta(minutes=5)
    assert received.scheduled_enqueue_time_utc is not None
    assert abs((received.scheduled_enqueue_time_utc - scheduled).total_seconds()) < 0.01
    assert received.expires_at_utc is not None and received.enqueued_time_utc is not None
    assert received.expires_at_utc - received.enqueued_time_utc == timedelta(minutes=5)


def test_duplicate_message_id_is_dropped(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("duplicates")
    sender.send_messages(ServiceBusMessage("first", message_id="job-1.0"))
    sender.send_messages(ServiceBusMessage("second", message_id="job-1.0"))
    sender.send_messages(
        [ServiceBusMessage("third", message_id="job-1.1"), ServiceBusMessage("x", message_id="job-1.1")]
    )
    assert counts(feature_emulator)["duplicates"]["active"] == 2
    with sb_client.get_queue_receiver("duplicates") as receiver:
        messages = drain(receiver, 3, rounds=1)
        assert [str(m) for m in messages] == ["first", "third"]
        for message in messages:
            receiver.complete_message(message)


def test_oversize_message_refused_by_sdk(senders: SenderCache, feature_emulator: RunningEmulator) -> None:
    sender = senders("oversize")
    with pytest.raises(MessageSizeExceededError):
        sender.send_messages(ServiceBusMessage(b"x" * (300 * 1024)))
    sender.send_messages(ServiceBusMessage("small"))  # the link is still good
    assert counts(feature_emulator)["oversize"]["active"] == 1


def test_oversize_message_gets_an_error_from_the_broker(
    senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    """A client that ignores the advertised max-message-size gets the broker's own refusal."""
    connection = BlockingConnection(
        f"127.0.0.1:{feature_emulator.port}", timeout=10, sasl_enabled=True, allowed_mechs="ANONYMOUS"
    )
    try:
        sender = connection.create_sender("oversize-raw")
        sender.link.max_message_size = 0  # do not trust the broker's limit: send it anyway
        outcome = _send_and_wait(connection, sender, Message(body=b"y" * (300 * 1024)))
        assert outcome.remote_state == Delivery.REJECTED
        condition = outcome.remote.condition
        assert isinstance(condition, Condition)
        assert "size" in str(condition.name) or "size" in str(condition.description).lower()
    finally:
        connection.close()
    senders("oversize-raw").send_messages(ServiceBusMessage("after"))
    assert counts(feature_emulator)["oversize-raw"]["active"] == 1


def _send_and_wait(connection: BlockingConnection, sender: Any, message: Message) -> Any:
    delivery = sender.link.delivery(str(uuid.uuid4()))
    sender.link.send(message.encode())
    sender.link.advance()
    connection.wait(lambda: delivery.remote_state != 0 or delivery.settled, timeout=10, msg="no outcome")
    return delivery


def test_garbage_client_does_not_disturb_others(senders: SenderCache, feature_emulator: RunningEmulator) -> None:
    sender = senders("garbage")
    with socket.create_connection(("127.0.0.1", feature_emulator.port), timeout=5) as rogue:
        rogue.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 10)
        rogue.settimeout(2)
        try:
            while rogue.recv(4096):
                pass
        except (TimeoutError, ConnectionError):
            pass
    with socket.create_connection(("127.0.0.1", feature_emulator.port), timeout=5) as half:
        half.sendall(b"AMQP\x03\x01\x00\x00")  # a SASL header, then hang up mid-handshake
    sender.send_messages(ServiceBusMessage("still fine"))
    assert counts(feature_emulator)["garbage"]["active"] == 1


# --- observability ---------------------------------------------------------------------------------------


def test_counts_endpoint_tracks_states(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("counts")
    sender.send_messages([ServiceBusMessage(f"c{i}") for i in range(4)])
    sender.schedule_messages(ServiceBusMessage("future"), datetime.now(UTC) + timedelta(minutes=5))
    with sb_client.get_queue_receiver("counts") as receiver:
        first, second, *_ = drain(receiver, 4)
        receiver.dead_letter_message(first, reason="test")
        receiver.defer_message(second)
    assert counts(feature_emulator)["counts"] == {
        "active": 2,
        "scheduled": 1,
        "deferred": 1,
        "deadLetter": 1,
        "total": 5,
    }


def test_admin_client_reads_runtime_properties(
    sb_client: ServiceBusClient, senders: SenderCache, feature_emulator: RunningEmulator
) -> None:
    sender = senders("admin-client")
    sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    sender.schedule_messages(ServiceBusMessage("future"), datetime.now(UTC) + timedelta(minutes=5))
    with sb_client.get_queue_receiver("admin-client") as receiver:
        [message] = drain(receiver, 1)
        receiver.dead_letter_message(message)
    admin_connection_string = (
        f"Endpoint=sb://127.0.0.1:{feature_emulator.admin_port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3 warns about the unverified local certificate
        with ServiceBusAdministrationClient.from_connection_string(
            admin_connection_string, connection_verify=False
        ) as admin:
            runtime = admin.get_queue_runtime_properties("admin-client")
            queue = admin.get_queue("session-next")
    assert runtime.active_message_count == 1
    assert runtime.scheduled_message_count == 1
    assert runtime.dead_letter_message_count == 1
    assert runtime.total_message_count == 3
    assert queue.requires_session is True
    assert queue.lock_duration == timedelta(seconds=LOCK_DURATION_S)
    assert queue.max_delivery_count == MAX_DELIVERY_COUNT


def test_admin_endpoint_survives_silent_and_plain_clients(feature_emulator: RunningEmulator) -> None:
    address = ("127.0.0.1", feature_emulator.admin_port)
    with socket.create_connection(address, timeout=5) as silent, socket.create_connection(address) as plain:
        plain.sendall(b"GET /$counts HTTP/1.0\r\n\r\n")  # not TLS
        started = time.monotonic()
        assert "counts" in counts(feature_emulator)  # answered while `silent` holds a connection open
        assert time.monotonic() - started < 2
        assert silent.fileno() >= 0


# --- asyncio ------------------------------------------------------------------------------------------------


def test_async_client_sends_receives_and_uses_sessions(feature_emulator: RunningEmulator) -> None:
    async def scenario() -> tuple[list[str], list[str], bytes | None]:
        async with AsyncServiceBusClient.from_connection_string(
            feature_emulator.connection_string, retry_total=0
        ) as client:
            async with client.get_queue_sender("async-plain") as sender:
                await sender.send_messages([ServiceBusMessage("x1"), ServiceBusMessage("x2")])
            async with client.get_queue_sender("session-async") as sender:
                await sender.send_messages(ServiceBusMessage("s1", session_id="aio"))
            async with client.get_queue_receiver("async-plain") as receiver:
                plain = await receiver.receive_messages(max_message_count=2, max_wait_time=WAIT)
                for message in plain:
                    await receiver.complete_message(message)
            async with client.get_queue_receiver(
                "session-async", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT
            ) as receiver:
                session_messages = await receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
                await receiver.session.set_state(b"aio-state")
                state = await receiver.session.get_state()
                for message in session_messages:
                    await receiver.complete_message(message)
            return [str(m) for m in plain], [str(m) for m in session_messages], state

    plain, session_messages, state = asyncio.run(scenario())
    assert sorted(plain) == ["x1", "x2"]
    assert session_messages == ["s1"]
    assert state == b"aio-state"
