"""Run the broker: open the store, listen for AMQP (and the admin endpoint), stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from proton.reactor import Container

from .admin_http import AdminServer
from .broker import Broker
from .config import load_queues
from .store import Store

log = logging.getLogger("servicebus_emulator")


class _StoppableBroker(Broker):
    """The broker plus a flag a signal handler may set; the reactor thread acts on it at the next tick."""

    stop_requested = False

    def on_timer_task(self, event: Any) -> None:
        if self.stop_requested:
            event.reactor.stop()
            return
        super().on_timer_task(event)


def serve(config_path: str | Path, host: str, port: int, data_dir: str | Path, admin_port: int) -> None:
    queues = load_queues(config_path)
    store = Store(data_dir)
    broker = _StoppableBroker(queues, store)
    container = Container(broker)
    acceptor = container.listen(f"{host}:{port}")
    # Proton listens with a backlog of 10: with 50 clients connecting at once the kernel drops SYNs
    # and the SDK gives up after its 1 s connect timeout. Listen again with the system's backlog.
    listener = acceptor._selectable._delegate
    if isinstance(listener, socket.socket):
        listener.listen(socket.SOMAXCONN)
    admin: AdminServer | None = None
    if admin_port:
        admin = AdminServer(broker, host, admin_port, Path(data_dir))
        admin.start()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        broker.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    admin_text = f"{host}:{admin.port}" if admin else "disabled"
    print(f"servicebus-emulator ready amqp={host}:{port} admin={admin_text}", flush=True)
    log.info("queues: %s", ", ".join(q.name for q in queues))
    try:
        container.run()
    finally:
        if admin:
            admin.stop()
        store.close()
        print("servicebus-emulator stopped", flush=True)
        sys.stdout.flush()
