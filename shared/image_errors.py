"""Why one image of a job has no result: the one public list of per-image error codes.

A bad image is a result with an error, never a failed chunk. Its code comes from one of three places: the image's
reference or its blob (checked by the chunk worker), the fetch of a URL (`shared/fetch.py`'s `FetchErrorCode`,
prefixed `fetch_`), or the imaging pipeline (`shared/imaging/errors.py`'s `ErrorCode`, as is). The values are part
of the API (they are listed in the OpenAPI document): keep them stable.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only their values are read: the models import this module and stay free of the fetch stack
    from shared.fetch import FetchErrorCode
    from shared.imaging.errors import ErrorCode


class ImageErrorCode(StrEnum):
    """Why an image of a job has no result (the `error.code` of an image result)."""

    INVALID_REFERENCE = "invalid_reference"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    CORRUPT = "corrupt"
    TIMEOUT = "timeout"
    PROCESSING_FAILED = "processing_failed"
    FETCH_INVALID_URL = "fetch_invalid_url"
    FETCH_BLOCKED_ADDRESS = "fetch_blocked_address"
    FETCH_DNS_FAILURE = "fetch_dns_failure"
    FETCH_CONNECT_TIMEOUT = "fetch_connect_timeout"
    FETCH_READ_TIMEOUT = "fetch_read_timeout"
    FETCH_TOO_LARGE = "fetch_too_large"
    FETCH_HTTP_ERROR = "fetch_http_error"
    FETCH_TOO_MANY_REDIRECTS = "fetch_too_many_redirects"
    FETCH_CONNECTION_ERROR = "fetch_connection_error"
    FETCH_UNSUPPORTED_ENCODING = "fetch_unsupported_encoding"
    FETCH_HOST_BUSY = "fetch_host_busy"


MEANINGS: dict[ImageErrorCode, str] = {
    ImageErrorCode.INVALID_REFERENCE: "the reference is not a valid URL or blob name",
    ImageErrorCode.NOT_FOUND: "no such blob in your originals folder",
    ImageErrorCode.TOO_LARGE: "the image has more bytes than the byte cap (IMAGE_MAX_BYTES)",
    ImageErrorCode.EMPTY: "the image has zero bytes",
    ImageErrorCode.UNSUPPORTED_FORMAT: "the bytes are not one of the accepted image formats",
    ImageErrorCode.TOO_MANY_PIXELS: "the image declares more pixels than the pixel cap",
    ImageErrorCode.CORRUPT: "the image's header or pixel data cannot be read (truncated, malformed)",
    ImageErrorCode.TIMEOUT: "the per-image time budget ran out",
    ImageErrorCode.PROCESSING_FAILED: "the image could not be processed; the message names why",
    ImageErrorCode.FETCH_INVALID_URL: "the URL is malformed, or not an http(s) URL without user info",
    ImageErrorCode.FETCH_BLOCKED_ADDRESS: "the URL's host resolves to an address that may not be fetched (private, "
    "loopback, link-local, ...)",
    ImageErrorCode.FETCH_DNS_FAILURE: "the URL's host name does not resolve",
    ImageErrorCode.FETCH_CONNECT_TIMEOUT: "the image's host did not accept a connection in time",
    ImageErrorCode.FETCH_READ_TIMEOUT: "the image's host did not send the image within the read or total time limit",
    ImageErrorCode.FETCH_TOO_LARGE: "the image's host sent more bytes than the byte cap",
    ImageErrorCode.FETCH_HTTP_ERROR: "the image's host answered with an HTTP error status (in the message)",
    ImageErrorCode.FETCH_TOO_MANY_REDIRECTS: "the URL redirected too many times",
    ImageErrorCode.FETCH_CONNECTION_ERROR: "the connection to the image's host failed",
    ImageErrorCode.FETCH_UNSUPPORTED_ENCODING: "the image's host sent a content encoding that is not supported",
    ImageErrorCode.FETCH_HOST_BUSY: "the image's deadline passed waiting for a turn at its host (polite fetching)",
}


# The enum's schema in the OpenAPI document takes its description from the docstring: list the meanings there.
ImageErrorCode.__doc__ = f"{ImageErrorCode.__doc__}\n\n" + "\n".join(
    f"- `{code.value}`: {meaning}" for code, meaning in MEANINGS.items()
)


def fetch_error_code(code: FetchErrorCode) -> ImageErrorCode:
    """The image result's code of a failed fetch."""
    return ImageErrorCode(f"fetch_{code.value}")


def imaging_error_code(code: ErrorCode) -> ImageErrorCode:
    """The image result's code of an image the pipeline could not process (the same value)."""
    return ImageErrorCode(code.value)
