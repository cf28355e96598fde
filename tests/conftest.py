"""Session fixtures: the local stack (Azurite, Cosmos emulator, Service Bus emulator) on free 127.0.0.1 ports.

The stack is started once per pytest session, only if a test asks for it, and stopped by PID afterwards.
"""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

from devstack.stack import LocalStack, StackPorts


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: fixtures stop the emulators and hosts by PID.
    signal.signal(signal.SIGTERM, _interrupt)


# What starts an emulator or a host. A test is a `stack` test when its own code, a helper of its module it calls, or
# any fixture it uses (directly or through other fixtures) names one of these: the marker is added at collection,
# so `-m "not stack"` never starts one, and no test has to remember to say so.
STACK_STARTERS = frozenset(
    {
        "LocalStack",
        "start_functions_host",
        "start_emulator",
        "running_emulator",
        "EmulatorProcess",
        "FunctionsHostProcess",
    }
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("stack") is None and _starts_stack(item):
            item.add_marker(pytest.mark.stack)


def _starts_stack(item: pytest.Item) -> bool:
    functions: list[Callable[..., Any]] = [getattr(item, "obj", None) or (lambda: None)]
    fixture_info = getattr(item, "_fixtureinfo", None)  # the closure of the fixtures the test uses, with their defs
    if fixture_info is not None:
        functions += [d.func for defs in fixture_info.name2fixturedefs.values() for d in defs]
    seen: set[Any] = set()
    return any(_names_a_starter(f, seen) for f in functions)


def _names_a_starter(function: Callable[..., Any], seen: set[Any]) -> bool:
    function = inspect.unwrap(function)
    code = getattr(function, "__code__", None)
    if code is None or function in seen:
        return False
    seen.add(function)
    module_globals = getattr(function, "__globals__", {})
    for name in _names(code):
        if name in STACK_STARTERS:
            return True
        helper = module_globals.get(name)
        if inspect.isfunction(helper) and helper.__module__ == function.__module__ and _names_a_starter(helper, seen):
            return True
    return False


def _names(code: CodeType) -> Iterator[str]:
    """The global and attribute names a function's code uses, its nested functions' included."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _names(constant)


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
