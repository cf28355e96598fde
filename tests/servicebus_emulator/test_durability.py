"""Durability of the Service Bus emulator: state survives SIGTERM + restart, and kill -9 loses nothing.

Every test runs its own emulator process (tests/servicebus_emulator/_emulator_process.py) on a temporary data
directory, talks to it with the unmodified azure-servicebus SDK, and restarts the process on the same data
directory and port.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

from ._emulator_process import (
    EmulatorProcess,
    close_quietly,
    queue_config,
    receive_n,
    running_emulator,
    sb_client,
)

pytestmark = pytest.mark.slow

LOCK_SECONDS = 3
QUEUE = "durable"
SESSION_QUEUE = "durable-sessions"
DEDUP_QUEUE = "durable-dedup"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    queues = [
        queue_config(QUEUE, lock_duration=f"PT{LOCK_SECONDS}S", max_delivery_count=50),
        queue_config(SESSION_QUEUE, requires_session=True, lock_duration=f"PT{LOCK_SECONDS}S", max_delivery_count=50),
    ]
    dedup = queue_config(DEDUP_QUEUE, lock_duration=f"PT{LOCK_SECONDS}S")
    dedup["Properties"].update(RequiresDuplicateDetection=True, DuplicateDetectionHistoryTimeWindow="PT10M")
    queues.append(dedup)
    with running_emulator(tmp_path, queues) as emu:
        yield emu


def _send(emulator: EmulatorProcess, queue: str, messages: list[ServiceBusMessage]) -> None:
    with sb_client(emulator) as client, client.get_queue_sender(queue) as sender:
        sender.send_messages(messages)


def _drain(emulator: EmulatorProcess, queue: str, count: int, timeout: float) -> list[Any]:
    """Receive and complete `count` messages (fails if fewer arrive)."""
    with sb_client(emulator) as client, client.get_queue_receiver(queue, prefetch_count=0) as receiver:
        got = receive_n(receiver, count, timeout)
        for msg in got:
            receiver.complete_message(msg)
    assert len(got) == count, f"expected {count} messages, got {len(got)}: {[str(m.message_id) for m in got]}"
    return got


def _assert_empty(emulator: EmulatorProcess, queue: str, wait: float = 1.0) -> None:
    with sb_client(emulator) as client, client.get_queue_receiver(queue) as receiver:
        peeked = receiver.peek_messages(max_message_count=50, sequence_number=1)
        assert peeked == [], f"{queue} should be empty, peek shows {[str(m.message_id) for m in peeked]}"
        extra = receiver.receive_messages(max_message_count=50, max_wait_time=wait)
        assert extra == [], f"{queue} should be empty, received {[str(m.message_id) for m in extra]}"


def _props(msg: Any) -> dict[str, Any]:
    def text(v: Any) -> Any:
        return v.decode() if isinstance(v, bytes) else v

    return {text(k): text(v) for k, v in (msg.application_properties or {}).items()}


def _session_receiver(client: Any, session_id: str, timeout: float) -> Any:
    """Open a receiver on a named session, retrying while a dead connection's lock runs out."""
    deadline = time.monotonic() + timeout
    while True:
        receiver = client.get_queue_receiver(SESSION_QUEUE, session_id=session_id, max_wait_time=2)
        try:
            receiver.__enter__()
            return receiver
        except (SessionCannotBeLockedError, OperationTimeoutError):
            close_quietly(receiver)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_clean_restart_keeps_messages_deliveries_sequence_numbers_dead_letters_schedules_and_sessions(
    emulator: EmulatorProcess,
) -> None:
    # --- build up state of every kind -------------------------------------------------------------
    plain = [
        ServiceBusMessage(
            f"body-{i}",
            message_id=f"plain-{i}",
            application_properties={"idx": i, "kind": "plain"},
            content_type="text/plain",
            correlation_id=f"corr-{i}",
            subject="durability",
        )
        for i in range(5)
    ]
    _send(emulator, QUEUE, plain)
    client = sb_client(emulator)
    try:
        with client.get_queue_sender(QUEUE) as sender:
            now = datetime.now(UTC)
            far_seq = sender.schedule_messages(
                ServiceBusMessage("far", message_id="sched-far"), now + timedelta(minutes=30)
            )[0]
            near_seq = sender.schedule_messages(
                ServiceBusMessage("near", message_id="sched-near"), now + timedelta(seconds=4)
            )[0]
            cancel_seq = sender.schedule_messages(
                ServiceBusMessage("cancel-me", message_id="sched-cancel"), now + timedelta(minutes=30)
            )[0]
        receiver = client.get_queue_receiver(QUEUE)
        first = receive_n(receiver, 4, timeout=10)
        assert [m.message_id for m in first] == ["plain-0", "plain-1", "plain-2", "plain-3"]
        by_id = {m.message_id: m for m in first}
        seqs_before = {m.message_id: m.sequence_number for m in first}
        receiver.dead_letter_message(by_id["plain-0"], reason="bad-input", error_description="cannot parse")
        receiver.defer_message(by_id["plain-1"])
        receiver.complete_message(by_id["plain-2"])
        in_flight_count = by_id["plain-3"].delivery_count
        with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead_before = dlq.peek_messages(max_message_count=5, sequence_number=1)
            assert [m.message_id for m in dead_before] == ["plain-0"]
        # plain-3 stays locked (in flight) across the restart; plain-4 was never received.
        peeked = receiver.peek_messages(max_message_count=20, sequence_number=1)
        seqs_before.update({m.message_id: m.sequence_number for m in peeked})
        max_seq_before = max([*seqs_before.values(), far_seq, near_seq, cancel_seq])

        session_msgs = [ServiceBusMessage(f"s{i}", message_id=f"sess-{i}", session_id="s1") for i in range(3)]
        with client.get_queue_sender(SESSION_QUEUE) as sender:
            sender.send_messages(session_msgs)
        with client.get_queue_receiver(SESSION_QUEUE, session_id="s1", max_wait_time=5) as srecv:
            got = receive_n(srecv, 1, timeout=10)
            assert [m.message_id for m in got] == ["sess-0"]
            srecv.complete_message(got[0])
            srecv.session.set_state(b"after-sess-0")

        # --- clean restart with the receiver still holding plain-3's lock --------------------------
        assert emulator.stop() == 0, emulator.log_tail()
    finally:
        close_quietly(client)
    emulator.start()

    counts = emulator.counts()
    assert counts[QUEUE]["deadLetter"] == 1, counts
    assert counts[QUEUE]["deferred"] == 1, counts
    assert counts[QUEUE]["scheduled"] >= 2, counts  # sched-near may already be active
    assert counts[QUEUE]["total"] == 7, counts  # plain-0 (dead), 1, 3, 4 and the three scheduled
    assert counts[SESSION_QUEUE]["active"] == 2, counts

    with sb_client(emulator) as client:
        with client.get_queue_receiver(QUEUE) as receiver:
            peeked = receiver.peek_messages(max_message_count=20, sequence_number=1)
            peeked_ids = {str(m.message_id): m for m in peeked}
            # The completed message is gone; everything else is still there with its sequence number.
            assert "plain-2" not in peeked_ids
            for mid in ("plain-1", "plain-3", "plain-4", "sched-far", "sched-cancel"):
                assert mid in peeked_ids, f"{mid} missing after restart; peek: {sorted(peeked_ids)}"
                if mid in seqs_before:
                    assert peeked_ids[mid].sequence_number == seqs_before[mid]
            assert peeked_ids["sched-far"].sequence_number == far_seq
            # Deferred message survives and is still receivable by sequence number only.
            deferred = receiver.receive_deferred_messages([seqs_before["plain-1"]])
            assert [m.message_id for m in deferred] == ["plain-1"]
            assert str(deferred[0]) == "body-1"
            receiver.complete_message(deferred[0])

            got = receive_n(receiver, 3, timeout=LOCK_SECONDS + 8)
            ids = sorted(str(m.message_id) for m in got)
            assert ids == ["plain-3", "plain-4", "sched-near"], ids
            for msg in got:
                if msg.message_id == "plain-3":
                    assert msg.delivery_count > in_flight_count, "in-flight delivery not counted"
                    assert msg.sequence_number == seqs_before["plain-3"]
                if msg.message_id == "plain-4":
                    # Properties persisted intact.
                    assert str(msg) == "body-4"
                    assert _props(msg) == {"idx": 4, "kind": "plain"}
                    assert msg.content_type == "text/plain"
                    assert msg.correlation_id == "corr-4"
                    assert msg.subject == "durability"
                if msg.message_id == "sched-near":
                    assert msg.sequence_number == near_seq
                receiver.complete_message(msg)

        with client.get_queue_sender(QUEUE) as sender:
            sender.cancel_scheduled_messages([cancel_seq])
            sender.send_messages(ServiceBusMessage("new", message_id="after-restart"))

        with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead = receive_n(dlq, 1, timeout=5)
            assert [m.message_id for m in dead] == ["plain-0"]
            assert dead[0].dead_letter_reason == "bad-input"
            assert dead[0].dead_letter_error_description == "cannot parse"
            assert dead[0].sequence_number == dead_before[0].sequence_number
            dlq.complete_message(dead[0])

        with client.get_queue_receiver(QUEUE) as receiver:
            fresh = receive_n(receiver, 1, timeout=5)
            assert [m.message_id for m in fresh] == ["after-restart"]
            assert fresh[0].sequence_number > max_seq_before, "sequence number reused after restart"
            receiver.complete_message(fresh[0])
            remaining = {str(m.message_id) for m in receiver.peek_messages(max_message_count=20, sequence_number=1)}
            assert remaining == {"sched-far"}, remaining

        left = emulator.counts()[QUEUE]
        assert (left["active"], left["scheduled"], left["deadLetter"], left["total"]) == (0, 1, 0, 1), left

        srecv = _session_receiver(client, "s1", timeout=LOCK_SECONDS + 8)
        try:
            assert srecv.session.get_state() == b"after-sess-0"
            rest = receive_n(srecv, 2, timeout=5)
            assert [m.message_id for m in rest] == ["sess-1", "sess-2"]
            for msg in rest:
                srecv.complete_message(msg)
        finally:
            close_quietly(srecv)


def test_kill9_between_receive_and_settle_redelivers_with_higher_count_and_new_sequence_numbers(
    emulator: EmulatorProcess,
) -> None:
    _send(emulator, QUEUE, [ServiceBusMessage("payload", message_id="victim")])
    client = sb_client(emulator)
    receiver = client.get_queue_receiver(QUEUE)
    first = receive_n(receiver, 1, timeout=10)
    assert [m.message_id for m in first] == ["victim"]
    count0, seq0 = first[0].delivery_count, first[0].sequence_number

    emulator.kill()  # between the receive and its settlement
    close_quietly(receiver, client)
    emulator.start()

    with sb_client(emulator) as client, client.get_queue_receiver(QUEUE) as receiver:
        again = receive_n(receiver, 1, timeout=LOCK_SECONDS + 8)
        assert [m.message_id for m in again] == ["victim"], "message lost by kill -9"
        assert again[0].delivery_count > count0
        assert again[0].sequence_number == seq0
        assert str(again[0]) == "payload"
        receiver.complete_message(again[0])

    # The completion is durable: kill -9 right after it does not bring the message back.
    emulator.restart(hard=True)
    _assert_empty(emulator, QUEUE, wait=LOCK_SECONDS)

    # The queue is now empty, yet sequence numbers keep increasing (not derived from stored messages).
    _send(emulator, QUEUE, [ServiceBusMessage("next", message_id="next")])
    emulator.restart(hard=True)
    got = _drain(emulator, QUEUE, 1, timeout=5)
    assert got[0].sequence_number > seq0
    seq1 = got[0].sequence_number
    emulator.restart(hard=True)
    _send(emulator, QUEUE, [ServiceBusMessage("last", message_id="last")])
    got = _drain(emulator, QUEUE, 1, timeout=5)
    assert got[0].sequence_number > seq1, "sequence number reused after kill -9"


def test_kill9_repeatedly_with_a_batch_in_flight_loses_nothing_and_resurrects_nothing(
    emulator: EmulatorProcess,
) -> None:
    sent: set[str] = set()
    completed: set[str] = set()
    seq_of: dict[str, int] = {}
    last_count: dict[str, int] = {}
    max_seq = 0

    def send_batch(prefix: str, n: int) -> None:
        ids = [f"{prefix}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
        _send(emulator, QUEUE, [ServiceBusMessage(f"body:{mid}", message_id=mid) for mid in ids])
        sent.update(ids)

    send_batch("initial", 60)
    for round_no in range(3):
        client = sb_client(emulator)
        receiver = client.get_queue_receiver(QUEUE, prefetch_count=0)
        batch = receive_n(receiver, 20, timeout=LOCK_SECONDS + 8, batch=20)
        assert batch, f"round {round_no}: nothing received"
        new_max = max_seq
        for msg in batch:
            mid = str(msg.message_id)
            assert mid in sent, f"unknown message {mid}"
            assert mid not in completed, f"completed message {mid} delivered again (round {round_no})"
            assert str(msg) == f"body:{mid}"
            if mid in seq_of:
                assert msg.sequence_number == seq_of[mid], f"{mid} changed sequence number"
                assert msg.delivery_count > last_count[mid], f"{mid} redelivered without a higher count"
            seq_of[mid] = msg.sequence_number
            last_count[mid] = msg.delivery_count
            new_max = max(new_max, msg.sequence_number)
        for msg in batch[::2]:
            receiver.complete_message(msg)
            completed.add(str(msg.message_id))
        # The other half is in flight: kill -9 with the locks held, then send more on the new process.
        emulator.kill()
        close_quietly(receiver, client)
        emulator.start()
        max_seq = new_max
        send_batch(f"round{round_no}", 5)

    expected = sent - completed
    with sb_client(emulator) as client, client.get_queue_receiver(QUEUE, prefetch_count=0) as receiver:
        drained = receive_n(receiver, len(expected), timeout=LOCK_SECONDS + 15)
        drained_ids = [str(m.message_id) for m in drained]
        for msg in drained:
            mid = str(msg.message_id)
            if mid in seq_of:
                assert msg.sequence_number == seq_of[mid]
                assert msg.delivery_count > last_count[mid]
            else:
                seq_of[mid] = msg.sequence_number
            receiver.complete_message(msg)
    assert len(drained_ids) == len(set(drained_ids)), "duplicate deliveries"
    assert not set(drained_ids) & completed, f"completions resurrected: {set(drained_ids) & completed}"
    missing = expected - set(drained_ids)
    assert not missing, f"lost {len(missing)} messages: {sorted(missing)[:10]}"
    assert set(drained_ids) | completed == sent
    # Every message has its own sequence number; none reused across the kills.
    assert len(set(seq_of.values())) == len(seq_of) == len(sent)
    _assert_empty(emulator, QUEUE, wait=LOCK_SECONDS)
    assert emulator.counts()[QUEUE]["total"] == 0


def test_kill9_keeps_session_state_in_flight_session_messages_schedules_expiries_and_large_bodies(
    emulator: EmulatorProcess,
) -> None:
    big_body = os.urandom(250 * 1024)
    client = sb_client(emulator)
    try:
        with client.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage(big_body, message_id="big"))
            sender.send_messages(
                ServiceBusMessage("short-lived", message_id="short-lived", time_to_live=timedelta(seconds=1))
            )
        with client.get_queue_sender(SESSION_QUEUE) as sender:
            sender.send_messages([ServiceBusMessage(f"k{i}", message_id=f"k-{i}", session_id="k") for i in range(3)])
            sched_seq = sender.schedule_messages(
                ServiceBusMessage("later", message_id="k-later", session_id="k"),
                datetime.now(UTC) + timedelta(seconds=3),
            )[0]
        receiver = client.get_queue_receiver(SESSION_QUEUE, session_id="k", max_wait_time=5)
        receiver.__enter__()
        got = receive_n(receiver, 2, timeout=10)
        assert [m.message_id for m in got] == ["k-0", "k-1"]
        receiver.complete_message(got[0])
        receiver.session.set_state(b"k-0 done")
        count_k1 = got[1].delivery_count
        emulator.kill()  # k-1 in flight, session locked, k-later scheduled
    finally:
        close_quietly(client)
    emulator.start()

    with sb_client(emulator) as client:
        receiver = _session_receiver(client, "k", timeout=LOCK_SECONDS + 8)
        try:
            assert receiver.session.get_state() == b"k-0 done"
            rest = receive_n(receiver, 3, timeout=10)
            assert [m.message_id for m in rest] == ["k-1", "k-2", "k-later"]
            assert rest[0].delivery_count > count_k1
            assert rest[2].sequence_number == sched_seq
            for msg in rest:
                receiver.complete_message(msg)
        finally:
            close_quietly(receiver)

        with client.get_queue_receiver(QUEUE) as plain:
            big = receive_n(plain, 1, timeout=5)
            assert [m.message_id for m in big] == ["big"]
            assert b"".join(big[0].body) == big_body, "large body corrupted across kill -9"
            plain.complete_message(big[0])
        # The message whose TTL ran out (while the broker was down or since) is dead-lettered.
        with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead = receive_n(dlq, 1, timeout=5)
            assert [m.message_id for m in dead] == ["short-lived"]
            assert dead[0].dead_letter_reason == "TTLExpiredException"
            dlq.complete_message(dead[0])


def _drain_until_idle(emulator: EmulatorProcess, queue: str, idle: float, timeout: float = 30) -> list[Any]:
    """Receive and complete everything until nothing arrives for `idle` seconds."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    with sb_client(emulator) as client, client.get_queue_receiver(queue, prefetch_count=0) as receiver:
        while time.monotonic() < deadline:
            batch = receiver.receive_messages(max_message_count=50, max_wait_time=idle)
            if not batch:
                return got
            for msg in batch:
                receiver.complete_message(msg)
            got.extend(batch)
    pytest.fail(f"{queue} still delivering after {timeout}s")


def test_kill9_during_a_stream_of_batch_sends_keeps_every_acknowledged_batch_whole(
    emulator: EmulatorProcess,
) -> None:
    acked: list[int] = []
    attempted: list[int] = []
    failure: list[BaseException] = []
    client = sb_client(emulator)
    sender = client.get_queue_sender(QUEUE)

    def send_forever() -> None:
        k = 0
        try:
            while True:
                attempted.append(k)
                sender.send_messages([ServiceBusMessage(f"{k}:{i}", message_id=f"b{k}-{i}") for i in range(10)])
                acked.append(k)
                k += 1
        except BaseException as exc:  # the broker died under us: expected
            failure.append(exc)

    thread = threading.Thread(target=send_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 20 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    assert len(acked) >= 20, f"sender too slow or failed before the kill: {failure}"
    emulator.kill()
    thread.join(30)
    assert not thread.is_alive(), "sender hung after the broker was killed"
    close_quietly(sender, client)
    emulator.start()

    drained = _drain_until_idle(emulator, QUEUE, idle=1.5)
    ids = [str(m.message_id) for m in drained]
    assert len(ids) == len(set(ids)), "duplicate messages after kill -9"
    batches: dict[int, set[int]] = {}
    for mid in ids:
        k, i = mid[1:].split("-")
        batches.setdefault(int(k), set()).add(int(i))
    missing = [k for k in acked if k not in batches]
    assert not missing, f"acknowledged batches lost by kill -9: {missing}"
    torn = {k: sorted(v) for k, v in batches.items() if v != set(range(10))}
    assert not torn, f"batches stored in part: {torn}"
    unknown = set(batches) - set(attempted)
    assert not unknown, f"batches never sent: {unknown}"
    # At most the batch in flight at the kill may additionally have landed (it was committed, not yet acked).
    assert set(batches) - set(acked) <= {attempted[-1]}


def test_kill9_during_a_stream_of_completions_resurrects_no_acknowledged_completion(
    emulator: EmulatorProcess,
) -> None:
    sent = {f"c-{i}" for i in range(150)}
    _send(emulator, QUEUE, [ServiceBusMessage(mid, message_id=mid) for mid in sorted(sent)])
    completed: list[str] = []
    in_doubt: list[str] = []
    failure: list[BaseException] = []
    client = sb_client(emulator)
    receiver = client.get_queue_receiver(QUEUE, prefetch_count=0)

    def complete_forever() -> None:
        try:
            while True:
                for msg in receiver.receive_messages(max_message_count=20, max_wait_time=5):
                    in_doubt.append(str(msg.message_id))
                    receiver.complete_message(msg)
                    completed.append(in_doubt.pop())
        except BaseException as exc:  # the broker died under us: expected
            failure.append(exc)

    thread = threading.Thread(target=complete_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(completed) < 40 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.005)
    assert len(completed) >= 40, f"receiver too slow or failed before the kill: {failure}"
    emulator.kill()
    thread.join(30)
    assert not thread.is_alive(), "receiver hung after the broker was killed"
    close_quietly(receiver, client)
    emulator.start()

    # Locks held at the kill survive it; their messages come back when the locks expire.
    drained = [str(m.message_id) for m in _drain_until_idle(emulator, QUEUE, idle=LOCK_SECONDS + 1.5)]
    assert len(drained) == len(set(drained)), "duplicate deliveries"
    resurrected = set(drained) & set(completed)
    assert not resurrected, f"acknowledged completions undone by kill -9: {sorted(resurrected)}"
    lost = sent - set(drained) - set(completed) - set(in_doubt)
    assert not lost, f"messages lost by kill -9: {sorted(lost)}"


def test_kill9_keeps_the_duplicate_detection_history(emulator: EmulatorProcess) -> None:
    _send(emulator, DEDUP_QUEUE, [ServiceBusMessage("first", message_id="once")])
    emulator.restart(hard=True)
    with sb_client(emulator) as client:
        with client.get_queue_sender(DEDUP_QUEUE) as sender:
            sender.send_messages(ServiceBusMessage("again", message_id="once"))
            sender.send_messages(ServiceBusMessage("new", message_id="twice"))
        with client.get_queue_receiver(DEDUP_QUEUE) as receiver:
            got = receive_n(receiver, 3, timeout=1.5)
            assert [m.message_id for m in got] == ["once", "twice"]
            assert str(got[0]) == "first", "the duplicate replaced the original"
