"""Cosmos DB client construction: the only place that decides how the app talks to Cosmos.

In Azure the client authenticates with the managed identity (local auth is disabled on the account).
Locally it uses the emulator's well-known key, and — for a loopback endpoint only — skips verification of the
emulator's self-signed certificate, with one pre-built SSL context shared by the connection pool: a fresh context per
connection capped the emulator at ~45 operations/s, ~345 with the shared one (shared/adapters/emulator_transport.py).
devstack starts the emulator with keep-alive on, so pooled connections are reused rather than handshaken for every
call.
"""

from __future__ import annotations

from typing import Protocol

from azure.core.pipeline.transport import RequestsTransport
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey

from shared.adapters.emulator_transport import emulator_transport
from shared.adapters.identity import azure_credential
from shared.adapters.proxies import proxies_configured
from shared.config import COSMOS_CONTAINERS, Settings
from shared.thread_resources import PerThread


def make_cosmos_client(settings: Settings) -> CosmosClient:
    if settings.cosmos_emulator_insecure_tls:
        # Settings refuses this flag for any non-loopback endpoint.
        return CosmosClient(
            settings.cosmos_endpoint,
            credential=settings.cosmos_key or "",
            transport=emulator_transport(),
            connection_verify=False,
        )
    # The SDK's own default transport re-reads the environment on every call (see proxies_configured).
    transport = RequestsTransport(use_env_settings=proxies_configured())
    if settings.cosmos_key:
        return CosmosClient(settings.cosmos_endpoint, credential=settings.cosmos_key, transport=transport)
    return CosmosClient(
        settings.cosmos_endpoint, credential=azure_credential(settings.cosmos_client_id), transport=transport
    )


def get_database(client: CosmosClient, settings: Settings) -> DatabaseProxy:
    return client.get_database_client(settings.cosmos_database)


class ContainerSource(Protocol):
    def container(self, name: str) -> ContainerProxy: ...


class _ThreadClient:
    """One thread's client, its database and the container proxies taken from it."""

    def __init__(self, settings: Settings) -> None:
        self.client = make_cosmos_client(settings)
        self.database = get_database(self.client, settings)
        self.containers: dict[str, ContainerProxy] = {}

    def close(self) -> None:
        self.client.close()


class ThreadLocalDatabase:
    """The app's Cosmos database through one client per thread.

    The SDK's paged queries take each page's continuation token from response headers that the whole client shares
    (`CosmosClientConnection.last_response_headers`): on a client that several threads use at once, a page can carry
    another request's token (seen under load as a job's only image result returned twice). A client per thread
    keeps each thread's headers its own. Threads here are long-lived (invocation threads, their write-behind
    threads, the status timer's pool), so each builds its client once; `close()` closes every thread's client (so
    does the worker's exit, see shared/thread_resources.py)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.clients: PerThread[_ThreadClient] = PerThread(
            "Cosmos client", lambda: _ThreadClient(settings), _ThreadClient.close
        )

    def container(self, name: str) -> ContainerProxy:
        thread_client = self.clients.get()
        container = thread_client.containers.get(name)
        if container is None:
            container = thread_client.containers[name] = thread_client.database.get_container_client(name)
        return container

    def close(self) -> None:
        self.clients.close()


class SharedDatabase:
    """One client for every thread: for single-threaded tools and tests only (see ThreadLocalDatabase)."""

    def __init__(self, database: DatabaseProxy) -> None:
        self._database = database

    def container(self, name: str) -> ContainerProxy:
        return self._database.get_container_client(name)


def provision_local(client: CosmosClient, settings: Settings) -> DatabaseProxy:
    """Creates the database and containers on the local emulator. In Azure the Bicep creates them
    (data-plane RBAC cannot), so the app never calls this outside devstack and tests."""
    database = client.create_database_if_not_exists(settings.cosmos_database)
    for name, paths in COSMOS_CONTAINERS.items():
        key = PartitionKey(path=list(paths), kind="MultiHash") if len(paths) > 1 else PartitionKey(path=paths[0])
        database.create_container_if_not_exists(id=name, partition_key=key)
    return database
