"""Image results written in the background while the chunk's thread goes on to the next image.

Each image's writes (thumbnail blobs, the duplicate index, the result document) are several network round trips; on
Azure that is tens of milliseconds an image during which the analysis would sit idle. One background thread per
worker thread does them in order while the chunk's thread fetches and analyses the next image. At most `depth` images
wait for their writes. A failed write (an infrastructure failure) is raised from the next `submit` or `drain`, so it
still fails the chunk: the host abandons the message and Service Bus redelivers it. Writes are idempotent, so a
redelivery racing a write still in flight stores the same documents.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from shared.thread_resources import PerThread

ImageOutcome = tuple[int, str | None]  # (image index, error code or None)

# The calling thread's own writer: long-lived, so its connections are reused across chunks.
writer_threads: PerThread[ThreadPoolExecutor] = PerThread(
    "image writer",
    lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-writes"),
    lambda executor: executor.shutdown(wait=True),
)


class WriteBehind:
    def __init__(self, depth: int = 2) -> None:
        self._depth = depth
        self._executor = writer_threads.get()
        self._pending: deque[Future[ImageOutcome]] = deque()

    def submit(self, write: Callable[[], ImageOutcome]) -> list[ImageOutcome]:
        """Queues one image's writes; returns the outcomes of earlier images whose writes have finished."""
        self._pending.append(self._executor.submit(write))
        finished = []
        while self._pending and (len(self._pending) > self._depth or self._pending[0].done()):
            finished.append(self._pending.popleft().result())
        return finished

    def drain(self) -> list[ImageOutcome]:
        """Waits for every queued write; returns their outcomes (raises the first failure)."""
        finished = []
        while self._pending:
            finished.append(self._pending.popleft().result())
        return finished

    def abandon(self) -> None:
        """Waits for the queued writes without looking at their outcomes: the chunk is failing anyway, and no write
        may still be running once the message goes back to the queue."""
        wait(list(self._pending))
        self._pending.clear()
