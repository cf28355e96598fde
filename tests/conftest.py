"""Session fixtures: the local stack (Azurite, Cosmos emulator, Service Bus emulator) on free 127.0.0.1 ports.

The stack is started once per pytest session, only if a test asks for it, and stopped by PID afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from devstack.stack import LocalStack, StackPorts


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: fixtures stop the emulators and hosts by PID.
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Never restarted: no Cosmos snapshots (they cost the emulator CPU for nothing here).
    stack = LocalStack(data_dir=Path(tmp_path_factory.mktemp("stack")), ports=StackPorts.free(), persist_cosmos=False)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def storage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Azurite and Cosmos only, for tests that need no Service Bus."""
    stack = LocalStack(
        data_dir=Path(tmp_path_factory.mktemp("storage-stack")), ports=StackPorts.free(), persist_cosmos=False
    )
    stack.start(services=("azurite", "cosmos"))
    try:
        yield stack
    finally:
        stack.stop()
