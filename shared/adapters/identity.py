"""The app's Microsoft Entra ID credential: the one place that builds it, for every adapter and the telemetry export.

In Azure the app authenticates as its user-assigned managed identity, whose client id comes from the settings
(`<connection>__clientId`, `COSMOS_CLIENT_ID`). One credential per client id is built once per process and shared:
it caches its tokens, so clients that share it ask Entra ID for a token once, not once each. Credentials are
thread-safe. Locally nothing calls this: the emulators take connection strings and keys.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_credentials: dict[str | None, TokenCredential] = {}
_lock = threading.Lock()


def azure_credential(client_id: str | None) -> TokenCredential:
    """The credential for the managed identity `client_id` (None: the default chain picks the identity)."""
    with _lock:
        credential = _credentials.get(client_id)
        if credential is None:
            from azure.identity import DefaultAzureCredential  # imported only where the app runs in Azure

            credential = _credentials[client_id] = DefaultAzureCredential(managed_identity_client_id=client_id)
        return credential
