"""Operator commands.

    python -m shared.cli create-tenant --name "Acme" --tier enterprise

prints the tenant id, its API key (shown once; only its hash is stored) and its callback signing secret.
It uses the same settings as the app (environment, or `local.settings.json` locally via `--local-settings`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.config import Settings, Tier
from shared.errors import DomainError


def _load_local_settings(path: Path) -> None:
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-tenant", help="create a tenant and print its API key")
    create.add_argument("--name", required=True)
    create.add_argument("--tier", required=True, choices=[t.value for t in Tier])
    create.add_argument("--local-settings", type=Path, help="read settings from this local.settings.json")
    args = parser.parse_args(argv)

    if args.local_settings:
        _load_local_settings(args.local_settings)
    from shared.services.context import AppContext
    from shared.services.tenants import create_tenant

    ctx = AppContext.from_settings(Settings.from_env())
    try:
        created = create_tenant(ctx.store, args.name, args.tier)
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "tenantId": created.tenant.tenant_id,
                "tier": created.tenant.tier,
                "apiKey": created.api_key,
                "callbackSecret": created.tenant.callback_secret,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
