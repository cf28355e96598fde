"""The worker warm-up is best effort: whatever goes wrong, it logs and returns, it never fails or stalls a start."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from shared.config import get_settings
from shared.services.context import _build_context, warm_up


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("COSMOS_ENDPOINT", raising=False)
    get_settings.cache_clear()
    _build_context.cache_clear()
    yield
    get_settings.cache_clear()
    _build_context.cache_clear()


def test_warm_up_logs_and_returns_when_the_context_cannot_be_built(
    no_settings: None, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="shared.services.context"):
        warm_up(timeout_seconds=5)
    assert time.monotonic() - started < 5
    assert "warm-up: context: ConfigError" in caplog.text
    assert "warm-up done" not in caplog.text
