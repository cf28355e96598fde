"""Link addresses as the SDK writes them, reduced to entity names.

The SDK addresses links as `amqps://host:port/<entity>`, `<queue>/$DeadLetterQueue`, `$cbs` and
`<entity>/$management`, in any case.
"""

from __future__ import annotations

from dataclasses import dataclass

CBS = "$cbs"
MANAGEMENT_SUFFIX = "/$management"


@dataclass(frozen=True)
class Address:
    entity: str  # lower-case entity path, e.g. "jobs" or "jobs/$deadletterqueue"; "$cbs" for CBS
    management: bool = False

    @property
    def is_cbs(self) -> bool:
        return self.entity == CBS


def parse_address(address: str | None) -> Address | None:
    if not address:
        return None
    path = address
    if "://" in path:
        path = path.split("://", 1)[1]
        path = path.split("/", 1)[1] if "/" in path else ""
    path = path.strip("/").lower()
    if not path:
        return None
    if path.endswith(MANAGEMENT_SUFFIX):
        return Address(path[: -len(MANAGEMENT_SUFFIX)], management=True)
    return Address(path)
