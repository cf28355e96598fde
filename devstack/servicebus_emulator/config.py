"""The emulator's configuration file, shaped like Microsoft's Service Bus emulator `Config.json`.

Only queues are supported. Durations are ISO 8601 (`PT1M`, `P14D`), as in the official file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)

# Service Bus' own defaults for a queue created without properties.
_DEFAULT_LOCK = "PT1M"
_DEFAULT_TTL = "P14D"
_DEFAULT_DUPLICATE_WINDOW = "PT10M"
_DEFAULT_MAX_DELIVERY_COUNT = 10


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the problem."""


def parse_duration_ms(text: str) -> int:
    """Milliseconds in an ISO 8601 duration such as `PT30S`, `PT1M` or `P14D` (no years or months)."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ConfigError(f"not an ISO 8601 duration: {text!r}")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    seconds = (
        parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
    return int(seconds * 1000)


@dataclass(frozen=True)
class QueueConfig:
    name: str
    requires_session: bool = False
    lock_duration_ms: int = 60_000
    max_delivery_count: int = _DEFAULT_MAX_DELIVERY_COUNT
    default_ttl_ms: int = 14 * 86_400_000
    dead_letter_on_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_window_ms: int = 600_000


def _queue_from_json(entry: dict[str, Any]) -> QueueConfig:
    name = entry.get("Name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("$"):
        raise ConfigError(f"queue without a valid Name: {entry!r}")
    props = entry.get("Properties") or {}
    if not isinstance(props, dict):
        raise ConfigError(f"queue {name}: Properties must be an object")
    max_delivery = int(props.get("MaxDeliveryCount", _DEFAULT_MAX_DELIVERY_COUNT))
    if max_delivery < 1:
        raise ConfigError(f"queue {name}: MaxDeliveryCount must be at least 1")
    return QueueConfig(
        name=name.lower(),
        requires_session=bool(props.get("RequiresSession", False)),
        lock_duration_ms=parse_duration_ms(str(props.get("LockDuration", _DEFAULT_LOCK))),
        max_delivery_count=max_delivery,
        default_ttl_ms=parse_duration_ms(str(props.get("DefaultMessageTimeToLive", _DEFAULT_TTL))),
        dead_letter_on_expiration=bool(props.get("DeadLetteringOnMessageExpiration", False)),
        requires_duplicate_detection=bool(props.get("RequiresDuplicateDetection", False)),
        duplicate_window_ms=parse_duration_ms(
            str(props.get("DuplicateDetectionHistoryTimeWindow", _DEFAULT_DUPLICATE_WINDOW))
        ),
    )


def load_queues(path: str | Path) -> list[QueueConfig]:
    """Every queue of every namespace in the file (the namespace name itself does not matter locally)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    namespaces = (document.get("UserConfig") or {}).get("Namespaces") if isinstance(document, dict) else None
    if not isinstance(namespaces, list) or not namespaces:
        raise ConfigError(f"{path}: expected UserConfig.Namespaces to be a non-empty list")
    queues: list[QueueConfig] = []
    for namespace in namespaces:
        for entry in namespace.get("Queues") or []:
            queues.append(_queue_from_json(entry))
    names = [queue.name for queue in queues]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{path}: queues declared twice: {', '.join(duplicates)}")
    return queues
