"""Blob Storage: originals, thumbnails and manifests. The only module that imports azure.storage.blob."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.config import ALL_CONTAINERS, Settings


class BlobNotFound(LookupError):
    pass


class BlobTooLarge(ValueError):
    pass


class BlobStorePort(Protocol):
    def read(self, container: str, name: str, max_bytes: int) -> bytes: ...
    def read_range(self, container: str, name: str, start: int, end: int) -> bytes: ...
    def write(self, container: str, name: str, data: bytes, content_type: str) -> None: ...
    def size(self, container: str, name: str) -> int: ...
    def stream(self, container: str, name: str, offset: int = 0) -> Iterator[bytes]: ...


class BlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        if settings.storage_connection:
            return cls(BlobServiceClient.from_connection_string(settings.storage_connection))
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id)
        url = f"https://{settings.storage_account_name}.blob.core.windows.net"
        return cls(BlobServiceClient(account_url=url, credential=credential))

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
