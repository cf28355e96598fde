"""Benchmark of the local Service Bus emulator through the unmodified azure-servicebus SDK.

Starts its own emulator (``python -m devstack.servicebus_emulator``) on a free port with a temporary config
and data directory, measures, stops it, and prints messages/s for:

- batched send: batches of 100 messages of 1 KB each (``ServiceBusMessageBatch``);
- peek-lock receive + complete: ``receive_messages`` then ``complete_message`` for each message;
- session receive + complete: NEXT_AVAILABLE session receivers, receive + complete every message.

Usage (from the repository root)::

    .venv/bin/python bench/servicebus_bench.py [--messages 5000] [--sessions 10] [--check]

``--check`` exits 1 when a figure is below its target (2,000 msg/s send, 500 msg/s receive + complete).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage, ServiceBusSender

REPO_ROOT = Path(__file__).resolve().parents[1]
QUEUE = "bench"
SESSION_QUEUE = "bench-sessions"
BATCH = 100
BODY = b"x" * 1024
TARGETS = {
    "batched_send": 2000.0,
    "receive_complete": 500.0,
    "session_receive_complete": 500.0,
    "session_receive_complete_steady": 500.0,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        config = {
            "UserConfig": {
                "Namespaces": [
                    {
                        "Name": "sbemulatorns",
                        "Queues": [
                            {"Name": name, "Properties": {**props, "RequiresSession": sessions}}
                            for name, sessions in ((QUEUE, False), (SESSION_QUEUE, True))
                            for props in [
                                {
                                    "LockDuration": "PT60S",
                                    "MaxDeliveryCount": 10,
                                    "DefaultMessageTimeToLive": "P14D",
                                    "DeadLetteringOnMessageExpiration": True,
                                }
                            ]
                        ],
                    }
                ]
            }
        }
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config))
        self.log_path = workdir / "emulator.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack.servicebus_emulator",
                "--config",
                str(config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(workdir / "data"),
                "--admin-port",
                str(_free_port()),
            ],
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + 30
        while b"servicebus-emulator ready" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"emulator did not start:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.05)

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://localhost:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _start_emulator(workdir: Path) -> Emulator:
    """Start on free ports, retrying if another process takes one between probing and binding."""
    for attempt in range(3):
        try:
            return Emulator(workdir)
        except SystemExit as error:
            if "Address already in use" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _send_batches_on(sender: ServiceBusSender, n_batches: int, session_id: str | None = None) -> None:
    prefix = uuid.uuid4().hex[:8]  # unique message ids, in case a queue detects duplicates
    for b in range(n_batches):
        batch = sender.create_message_batch()
        for i in range(BATCH):
            batch.add_message(ServiceBusMessage(BODY, message_id=f"{prefix}-{b}-{i}", session_id=session_id))
        sender.send_messages(batch)


def _send_batches(client: ServiceBusClient, queue: str, n_batches: int, session_id: str | None = None) -> None:
    with client.get_queue_sender(queue) as sender:
        _send_batches_on(sender, n_batches, session_id)


def bench_batched_send(client: ServiceBusClient, messages: int) -> float:
    """Build and send `messages` / 100 batches on an open sender (the link's opening is not timed)."""
    with client.get_queue_sender(QUEUE) as sender:
        _send_batches_on(sender, 1)  # warm-up: connection, CBS, link attach, first SQLite pages
        n_batches = messages // BATCH
        start = time.perf_counter()
        _send_batches_on(sender, n_batches)
        return n_batches * BATCH / (time.perf_counter() - start)


def bench_receive_complete(client: ServiceBusClient, messages: int) -> float:
    """Receive + complete what bench_batched_send left; the first batch (link opening) is not timed."""
    total = messages + BATCH  # including the warm-up batch
    with client.get_queue_receiver(QUEUE, prefetch_count=BATCH) as receiver:
        done = timed_from = 0
        start = 0.0
        while done < total:
            if done and not start:
                start = time.perf_counter()
                timed_from = done
            got = receiver.receive_messages(max_message_count=BATCH, max_wait_time=10)
            if not got:
                raise SystemExit(f"receive stalled after {done} of {total} messages")
            for msg in got:
                receiver.complete_message(msg)
            done += len(got)
        return (done - timed_from) / (time.perf_counter() - start)


def bench_session_receive_complete(
    client: ServiceBusClient, sessions: int, per_session: int, workers: int
) -> tuple[float, float]:
    """`workers` threads each take the next available session, receive + complete its messages, close it.

    Returns (msg/s end to end, including each session's accept and close; msg/s inside receive + complete
    only). A receiver stops once it has its session's known message count (no idle wait at the end).
    """
    n_batches = per_session // BATCH
    for s in range(sessions):
        _send_batches(client, SESSION_QUEUE, n_batches, session_id=f"session-{s}")
    per_session = n_batches * BATCH
    total = sessions * per_session
    lock = threading.Lock()
    state = {"claimed": 0, "done": 0, "busy": 0.0}
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                with lock:
                    if state["claimed"] >= sessions:
                        return
                    state["claimed"] += 1
                with client.get_queue_receiver(
                    SESSION_QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5, prefetch_count=BATCH
                ) as receiver:
                    got_here = 0
                    t0 = time.perf_counter()
                    while got_here < per_session:
                        got = receiver.receive_messages(max_message_count=BATCH, max_wait_time=5)
                        if not got:
                            raise RuntimeError(f"session {receiver.session.session_id} stalled at {got_here}")
                        for msg in got:
                            receiver.complete_message(msg)
                        got_here += len(got)
                    with lock:
                        state["busy"] += time.perf_counter() - t0
                        state["done"] += got_here
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"session benchmark failed: {errors[0]!r}")
    if state["done"] != total:
        raise SystemExit(f"session receive got {state['done']} of {total} messages")
    return total / elapsed, total / state["busy"] * min(workers, sessions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages for send and receive (x100)")
    parser.add_argument("--sessions", type=int, default=10, help="sessions for the session benchmark")
    parser.add_argument("--per-session", type=int, default=500, help="messages per session (x100)")
    parser.add_argument("--session-workers", type=int, default=4, help="session receivers working at once")
    parser.add_argument("--check", action="store_true", help="exit 1 when a figure misses its target")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sbbench-") as tmp:
        emulator = _start_emulator(Path(tmp))
        try:
            with ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0) as client:
                results["batched_send"] = bench_batched_send(client, args.messages)
                results["receive_complete"] = bench_receive_complete(client, args.messages)
                (
                    results["session_receive_complete"],
                    results["session_receive_complete_steady"],
                ) = bench_session_receive_complete(client, args.sessions, args.per_session, args.session_workers)
        finally:
            emulator.stop()

    labels = {
        "batched_send": f"batched send ({BATCH} x 1 KB per batch)",
        "receive_complete": "peek-lock receive + complete",
        "session_receive_complete": f"session receive + complete ({args.session_workers} receivers)",
        "session_receive_complete_steady": "  same, inside receive + complete only",
    }
    print(f"Service Bus emulator benchmark ({platform.python_version()}, {os.cpu_count()} CPUs)")
    below = []
    for key, rate in results.items():
        ok = rate >= TARGETS[key]
        if not ok:
            below.append(key)
        print(f"  {labels[key]:<40} {rate:>8.0f} msg/s   (target >= {TARGETS[key]:.0f}: {'ok' if ok else 'BELOW'})")
    if args.json:
        summary: dict[str, Any] = {k: round(v, 1) for k, v in results.items()}
        print(json.dumps(summary))
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
