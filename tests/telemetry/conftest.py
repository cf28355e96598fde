"""The SDK stays installed for the rest of the test process (the API allows no uninstall): drop what was captured
once these tests are done, so later tests do not grow it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.telemetry.capture import installed


@pytest.fixture(autouse=True, scope="package")
def _release_captured_spans() -> Iterator[None]:
    yield
    installed().spans.clear()
