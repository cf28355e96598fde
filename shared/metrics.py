"""The pipeline's OpenTelemetry metrics: named instruments and the few calls the services make.

Instruments come from the global meter provider. Until one is installed (`configure_telemetry` with OTEL_ENABLED,
or a test's in-memory reader) the OpenTelemetry API hands out proxies whose calls do nothing, so recording costs a
function call when telemetry is off. Names, units and attributes are the contract with whoever queries them:
docs/telemetry.md lists them with Application Insights (Kusto) queries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

METER_NAME = "imagepipe"

IMAGES_PROCESSED = "imagepipe.images.processed"
IMAGES_FAILED = "imagepipe.images.failed"
CHUNK_DURATION = "imagepipe.chunk.duration"
CHUNK_QUEUE_WAIT = "imagepipe.chunk.queue_wait"
LANE_DEPTH = "imagepipe.lane.depth"
ROLLUP_DURATION = "imagepipe.rollup.duration"

# A process reports the lane depths of its own last roll-up tick only while they are this fresh: the timer may run
# on another instance next, and a depth nobody refreshes must not be reported forever.
LANE_DEPTH_MAX_AGE_SECONDS = 60.0

_meter = metrics.get_meter(METER_NAME)
_images_processed = _meter.create_counter(
    IMAGES_PROCESSED, unit="{image}", description="Images recorded by chunk workers, whatever their outcome"
)
_images_failed = _meter.create_counter(
    IMAGES_FAILED, unit="{image}", description="Images recorded with an error result, by error code"
)
_chunk_duration = _meter.create_histogram(
    CHUNK_DURATION, unit="s", description="Time a chunk worker spent on one delivery of a chunk message"
)
_chunk_queue_wait = _meter.create_histogram(
    CHUNK_QUEUE_WAIT, unit="s", description="Time from a chunk message's enqueue to the start of its first delivery"
)
_rollup_duration = _meter.create_histogram(ROLLUP_DURATION, unit="s", description="Duration of one status roll-up tick")


class _LaneDepths:
    """The message counts of the chunk queues as the last roll-up tick in this process read them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depths: dict[str, dict[str, int]] = {}
        self._read_at = 0.0

    def update(self, depths: Mapping[str, Mapping[str, int]]) -> None:
        with self._lock:
            self._depths = {queue: dict(counts) for queue, counts in depths.items()}
            self._read_at = time.monotonic()

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            if time.monotonic() - self._read_at > LANE_DEPTH_MAX_AGE_SECONDS:
                return []
            return [
                Observation(count, {"queue": queue, "state": state})
                for queue, counts in self._depths.items()
                for state, count in counts.items()
            ]


_lane_depths = _LaneDepths()
_meter.create_observable_gauge(
    LANE_DEPTH,
    callbacks=[_lane_depths.observe],
    unit="{message}",
    description="Messages in a chunk queue (state: active, scheduled or dead_letter), as of the last roll-up tick",
)


def image_recorded(lane: str, error_code: str | None) -> None:
    """One image's result was stored (error_code None: it succeeded)."""
    _images_processed.add(1, {"lane": lane, "outcome": "failed" if error_code else "succeeded"})
    if error_code:
        _images_failed.add(1, {"lane": lane, "error_code": error_code})


def chunk_delivery_ended(lane: str, express: bool, outcome: str, seconds: float) -> None:
    """outcome: finished, continued (its budget ran out: the rest went to a continuation), cancelled or error."""
    _chunk_duration.record(seconds, {"lane": lane, "express": express, "outcome": outcome})


def chunk_waited(lane: str, express: bool, seconds: float) -> None:
    _chunk_queue_wait.record(seconds, {"lane": lane, "express": express})


def rollup_ticked(seconds: float, jobs_changed: int) -> None:
    _rollup_duration.record(seconds, {"busy": jobs_changed > 0})


def lane_depths_read(depths: Mapping[str, Mapping[str, int]]) -> None:
    _lane_depths.update(depths)
