"""The operator view's pure parts: its key check and the throughput fold over finished chunks."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from functions.http import status_of
from shared.config import Settings
from shared.errors import DomainError
from shared.services.operator import BUCKET_SECONDS, WINDOW_SECONDS, authenticate_operator, throughput

BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ServiceBusConnection": "Endpoint=sb://localhost;SharedAccessKeyName=x;SharedAccessKey=y",
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
}


def _settings(**extra: str) -> Settings:
    return Settings.from_env({**BASE, **extra})


def test_the_operator_key_is_checked_against_its_digest() -> None:
    settings = _settings(ADMIN_API_KEY_SHA256=hashlib.sha256(b"s3cret").hexdigest().upper())
    authenticate_operator(settings, "Bearer s3cret", None)
    authenticate_operator(settings, None, "s3cret")
    for authorization, api_key, code in (
        (None, None, "missing_operator_key"),
        ("Bearer wrong", None, "invalid_operator_key"),
        ("Basic s3cret", None, "missing_operator_key"),
        (None, "S3CRET", "invalid_operator_key"),
    ):
        with pytest.raises(DomainError) as caught:
            authenticate_operator(settings, authorization, api_key)
        assert status_of(caught.value) == 401 and caught.value.code == code


def test_without_a_digest_the_operator_view_is_disabled() -> None:
    with pytest.raises(DomainError) as caught:
        authenticate_operator(_settings(), f"Bearer {'x' * 20}", None)
    assert status_of(caught.value) == 404 and caught.value.code == "operator_view_disabled"


def test_a_digest_that_is_not_sha256_hex_fails_the_start() -> None:
    with pytest.raises(ValueError, match="ADMIN_API_KEY_SHA256"):
        _settings(ADMIN_API_KEY_SHA256="s3cret")


def test_throughput_buckets_finished_chunks_and_rates_failures() -> None:
    now = 10_000.0
    chunks: list[dict[str, Any]] = [
        {"finished_epoch": now - 5, "counts": {"succeeded": 90, "failed": 10, "skipped": 0}, "error_codes": {"x": 10}},
        {"finished_epoch": now - 20, "counts": {"succeeded": 60, "failed": 0, "skipped": 0}, "error_codes": {}},
        {"finished_epoch": now - WINDOW_SECONDS + 1, "counts": {"succeeded": 30, "failed": 30, "skipped": 5},
         "error_codes": {"y": 20, "x": 10}},
        {"finished_epoch": now - WINDOW_SECONDS - 1, "counts": {"succeeded": 999, "failed": 0, "skipped": 0}},
        {"finished_epoch": None, "counts": {"succeeded": 999, "failed": 0, "skipped": 0}},
    ]
    result = throughput(chunks, now)
    assert (result.images, result.succeeded, result.failed) == (225, 180, 40)
    assert result.failure_rate == round(40 / 220, 4)
    assert result.images_per_second == round(225 / WINDOW_SECONDS, 3)
    assert result.errors == {"x": 20, "y": 20}
    assert len(result.series) == WINDOW_SECONDS // BUCKET_SECONDS
    assert result.series[-1].images_per_second == round(160 / BUCKET_SECONDS, 3) and result.series[-1].failed == 10
    assert result.series[0].images_per_second == round(65 / BUCKET_SECONDS, 3)
    assert sum(p.images_per_second for p in result.series[1:-1]) == 0


def test_no_finished_chunks_means_no_failure_rate() -> None:
    result = throughput([], 1_000.0)
    assert result.images == 0 and result.failure_rate is None and result.images_per_second == 0
