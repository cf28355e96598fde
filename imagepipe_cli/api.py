"""The tenant API over HTTP (httpx), with every failure turned into an `ApiFailure` that names its exit code.

Two HTTP clients: one for the API, which sends the tenant key, and one for the short-lived storage URLs the API
hands out (uploads, thumbnails, exported results), which never sees the key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any

import httpx

# Requests the API refuses for a moment (429, with Retry-After) are tried again this often, waiting at most this long.
RATE_LIMIT_RETRIES = 3
RATE_LIMIT_MAX_WAIT_SECONDS = 30.0
BLOCK_BYTES = 1024 * 1024
TERMINAL_STATES = ("succeeded", "completed_with_errors", "failed", "cancelled")
# How long `results --jsonl` waits for a just-ended job's export to be written.
EXPORT_WAIT_SECONDS = 120.0


class ExitCode(IntEnum):
    """The command's exit status (README, section "CLI")."""

    OK = 0
    JOB_NOT_SUCCEEDED = 1  # --watch: the job ended failed, completed_with_errors or cancelled
    USAGE = 2  # bad arguments or configuration (no key, no such file)
    API_ERROR = 3  # the API (or storage) refused the request: 4xx
    UNAVAILABLE = 4  # the API failed (5xx), or could not be reached in time
    INTERRUPTED = 130  # Ctrl-C


class ApiFailure(Exception):
    """A request that did not succeed: the API's error code and message, the HTTP status, and the exit code."""

    def __init__(
        self, exit_code: ExitCode, code: str, message: str, status: int | None = None, details: Any = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.exit_code = exit_code
        self.code = code
        self.message = message
        self.status = status
        self.details = details


def failure_from(response: httpx.Response, source: str = "API") -> ApiFailure:
    """The failure a non-2xx answer stands for: the API's `{"error": {code, message, details}}` when it sent one;
    Azure Storage's `x-ms-error-code` for a storage URL; otherwise the HTTP status."""
    status = response.status_code
    exit_code = ExitCode.API_ERROR if status < 500 else ExitCode.UNAVAILABLE
    code, message, details = f"http_{status}", response.reason_phrase or "request failed", None
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    elif storage_code := response.headers.get("x-ms-error-code"):
        code, message = storage_code, f"{source} refused the request ({status} {response.reason_phrase})"
    return ApiFailure(exit_code, code, message, status, details)


class ApiClient:
    def __init__(self, base_url: str, key: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "imagepipe-cli"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._api = httpx.Client(base_url=f"{self.base_url}/api", headers=headers, timeout=timeout)
        # Storage URLs carry their own (SAS) authorisation; uploads may take a while to send.
        self._storage = httpx.Client(timeout=httpx.Timeout(timeout, write=max(timeout, 300.0)))
        self._timeout = timeout

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the API ---------------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            response = self._send(self._api, method, path, **kwargs)
            if response.status_code != 429 or attempt == RATE_LIMIT_RETRIES:
                break
            time.sleep(_retry_after(response))
        if response.is_success or response.is_redirect:
            return response
        raise failure_from(response)

    def _send(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        where = f"{self.base_url}" if client is self._api else "storage"
        try:
            return client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise ApiFailure(
                ExitCode.UNAVAILABLE, "timeout", f"no answer from {where} within {self._timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise ApiFailure(ExitCode.UNAVAILABLE, "unreachable", f"cannot reach {where}: {exc}") from None

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/jobs", json=body).json())

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/jobs/{job_id}").json())

    def jobs(self, **query: Any) -> dict[str, Any]:
        params = {name: value for name, value in query.items() if value is not None}
        return dict(self.request("GET", "/jobs", params=params).json())

    def images(self, job_id: str, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every image result of the job, page by page."""
        continuation: str | None = None
        while True:
            params: dict[str, Any] = {"page_size": page_size}
            if continuation:
                params["continuation"] = continuation
            page = self.request("GET", f"/jobs/{job_id}/images", params=params).json()
            yield from page["items"]
            continuation = page.get("continuation")
            if not continuation:
                return

    def results_jsonl(self, job_id: str, wait_seconds: float = EXPORT_WAIT_SECONDS) -> Iterator[bytes]:
        """The job's results as JSON lines, from the storage URL the API redirects to. Right after a job ends its
        export is still being written: the API answers 202 with Retry-After, and this asks again."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                response = self.request("GET", f"/jobs/{job_id}/results.jsonl")
            except ApiFailure as failure:
                # A status read can show a small job ended a moment before the job document records it (the API
                # settles it on read); the export waits for the document. Ask again for as long as the status
                # says it has ended.
                if failure.code != "job_not_finished" or time.monotonic() > deadline or not self._ended(job_id):
                    raise
                time.sleep(1.0)
                continue
            if response.is_redirect:
                yield from self.download(response.headers["location"])
                return
            if response.status_code != 202:
                yield response.content
                return
            if time.monotonic() > deadline:
                raise ApiFailure(
                    ExitCode.UNAVAILABLE, "export_pending", f"the results were not exported within {wait_seconds:g} s"
                )
            time.sleep(_retry_after(response))

    def _ended(self, job_id: str) -> bool:
        return self.job(job_id).get("state") in TERMINAL_STATES

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/jobs/{job_id}").json())

    def replay(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/jobs/{job_id}/replay").json())

    def create_upload(self, files: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.request("POST", "/uploads", json={"files": files}).json())

    def create_manifest(self, text: str, name: str | None = None) -> dict[str, Any]:
        params = {"name": name} if name else None
        response = self.request(
            "POST", "/manifests", params=params, content=text.encode(), headers={"Content-Type": "text/plain"}
        )
        return dict(response.json())

    def thumbnail_url(self, job_id: str, index: int, size: int, fmt: str) -> str:
        """Where the API's thumbnail route redirects to (a short-lived read URL)."""
        response = self.request("GET", f"/jobs/{job_id}/images/{index}/thumbnails/{size}.{fmt}")
        if not response.is_redirect:
            raise ApiFailure(ExitCode.API_ERROR, "no_redirect", f"the thumbnail route answered {response.status_code}")
        return str(response.headers["location"])

    # --- storage URLs --------------------------------------------------------------------------------------------

    def put_blob(self, url: str, path: Path, content_type: str) -> None:
        """Azure Blob "Put Blob" of a file to a write URL, streamed in blocks."""
        size = path.stat().st_size
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": content_type, "Content-Length": str(size)}
        response = self._send(self._storage, "PUT", url, content=_blocks(path), headers=headers)
        if not response.is_success:
            raise failure_from(response, "storage")

    def download(self, url: str) -> Iterator[bytes]:
        try:
            with self._storage.stream("GET", url, follow_redirects=True) as response:
                if not response.is_success:
                    response.read()
                    raise failure_from(response, "storage")
                yield from response.iter_bytes()
        except httpx.TimeoutException:
            raise ApiFailure(ExitCode.UNAVAILABLE, "timeout", "storage did not answer in time") from None
        except httpx.TransportError as exc:
            raise ApiFailure(ExitCode.UNAVAILABLE, "unreachable", f"cannot reach storage: {exc}") from None


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while block := stream.read(BLOCK_BYTES):
            yield block


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), RATE_LIMIT_MAX_WAIT_SECONDS)
