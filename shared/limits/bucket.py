"""A token bucket whose state is one shared document, so it holds across worker processes and instances.

The document stores the tokens left and when that was true; whoever takes tokens refills by the time elapsed
(capped at the burst), takes what it is given and writes back under the etag it read. A request that is refused
writes nothing (the refusal is computed from the read alone), so a tenant hammering an empty bucket costs one
read per request. Clocks of different instances are trusted to within their skew: elapsed time is never negative.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.limits.versioned import VersionedStore, update


@dataclass(frozen=True)
class BucketLimits:
    rate: float  # tokens added per second; 0 means no limit
    burst: float  # the bucket's size

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


@dataclass(frozen=True)
class Take:
    """What a take got: `granted` tokens (0 when refused), the tokens left, and when to come back if refused."""

    granted: int
    remaining: float
    retry_after: float
    limits: BucketLimits

    @property
    def allowed(self) -> bool:
        return self.granted > 0

    @property
    def full_in(self) -> float:
        """Seconds until the bucket is full again (the RateLimit-Reset header)."""
        if self.limits.unlimited:
            return 0.0
        return max(0.0, (self.limits.burst - self.remaining) / self.limits.rate)


def refill(tokens: float, updated: float, now: float, limits: BucketLimits) -> float:
    return min(limits.burst, tokens + max(0.0, now - updated) * limits.rate)


class SharedBuckets:
    """Token buckets in a VersionedStore. `ttl_seconds` lets an idle bucket's document expire (a full bucket is
    what a missing document means anyway)."""

    def __init__(self, store: VersionedStore, ttl_seconds: int = 3600, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._clock = clock

    def take(self, key: str, limits: BucketLimits, want: int = 1) -> Take:
        """Takes up to `want` whole tokens (at least one, or none at all)."""
        if limits.unlimited:
            return Take(want, limits.burst, 0.0, limits)

        def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Take]:
            now = self._clock()
            tokens = limits.burst if doc is None else refill(float(doc["tokens"]), float(doc["updated"]), now, limits)
            if tokens < 1.0:
                return None, Take(0, tokens, (1.0 - tokens) / limits.rate, limits)
            granted = min(want, math.floor(tokens))
            left = tokens - granted
            return {"type": "bucket", "tokens": left, "updated": now, "ttl": self._ttl}, Take(
                granted, left, 0.0, limits
            )

        return update(self._store, key, change)

    def peek(self, key: str, limits: BucketLimits) -> float:
        """The tokens in the bucket now (for GET /api/usage), without taking any."""
        if limits.unlimited:
            return limits.burst
        found = self._store.read(key)
        if found is None:
            return limits.burst
        return refill(float(found[0]["tokens"]), float(found[0]["updated"]), self._clock(), limits)
