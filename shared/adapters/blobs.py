"""Blob Storage: originals, thumbnails and manifests. The only module that imports azure.storage.blob."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)

from shared.adapters.identity import azure_credential
from shared.adapters.proxies import proxies_configured
from shared.config import ALL_CONTAINERS, Settings

# A SAS starts a little in the past: the storage service refuses a token whose start is ahead of its own clock.
_CLOCK_SKEW = timedelta(minutes=5)
# A user delegation key lives at most 7 days; ours lives a day and is renewed when it would end before a new URL.
_DELEGATION_KEY_LIFETIME = timedelta(days=1)


class BlobNotFound(LookupError):
    pass


class BlobTooLarge(ValueError):
    pass


class BlobStorePort(Protocol):
    """What the use cases need of Blob Storage: the contract BlobStore keeps and InMemoryBlobStore
    (shared/adapters/memory_blobs.py) stands in for in fast tests. Beside its adapter, as the job store's and the
    bus's ports are: it raises this module's BlobNotFound and BlobTooLarge. A missing blob is BlobNotFound for
    every read; `write` overwrites; blocks staged are invisible until `commit_blocks`."""

    def read(self, container: str, name: str, max_bytes: int) -> bytes: ...
    def read_range(self, container: str, name: str, start: int, end: int) -> bytes: ...
    def write(self, container: str, name: str, data: bytes, content_type: str) -> None: ...
    def size(self, container: str, name: str) -> int: ...
    def stream(self, container: str, name: str, offset: int = 0) -> Iterator[bytes]: ...
    def exists(self, container: str, name: str) -> bool: ...
    def list_sizes(self, container: str, prefix: str) -> Iterator[tuple[str, int]]: ...
    def stage_block(self, container: str, name: str, block: int, data: bytes) -> None: ...
    def commit_blocks(self, container: str, name: str, blocks: int, content_type: str) -> None: ...
    def upload_url(self, container: str, name: str, expiry: datetime) -> str: ...
    def read_url(self, container: str, name: str, expiry: datetime) -> str: ...


class BlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry = datetime.min.replace(tzinfo=UTC)
        self._delegation_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        # Read the environment's proxy settings once, not on every call (see proxies_configured).
        use_env = proxies_configured()
        if settings.storage_connection:
            return cls(BlobServiceClient.from_connection_string(settings.storage_connection, use_env_settings=use_env))
        url = f"https://{settings.storage_account_name}.blob.core.windows.net"
        credential = azure_credential(settings.storage_client_id)
        return cls(BlobServiceClient(account_url=url, credential=credential, use_env_settings=use_env))

    def provision_local(self) -> None:
        """Creates the containers on Azurite. In Azure the Bicep creates them."""
        for name in ALL_CONTAINERS:
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(name)

    def read(self, container: str, name: str, max_bytes: int) -> bytes:
        blob = self._service.get_blob_client(container, name)
        try:
            downloader = blob.download_blob(max_concurrency=1)
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        if downloader.size > max_bytes:
            raise BlobTooLarge(f"{downloader.size} bytes is over the {max_bytes}-byte limit")
        return downloader.readall()

    def read_range(self, container: str, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a blob."""
        if end <= start:
            return b""
        blob = self._service.get_blob_client(container, name)
        try:
            return blob.download_blob(offset=start, length=end - start, max_concurrency=1).readall()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None

    def size(self, container: str, name: str) -> int:
        try:
            return int(self._service.get_blob_client(container, name).get_blob_properties().size)
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None

    def stream(self, container: str, name: str, offset: int = 0) -> Iterator[bytes]:
        blob = self._service.get_blob_client(container, name)
        try:
            downloader = blob.download_blob(offset=offset or None, max_concurrency=1)
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        yield from downloader.chunks()

    def write(self, container: str, name: str, data: bytes, content_type: str) -> None:
        # Overwrite: names are deterministic (content hash, job + index), so a rewrite stores identical bytes.
        self._service.get_blob_client(container, name).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )

    # --- signed URLs: tenants hold no storage keys, so they read and write single blobs through these ---------------
    def upload_url(self, container: str, name: str, expiry: datetime) -> str:
        """A URL that can create or overwrite exactly this blob (no read, no list) until `expiry`."""
        return self._signed_url(container, name, BlobSasPermissions(create=True, write=True), expiry)

    def read_url(self, container: str, name: str, expiry: datetime) -> str:
        """A URL that can read exactly this blob until `expiry`."""
        return self._signed_url(container, name, BlobSasPermissions(read=True), expiry)

    def _signed_url(self, container: str, name: str, permission: BlobSasPermissions, expiry: datetime) -> str:
        start = datetime.now(UTC) - _CLOCK_SKEW
        credential = self._service.credential
        account_key = getattr(credential, "account_key", None)
        # A connection string (Azurite) signs with the account key; a managed identity signs with a user delegation
        # key, which carries only the identity's own rights and is refused once the role assignment is gone.
        delegation_key = None if account_key else self._user_delegation_key(expiry)
        token = generate_blob_sas(
            account_name=self._service.account_name or "",
            container_name=container,
            blob_name=name,
            account_key=account_key,
            user_delegation_key=delegation_key,
            permission=permission,
            expiry=expiry,
            start=start,
            protocol=None if self._service.scheme == "http" else "https",
        )
        return f"{self._service.get_blob_client(container, name).url}?{token}"

    def _user_delegation_key(self, needed_until: datetime) -> UserDelegationKey:
        with self._delegation_lock:
            if self._delegation_key is None or self._delegation_key_expiry < needed_until:
                now = datetime.now(UTC)
                expiry = max(now + _DELEGATION_KEY_LIFETIME, needed_until)
                self._delegation_key = self._service.get_user_delegation_key(now - _CLOCK_SKEW, expiry)
                self._delegation_key_expiry = expiry
            return self._delegation_key

    # --- listing and block-wise writing ----------------------------------------------------------------------------
    def list_sizes(self, container: str, prefix: str) -> Iterator[tuple[str, int]]:
        """(name, size) of every blob whose name starts with `prefix`, a listing page (up to 5,000) per request."""
        for blob in self._service.get_container_client(container).list_blobs(name_starts_with=prefix):
            yield blob.name, int(blob.size or 0)

    def exists(self, container: str, name: str) -> bool:
        return bool(self._service.get_blob_client(container, name).exists())

    def stage_block(self, container: str, name: str, block: int, data: bytes) -> None:
        """Stages block number `block` of a blob being built; it is invisible until `commit_blocks` (storage keeps
        uncommitted blocks for a week, so a blob can be built by several invocations)."""
        self._service.get_blob_client(container, name).stage_block(_block_id(block), data)

    def commit_blocks(self, container: str, name: str, blocks: int, content_type: str) -> None:
        """Makes blocks 0..blocks-1 the blob's content, in order."""
        self._service.get_blob_client(container, name).commit_block_list(
            [BlobBlock(block_id=_block_id(n)) for n in range(blocks)],
            content_settings=ContentSettings(content_type=content_type),
        )


def _block_id(block: int) -> str:
    return f"{block:08d}"  # one length for every id of a blob, as the service requires
