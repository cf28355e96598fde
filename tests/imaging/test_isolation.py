"""The hard limit: a child process that hangs or crashes on an image is killed/replaced, the caller gets a result."""

from __future__ import annotations

import os
import signal
import time

from shared.imaging import ErrorCode, ImageResult, ImagingOptions, process_image
from shared.imaging.isolation import IsolatedImagePipeline
from tests.imaging import corpus


def _hang_on_marker(data: bytes, options: ImagingOptions) -> ImageResult:
    """Stands in for a decoder stuck in C code: sleeps (uninterruptibly, as far as the budget knows)."""
    if data.startswith(b"HANG"):
        time.sleep(60)
    if data.startswith(b"CRASH"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return process_image(data, options)


def test_results_come_back_with_their_thumbnails() -> None:
    data = corpus.encode(corpus.photo("astronaut", 800), "JPEG")
    with IsolatedImagePipeline() as pipeline:
        result = pipeline.process(data)

    assert result.ok and len(result.thumbnails) == 6
    assert result.model_dump() == process_image(data).model_dump(exclude={"timings_ms"}) | {
        "timings_ms": result.timings_ms
    }


def test_a_hanging_image_is_killed_at_the_budget_and_the_next_image_still_works() -> None:
    good = corpus.encode(corpus.photo("coffee", 400), "PNG")
    short_budget = ImagingOptions(time_budget_seconds=0.5)
    with IsolatedImagePipeline(grace_seconds=0.5, processor=_hang_on_marker) as pipeline:
        assert pipeline.process(good).ok
        start = time.monotonic()

        hung = pipeline.process(b"HANG" + good, short_budget)

        assert time.monotonic() - start < 5
        assert hung.error is not None and hung.error.code == ErrorCode.TIMEOUT
        assert pipeline.process(good).ok
        assert pipeline.children_started == 2


def test_a_crashing_decoder_is_an_error_result_not_a_dead_worker() -> None:
    good = corpus.encode(corpus.photo("coffee", 400), "PNG")
    with IsolatedImagePipeline(processor=_hang_on_marker) as pipeline:
        crashed = pipeline.process(b"CRASH" + good)

        assert crashed.error is not None and crashed.error.code == ErrorCode.PROCESSING_FAILED
        assert "-11" in crashed.error.message
        assert pipeline.process(good).ok
