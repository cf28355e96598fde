"""Settings are parsed once, when they are validated: the derived views are read on every request and image."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared import config
from shared.config import ConfigError, Settings, Tier
from shared.imaging import ImagingOptions
from shared.imaging.options import THUMBNAIL_SIZE_MAX, THUMBNAIL_SIZE_MIN
from shared.models import JobOptions

ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ServiceBusConnection": "Endpoint=sb://unused;",
    "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
}


def test_the_tier_settings_are_parsed_at_validation_and_never_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse = config._parse_pairs

    def counting(text: str, key_type: Any, value_type: Any) -> dict[Any, Any]:
        calls.append(text)
        return parse(text, key_type, value_type)

    monkeypatch.setattr(config, "_parse_pairs", counting)
    settings = Settings.from_env(ENV)
    parsed = len(calls)
    assert parsed == 6  # concurrency, lanes, API rate and burst, active jobs and images per day
    for _ in range(3):
        for tier in Tier:
            assert settings.job_concurrency_by_tier[tier] >= 1 and settings.lane_by_tier[tier]
            assert settings.api_rate_of(tier) and settings.quotas_of(tier)
        assert settings.thumbnail_size_list == (150, 300, 600)
    assert len(calls) == parsed


def test_the_derived_views_cannot_be_changed_by_a_caller() -> None:
    settings = Settings.from_env(ENV)
    with pytest.raises(TypeError):
        settings.job_concurrency_by_tier[Tier.FREE] = 99  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.lane_by_tier[Tier.FREE] = settings.lane_by_tier[Tier.NEW]  # type: ignore[index]
    assert settings.job_concurrency_by_tier[Tier.FREE] == 2


def test_every_layer_takes_thumbnail_sizes_in_the_one_range() -> None:
    inside, outside = (THUMBNAIL_SIZE_MIN, THUMBNAIL_SIZE_MAX), (THUMBNAIL_SIZE_MIN - 1, THUMBNAIL_SIZE_MAX + 1)
    assert Settings.from_env({**ENV, "THUMBNAIL_SIZES": ",".join(map(str, inside))}).thumbnail_size_list == inside
    assert JobOptions(thumbnail_sizes=list(inside)).thumbnail_sizes == list(inside)
    assert ImagingOptions(thumbnail_sizes=inside).thumbnail_sizes == inside[::-1]
    for size in outside:
        with pytest.raises(ConfigError, match=f"between {THUMBNAIL_SIZE_MIN} and {THUMBNAIL_SIZE_MAX}"):
            Settings.from_env({**ENV, "THUMBNAIL_SIZES": str(size)})
        with pytest.raises(ValidationError, match=f"between {THUMBNAIL_SIZE_MIN} and {THUMBNAIL_SIZE_MAX} pixels"):
            JobOptions(thumbnail_sizes=[size])
        with pytest.raises(ValidationError, match=f"between {THUMBNAIL_SIZE_MIN} and {THUMBNAIL_SIZE_MAX} px"):
            ImagingOptions(thumbnail_sizes=(size,))
