"""The per-image time budget.

A decode or a resize in Pillow/OpenCV is one call into C: no thread can interrupt it, and a fresh subprocess per
image costs more than the work itself (~60-110 ms here, see docs/imaging.md). So the budget is cooperative and the
work between two checks is bounded (shared.imaging.isolation adds a hard limit with a reused child process):
- the pixel cap bounds every stage (a 100 MP decode is the longest single step, ~1-2 s here);
- before the one expensive stage (the decode), its cost is estimated from the declared pixel count, and an image
  that cannot finish inside what is left of the budget is refused at once instead of started;
- the budget is checked between stages, so the overrun is at most one stage.
"""

from __future__ import annotations

import time

from shared.imaging.errors import ErrorCode, ImagingFailure

# Decode cost per pixel, ~5x what was measured here (~5 ns/px for a full JPEG decode, ~17 ns/px for PNG/WebP):
# the estimate only has to keep images that cannot possibly fit from being started, even on a slower core.
DECODE_NS_PER_PIXEL = {"jpeg": 30.0, "default": 90.0}


class Deadline:
    def __init__(self, budget_seconds: float) -> None:
        self._budget = budget_seconds
        self._start = time.perf_counter()
        self._marks: dict[str, float] = {}
        self._last = self._start

    @property
    def remaining(self) -> float:
        return self._budget - (time.perf_counter() - self._start)

    def check(self, stage: str) -> None:
        """Records how long the stage since the last check took; fails if the budget is spent."""
        now = time.perf_counter()
        self._marks[stage] = self._marks.get(stage, 0.0) + (now - self._last) * 1000.0
        self._last = now
        if now - self._start > self._budget:
            raise ImagingFailure(
                ErrorCode.TIMEOUT, f"time budget of {self._budget:g} s spent after the '{stage}' stage"
            )

    def require(self, estimated_seconds: float, stage: str) -> None:
        """Fails before a stage that is estimated not to fit in what is left of the budget."""
        if estimated_seconds > self.remaining:
            raise ImagingFailure(
                ErrorCode.TIMEOUT,
                f"the '{stage}' stage would take ~{estimated_seconds:.1f} s; {max(self.remaining, 0):.1f} s "
                f"of the {self._budget:g} s budget are left",
            )

    def timings_ms(self) -> dict[str, float]:
        return {stage: round(ms, 2) for stage, ms in self._marks.items()}
