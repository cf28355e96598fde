"""One credential helper: every adapter that authenticates as the managed identity gets the same credential object
for the same client id, built once (clients are only constructed here: nothing is sent)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.adapters import cosmos, identity
from shared.adapters.blobs import BlobStore
from shared.adapters.identity import azure_credential
from shared.adapters.servicebus import MessageBus
from shared.config import Settings

IDENTITY_ENV = {
    "AzureWebJobsStorage__accountName": "imagepipestore",
    "AzureWebJobsStorage__clientId": "11111111-1111-1111-1111-111111111111",
    "ServiceBusConnection__fullyQualifiedNamespace": "imagepipe.servicebus.windows.net",
    "ServiceBusConnection__clientId": "11111111-1111-1111-1111-111111111111",
    "COSMOS_ENDPOINT": "https://imagepipe.documents.azure.com:443/",
    "COSMOS_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
}


def test_one_credential_per_client_id() -> None:
    first = azure_credential("22222222-2222-2222-2222-222222222222")
    assert azure_credential("22222222-2222-2222-2222-222222222222") is first
    assert azure_credential("33333333-3333-3333-3333-333333333333") is not first


def test_the_first_callers_on_many_threads_share_one_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_credentials", {})
    seen: list[object] = []
    threads = [
        threading.Thread(target=lambda: seen.append(azure_credential("44444444-4444-4444-4444-444444444444")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 8 and len({id(c) for c in seen}) == 1


def test_every_adapter_authenticates_with_the_shared_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env(IDENTITY_ENV)
    shared_credential = azure_credential(settings.cosmos_client_id)

    blobs = BlobStore.from_settings(settings)
    assert blobs._service.credential is shared_credential

    bus = MessageBus.from_settings(settings)
    assert bus._client._credential is shared_credential
    assert bus._admin is not None and bus._admin._credential is shared_credential

    built: dict[str, Any] = {}
    # The real CosmosClient reads the account when it is built (a network call): record what it would be given.
    monkeypatch.setattr(cosmos, "CosmosClient", lambda endpoint, credential, **_: built.update(credential=credential))
    cosmos.make_cosmos_client(settings)
    assert built["credential"] is shared_credential
