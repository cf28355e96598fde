"""Resources kept one per thread (a client, a child process, a writer thread), with a close for all of them.

Worker threads are long-lived, so a resource that is costly to build (a Cosmos client, an HTTP client with its CA
bundle, the image pipeline's child process) is built once per thread and reused. `threading.local` alone would
never close them: a `PerThread` also remembers every resource it built, so `close()` closes what every thread
built, and each one whose thread has ended is closed when the next one is built. Every `PerThread` still alive is
closed by `close_all()`, which runs when the interpreter exits (the worker's shutdown) and which tests call.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

_every: weakref.WeakSet[PerThread[object]] = weakref.WeakSet()
_every_lock = threading.Lock()


class PerThread(Generic[T]):
    """One `T` per thread, built by `build` on the thread's first `get()`, closed by `close_resource`."""

    def __init__(self, name: str, build: Callable[[], T], close_resource: Callable[[T], None]) -> None:
        self.name = name
        self._build = build
        self._close_resource = close_resource
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close(): a thread's resource from before is closed, never handed out
        self._built: dict[int, tuple[threading.Thread, T]] = {}  # id(thread-local slot) -> (its thread, resource)
        with _every_lock:
            _every.add(self)  # type: ignore[arg-type]

    def get(self) -> T:
        slot: tuple[int, T] | None = getattr(self._local, "slot", None)
        if slot is not None and slot[0] == self._generation:
            return slot[1]
        resource = self._build()
        ended: list[T] = []
        with self._lock:
            generation = self._generation
            self._built[id(resource)] = (threading.current_thread(), resource)
            for key, (thread, other) in list(self._built.items()):
                if not thread.is_alive():
                    del self._built[key]
                    ended.append(other)
        self._local.slot = (generation, resource)
        self._close_each(ended)
        return resource

    def open_count(self) -> int:
        """Resources built and not closed yet (tests and diagnostics)."""
        with self._lock:
            return len(self._built)

    def close(self) -> int:
        """Closes the resource of every thread; a thread's next `get()` builds a new one. Returns how many closed."""
        with self._lock:
            self._generation += 1
            built = [resource for _, resource in self._built.values()]
            self._built.clear()
        self._close_each(built)
        return len(built)

    def _close_each(self, resources: list[T]) -> None:
        for resource in resources:
            try:
                self._close_resource(resource)
            except Exception:  # one that fails to close must not keep the others open
                log.warning("closing a per-thread %s failed", self.name, exc_info=True)


def close_all() -> int:
    """Closes every thread's resources of every `PerThread` in the process; returns how many were closed."""
    with _every_lock:
        owners = list(_every)
    return sum(owner.close() for owner in owners)


atexit.register(close_all)
