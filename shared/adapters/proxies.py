"""Whether the Azure SDK clients read the environment's proxy settings on every call: decided once per process.

With `trust_env` on (azure-core's default, `use_env_settings=True`), requests re-reads every proxy variable and looks
for a ~/.netrc on every call: ~0.15 ms of CPU a Cosmos call measured here (bench/op_costs.py), more in a Functions
worker's large environment, and tens of calls a job. The SDKs authenticate with their own policies (netrc is never
wanted), so the environment is only worth reading per call when it names a proxy.
"""

from __future__ import annotations

import urllib.request
from functools import cache


@cache
def proxies_configured() -> bool:
    return bool(urllib.request.getproxies())
