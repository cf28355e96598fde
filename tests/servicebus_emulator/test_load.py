"""Load and robustness of the Service Bus emulator, through the real azure-servicebus SDK and raw sockets.

- 50 client connections at once (sync clients in threads, and asyncio clients in one loop), each sending and
  receiving, every message accounted for exactly once;
- 20 session receivers at once (NEXT_AVAILABLE), each holding a different session;
- misbehaving clients (garbage bytes, connections cut in the middle of a transfer in either direction, a reader
  that stops reading, a message over 256 KB) while a well-behaved client keeps sending and receiving unaffected;
- connection churn leaves no sockets behind in the broker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage
from azure.servicebus.exceptions import MessageSizeExceededError
from proton import Connection, Disposition, Endpoint, Message, Transport

from ._emulator_process import EmulatorProcess, close_quietly, queue_config, receive_n, running_emulator, sb_client

pytestmark = pytest.mark.slow

QUEUE = "load"
SESSION_QUEUE = "load-sessions"
OVER_256_KB = 300 * 1024


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    queues = [
        queue_config(QUEUE, lock_duration="PT30S", max_delivery_count=10),
        queue_config("robust", lock_duration="PT30S", max_delivery_count=10),
        queue_config("robust-big", lock_duration="PT2S", max_delivery_count=10),
        queue_config("robust-flood", lock_duration="PT30S", max_delivery_count=10),
        queue_config(SESSION_QUEUE, requires_session=True, lock_duration="PT30S", max_delivery_count=10),
    ]
    with running_emulator(tmp_path_factory.mktemp("sbload"), queues) as emu:
        yield emu


def _run_threads(n: int, target: Callable[[int], None], barrier: threading.Barrier) -> list[str]:
    errors: list[str] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(f"worker {i}: {type(exc).__name__}: {exc}")
            barrier.abort()  # the others fail fast instead of waiting for the barrier's timeout

    threads = [threading.Thread(target=wrapped, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    if stuck:
        errors.append(f"workers still running after 120 s: {stuck}")
    return errors


def test_50_clients_at_once_send_and_receive_every_message_exactly_once(emulator: EmulatorProcess) -> None:
    n_clients, per_client = 50, 10
    total = n_clients * per_client
    barrier = threading.Barrier(n_clients, timeout=90)
    lock = threading.Lock()
    received: list[str] = []
    deadline = time.monotonic() + 90

    def worker(i: int) -> None:
        client = sb_client(emulator)
        try:
            sender = client.get_queue_sender(QUEUE)
            receiver = client.get_queue_receiver(QUEUE, prefetch_count=0)
            sender.send_messages([ServiceBusMessage(f"c{i}m{j}", message_id=f"c{i}-m{j}") for j in range(per_client)])
            receiver.peek_messages(max_message_count=1, sequence_number=1)  # opens the receiver's link too
            barrier.wait()  # all 50 connections are open with a sender and a receiver each
            while time.monotonic() < deadline:
                with lock:
                    if len(received) >= total:
                        break
                for msg in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                    assert str(msg) == str(msg.message_id).replace("-", "")
                    receiver.complete_message(msg)
                    with lock:
                        received.append(str(msg.message_id))
            barrier.wait()  # still all open at the end
            sender.close()
            receiver.close()
        finally:
            client.close()

    errors = _run_threads(n_clients, worker, barrier)
    assert not errors, "\n".join(errors[:10])
    dupes = [mid for mid, c in Counter(received).items() if c > 1]
    assert not dupes, f"delivered and completed twice: {dupes[:10]}"
    expected = {f"c{i}-m{j}" for i in range(n_clients) for j in range(per_client)}
    assert set(received) == expected, f"missing {sorted(expected - set(received))[:10]}"
    with sb_client(emulator) as client, client.get_queue_receiver(QUEUE) as receiver:
        assert receiver.peek_messages(max_message_count=10, sequence_number=1) == []


def test_50_asyncio_clients_at_once_send_and_receive_every_message_exactly_once(emulator: EmulatorProcess) -> None:
    from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

    n_clients, per_client = 50, 10
    total = n_clients * per_client
    received: list[str] = []

    async def worker(i: int, all_open: asyncio.Barrier) -> None:
        try:
            await work(i, all_open)
        except BaseException:
            await all_open.abort()  # the others fail fast instead of waiting for the overall timeout
            raise

    async def work(i: int, all_open: asyncio.Barrier) -> None:
        async with AsyncServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0) as client:
            sender = client.get_queue_sender(QUEUE)
            receiver = client.get_queue_receiver(QUEUE, prefetch_count=0)
            async with sender, receiver:
                await sender.send_messages(
                    [ServiceBusMessage(f"a{i}m{j}", message_id=f"a{i}-m{j}") for j in range(per_client)]
                )
                await receiver.peek_messages(max_message_count=1, sequence_number=1)
                await all_open.wait()
                deadline = time.monotonic() + 60
                while len(received) < total and time.monotonic() < deadline:
                    for msg in await receiver.receive_messages(max_message_count=10, max_wait_time=1):
                        await receiver.complete_message(msg)
                        received.append(str(msg.message_id))
                await all_open.wait()

    async def main() -> list[BaseException | None]:
        all_open = asyncio.Barrier(n_clients)
        tasks = [worker(i, all_open) for i in range(n_clients)]
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=100)

    results = asyncio.run(main())
    errors = [f"client {i}: {r!r}" for i, r in enumerate(results) if r is not None]
    assert not errors, "\n".join(errors[:10])
    assert len(received) == len(set(received)), "delivered and completed twice"
    assert set(received) == {f"a{i}-m{j}" for i in range(n_clients) for j in range(per_client)}


def test_20_session_receivers_at_once_each_get_their_own_session(emulator: EmulatorProcess) -> None:
    n_sessions, per_session = 20, 5
    with sb_client(emulator) as client, client.get_queue_sender(SESSION_QUEUE) as sender:
        for s in range(n_sessions):
            sender.send_messages(
                [
                    ServiceBusMessage(f"{s}:{j}", session_id=f"sess-{s}", message_id=f"sess-{s}-{j}")
                    for j in range(per_session)
                ]
            )
    barrier = threading.Barrier(n_sessions, timeout=60)
    lock = threading.Lock()
    by_session: dict[str, list[str]] = {}

    def worker(i: int) -> None:
        with (
            sb_client(emulator) as client,
            client.get_queue_receiver(SESSION_QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=20) as receiver,
        ):
            session_id = receiver.session.session_id
            msgs = receive_n(receiver, per_session, timeout=20)
            barrier.wait()  # all 20 session locks are held at the same moment
            for msg in msgs:
                assert msg.session_id == session_id
                receiver.complete_message(msg)
            with lock:
                assert session_id not in by_session, f"session {session_id} given to two receivers"
                by_session[session_id] = [str(m.message_id) for m in msgs]

    errors = _run_threads(n_sessions, worker, barrier)
    assert not errors, "\n".join(errors[:10])
    assert sorted(by_session) == sorted(f"sess-{s}" for s in range(n_sessions))
    for sid, ids in by_session.items():
        assert ids == [f"{sid}-{j}" for j in range(per_session)], f"{sid}: {ids}"
    with sb_client(emulator) as client, client.get_queue_receiver(SESSION_QUEUE, session_id="sess-0") as r:
        assert r.peek_messages(max_message_count=10, sequence_number=1) == []


# --- misbehaving clients -----------------------------------------------------------------------------


class RawAmqpClient:
    """A client driven by proton's protocol engine over a socket we control byte by byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = Connection()
        self.conn.hostname = "localhost"
        self.conn.container = "raw-test-client"
        self.transport = Transport()
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.transport.bind(self.conn)
        self.conn.open()
        self.session = self.conn.session()
        self.session.open()
        self.eof = False

    def closed_by_peer(self) -> bool:
        return bool(self.conn.state & Endpoint.REMOTE_CLOSED) or self.eof

    def has_output(self) -> bool:
        return bool(self.transport.pending() > 0)

    def flush(self) -> None:
        pending = self.transport.pending()
        if pending > 0:
            data = self.transport.peek(pending) or b""
            self.sock.sendall(data)
            self.transport.pop(len(data))

    def pump(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("raw AMQP client: condition not reached")
            self.flush()
            if self.eof:
                return
            capacity = self.transport.capacity()
            if capacity <= 0:
                self.transport.tick(time.monotonic())  # let proton process what it holds
                continue
            self.sock.settimeout(0.05)
            try:
                data = self.sock.recv(min(65536, capacity))
            except TimeoutError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                self.eof = True
                self.transport.close_tail()
            else:
                self.transport.push(data)

    def open_sender(self, address: str) -> Any:
        snd = self.session.sender(f"raw-sender-{address}")
        snd.target.address = address
        snd.source.address = "raw-sender"
        snd.open()
        self.pump(lambda: bool(snd.state & Endpoint.REMOTE_ACTIVE and snd.credit > 0) or self._failed(snd))
        return snd

    def _failed(self, snd: Any) -> bool:
        return bool(snd.state & Endpoint.REMOTE_CLOSED) or self.eof

    def close(self, reset: bool = False) -> None:
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def _expect_server_closes(sock: socket.socket, timeout: float = 10.0) -> None:
    """The broker must drop a connection that speaks garbage (not hang on it)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return
    except ConnectionError:
        return
    except TimeoutError:
        pass
    pytest.fail("broker kept a garbage-speaking connection open")


def _send_garbage(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
        except ConnectionError:
            return  # the broker hung up before reading it all: that is fine
        _expect_server_closes(s)


def _garbage_clients(port: int) -> None:
    # 1. Random bytes from the first byte on.
    _send_garbage(port, os.urandom(64 * 1024))
    # 2. A valid SASL protocol header, then a frame header announcing a ~4 GB frame.
    _send_garbage(port, b"AMQP\x03\x01\x00\x00" + struct.pack(">IBBH", 0xFFFFFF00, 2, 1, 0) + os.urandom(512))
    # 3. A plain AMQP header (skipping SASL) followed by junk.
    _send_garbage(port, b"AMQP\x00\x01\x00\x00" + b"\x00" * 8 + os.urandom(256))


def _mid_transfer_disconnects(port: int, queue: str) -> None:
    for reset in (False, True):
        raw = RawAmqpClient(port)
        snd = raw.open_sender(queue)
        assert snd.state & Endpoint.REMOTE_ACTIVE, "broker refused a plain sender attach"
        msg = Message(id=f"partial-{reset}", body=os.urandom(200 * 1024), inferred=True)
        snd.delivery(b"partial-tag")
        snd.send(msg.encode())
        snd.advance()
        # Proton frames the transfer as we drain its output: write ~100 KB of it, then half a chunk.
        written = 0
        deadline = time.monotonic() + 10
        while written < 100 * 1024:
            assert time.monotonic() < deadline, f"broker stopped taking the transfer after {written} bytes"
            pending = raw.transport.pending()
            if pending <= 0:
                raw.pump(raw.has_output, timeout=5)  # wait for the broker's window
                continue
            chunk = raw.transport.peek(pending) or b""
            raw.sock.sendall(chunk)
            raw.transport.pop(len(chunk))
            written += len(chunk)
        pending = raw.transport.pending()
        assert pending > 0, "the whole message went out: not a mid-transfer disconnect"
        raw.sock.sendall((raw.transport.peek(pending) or b"")[: max(1, pending // 2)])  # cut inside a frame
        raw.close(reset=reset)


def _receiver_vanishes_mid_transfer(port: int, queue: str) -> None:
    """A peek-lock receiver takes a large message and drops its socket after part of the transfer."""
    raw = RawAmqpClient(port)
    rcv = raw.session.receiver("raw-receiver")
    rcv.source.address = queue
    rcv.target.address = "raw-receiver"
    rcv.open()
    raw.pump(lambda: bool(rcv.state & Endpoint.REMOTE_ACTIVE) or raw.eof)
    assert rcv.state & Endpoint.REMOTE_ACTIVE, "broker refused a plain receiver attach"
    rcv.flow(1)
    raw.flush()
    got = 0
    raw.sock.settimeout(5)
    while got < 50 * 1024:  # read the bytes off the socket without letting proton see them
        chunk = raw.sock.recv(16 * 1024)
        assert chunk, "broker closed the connection instead of delivering"
        got += len(chunk)
    raw.close(reset=True)


def _stalled_reader(port: int, queue: str, credit: int) -> RawAmqpClient:
    """A receiver that asks for many large messages and then never reads its socket again."""
    raw = RawAmqpClient(port)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    rcv = raw.session.receiver("stalled-receiver")
    rcv.source.address = queue
    rcv.target.address = "stalled-receiver"
    rcv.open()
    raw.pump(lambda: bool(rcv.state & Endpoint.REMOTE_ACTIVE) or raw.eof)
    assert rcv.state & Endpoint.REMOTE_ACTIVE, "broker refused a plain receiver attach"
    rcv.flow(credit)
    raw.flush()
    return raw


def _oversized_raw(port: int, queue: str) -> str:
    """A client that ignores max-message-size must get a clear error back, and the message must not land."""
    raw = RawAmqpClient(port)
    try:
        snd = raw.open_sender(queue)
        msg = Message(id="oversize-raw", body=b"x" * OVER_256_KB, inferred=True)
        dlv = snd.delivery(b"oversize-tag")
        snd.send(msg.encode())
        snd.advance()
        raw.pump(lambda: bool(dlv.remote_state) or bool(snd.state & Endpoint.REMOTE_CLOSED) or raw.eof, timeout=15)
        conditions = [
            dlv.remote.condition if dlv.remote_state == Disposition.REJECTED else None,
            snd.remote_condition,
            raw.conn.remote_condition,
        ]
        names = [c.name for c in conditions if c is not None]
        assert dlv.remote_state != Disposition.ACCEPTED, "broker accepted a message over 256 KB"
        assert any("message-size-exceeded" in n for n in names), f"unclear error for oversize message: {names}"
        return names[0]
    finally:
        raw.close()


def test_misbehaving_clients_do_not_disturb_a_well_behaved_one(emulator: EmulatorProcess) -> None:
    queue = "robust"
    stop = threading.Event()
    good_sent: list[str] = []
    good_received: list[str] = []
    foreign: list[str] = []
    latencies: list[float] = []
    good_errors: list[str] = []
    started = threading.Event()
    big_body = os.urandom(200 * 1024)

    def well_behaved() -> None:
        client = sb_client(emulator)
        try:
            with client.get_queue_sender(queue) as sender, client.get_queue_receiver(queue) as receiver:
                k = 0
                while not stop.is_set():
                    t0 = time.monotonic()
                    mid = f"good-{k}"
                    sender.send_messages(ServiceBusMessage(f"payload-{k}", message_id=mid))
                    good_sent.append(mid)
                    for msg in receive_n(receiver, 1, timeout=10):
                        receiver.complete_message(msg)
                        (good_received if str(msg.message_id).startswith("good-") else foreign).append(
                            str(msg.message_id)
                        )
                    latencies.append(time.monotonic() - t0)
                    started.set()
                    k += 1
                # Drain whatever is still owed.
                owed = len(good_sent) - len(good_received)
                for msg in receive_n(receiver, owed, timeout=10) if owed > 0 else []:
                    receiver.complete_message(msg)
                    (good_received if str(msg.message_id).startswith("good-") else foreign).append(str(msg.message_id))
                leftovers = receiver.receive_messages(max_message_count=10, max_wait_time=1)
                foreign.extend(str(m.message_id) for m in leftovers)
        except Exception as exc:
            good_errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            close_quietly(client)

    good = threading.Thread(target=well_behaved, daemon=True)
    good.start()
    assert started.wait(30), f"well-behaved client never completed a round trip: {good_errors}"
    idle = [socket.create_connection(("127.0.0.1", emulator.port)) for _ in range(3)]
    idle[1].sendall(b"AMQP")  # half a protocol header, then silence
    idle[2].sendall(b"AMQP\x03\x01\x00\x00")  # SASL header, then silence
    try:
        rounds_before = len(latencies)
        _garbage_clients(emulator.port)
        _mid_transfer_disconnects(emulator.port, queue)
        with sb_client(emulator) as client, client.get_queue_sender("robust-big") as sender:
            sender.send_messages(ServiceBusMessage(big_body, message_id="big"))
        _receiver_vanishes_mid_transfer(emulator.port, "robust-big")
        # 8 MB the broker must push to a client that stopped reading: its socket buffers fill up.
        flood = [os.urandom(200 * 1024) for _ in range(40)]
        with sb_client(emulator) as client, client.get_queue_sender("robust-flood") as sender:
            for i, body in enumerate(flood):
                sender.send_messages(ServiceBusMessage(body, message_id=f"flood-{i}"))
        stalled = _stalled_reader(emulator.port, "robust-flood", credit=len(flood))
        oversize_condition = _oversized_raw(emulator.port, queue)

        # Through the SDK, a message over 256 KB fails with a clear MessageSizeExceededError.
        with sb_client(emulator) as client, client.get_queue_sender(queue) as sender:
            with pytest.raises(MessageSizeExceededError):
                sender.send_messages(ServiceBusMessage(b"y" * OVER_256_KB, message_id="oversize-sdk"))
            # ...and that same sender keeps working for a normal message afterwards.
            sender.send_messages(ServiceBusMessage("normal", message_id="good-after-oversize"))
            good_sent.append("good-after-oversize")

        rounds_stalled = len(latencies)
        time.sleep(1.0)  # let the well-behaved client run a few more rounds while the reader is stalled
        assert len(latencies) > rounds_stalled, "well-behaved client made no progress beside a stalled reader"
        assert len(latencies) > rounds_before, "well-behaved client made no progress during the abuse"
        stalled.close(reset=True)
    finally:
        stop.set()
        good.join(60)
        for s in idle:
            s.close()

    assert not good.is_alive(), "well-behaved client hung"
    assert not good_errors, good_errors
    assert emulator.alive(), emulator.log_tail()
    assert not foreign, f"messages that must not exist were delivered: {foreign}"
    assert sorted(good_received) == sorted(good_sent), (
        f"missing {set(good_sent) - set(good_received)}; extra {Counter(good_received) - Counter(good_sent)}"
    )
    assert max(latencies) < 5.0, f"a well-behaved round trip took {max(latencies):.1f}s"
    assert "message-size-exceeded" in oversize_condition
    assert emulator.counts()["robust-flood"]["total"] == 40, "messages lost behind the stalled reader"
    # The message whose delivery was cut off comes back intact once its lock expires, its count raised.
    with sb_client(emulator) as client, client.get_queue_receiver("robust-big") as receiver:
        big = receive_n(receiver, 1, timeout=10)
        assert [m.message_id for m in big] == ["big"]
        assert b"".join(big[0].body) == big_body
        assert big[0].delivery_count >= 1
        receiver.complete_message(big[0])


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connection_churn_leaks_no_sockets(emulator: EmulatorProcess) -> None:
    assert emulator.proc is not None
    pid = emulator.proc.pid
    baseline = _open_fds(pid)
    for n in range(120):
        kind = n % 4
        if kind == 0:  # a full AMQP open with a sender, then a clean close
            raw = RawAmqpClient(emulator.port)
            raw.open_sender(QUEUE)
            raw.conn.close()
            raw.pump(raw.closed_by_peer)
            raw.close()
        elif kind == 1:  # the same, then a reset instead of a close
            raw = RawAmqpClient(emulator.port)
            raw.open_sender(QUEUE)
            raw.close(reset=True)
        elif kind == 2:  # garbage
            _send_garbage(emulator.port, os.urandom(256))
        else:  # connect and hang up without a byte
            socket.create_connection(("127.0.0.1", emulator.port), timeout=5).close()
    deadline = time.monotonic() + 10
    while _open_fds(pid) > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_fds(pid) <= baseline + 2, f"broker holds {_open_fds(pid) - baseline} more descriptors than before"
    assert emulator.alive()
    with sb_client(emulator) as client, client.get_queue_sender(QUEUE) as sender:
        sender.send_messages(ServiceBusMessage("after churn", message_id="after-churn"))
    with sb_client(emulator) as client, client.get_queue_receiver(QUEUE) as receiver:
        got = receive_n(receiver, 1, timeout=5)
        assert [m.message_id for m in got] == ["after-churn"]
        receiver.complete_message(got[0])
