"""Fetching images (and sending callbacks) from URLs that users gave us, with an SSRF guard.

A URL in a job comes from a tenant, so the service must never be tricked into talking to something only it can
reach: its own loopback, the private network, the Azure instance metadata service (169.254.169.254), the Azure
wireserver (168.63.129.16) and so on. The guard works like this:

* Only `http` and `https` URLs without user info are accepted (`invalid_url` otherwise).
* The connection is made by `_PinnedBackend`, an httpcore network backend that resolves the host itself
  (`socket.getaddrinfo`), refuses the hop if ANY resolved address is refused by `address_refusal_reason`, and then
  connects to one of exactly those vetted addresses. The address checked is the address connected to, so a DNS
  answer that changes between a check and the connect (DNS rebinding) cannot slip through. TLS still verifies the
  certificate against the host name: httpcore takes SNI and the name to verify from the URL, not from the socket.
* After connecting, before any body byte is read, the peer address of the socket actually used
  (`response.extensions["network_stream"].get_extra_info("server_addr")`, httpx 0.28 / httpcore 1.0) is checked
  once more: defence in depth should the pinned backend ever be bypassed.
* Redirects are never followed by httpx (`follow_redirects=False`); `fetch_image` follows them by hand, so every hop
  goes through the same checks, up to `FetchPolicy.max_redirects`.
* Environment proxies and .netrc are ignored (`trust_env=False`): a proxy would make the peer check meaningless.
* Limits: connect and read timeouts per hop, a total deadline for the whole fetch (a server dripping one byte per
  read timeout would otherwise hold a worker for ever), and a byte cap enforced from Content-Length and again while
  streaming. `Accept-Encoding: identity` is requested; a gzip/deflate body sent anyway is decoded with the cap
  applied to the decoded bytes (no decompression bombs); other encodings are refused.

`FetchPolicy.allow_loopback` (the setting FETCH_ALLOW_LOOPBACK_FOR_TESTS) lets tests use a server on 127.0.0.1:
it allows 127.0.0.0/8 and ::1 and nothing else that is otherwise refused.

URLs may carry SAS tokens in their query string: log and report them only through `redact_url`.

Failures raise `FetchError` whose `code` (a `FetchErrorCode`, a str enum) is machine-readable.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    from shared.config import Settings

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A resolver returns the IP addresses (as text) of a host name; the default is the system's getaddrinfo.
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 8192
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Addresses refused although Python's ipaddress module calls them global.
_AZURE_WIRESERVER = ipaddress.IPv4Address("168.63.129.16")
_METADATA_V4 = ipaddress.IPv4Address("169.254.169.254")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
_TEREDO = ipaddress.IPv6Network("2001::/32")
_SITE_LOCAL_V6 = ipaddress.IPv6Network("fec0::/10")  # deprecated, still routed privately by some networks
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


class FetchErrorCode(StrEnum):
    """Why a fetch (or a callback send) failed. The values are part of the API: they end up in image results."""

    INVALID_URL = "invalid_url"
    BLOCKED_ADDRESS = "blocked_address"
    DNS_FAILURE = "dns_failure"
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    TOO_LARGE = "too_large"
    HTTP_ERROR = "http_error"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    CONNECTION_ERROR = "connection_error"
    UNSUPPORTED_ENCODING = "unsupported_encoding"
    HOST_BUSY = "host_busy"  # the image's deadline passed waiting for a turn at its host (polite fetching)


class FetchError(Exception):
    """A fetch failed. `code` is machine-readable; `status` is set for `http_error`; `url` is already redacted."""

    def __init__(
        self,
        code: FetchErrorCode,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.url = url
        self.retry_after = retry_after  # the answer's Retry-After header, as sent (for `http_error`)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error intact across processes (pickle would otherwise call __init__ with the message only).
        state = {"status": self.status, "url": self.url, "retry_after": self.retry_after}
        return (self.__class__, (self.code, self.message), state)

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"{self.code.value}: {self.message}{where}"


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and guard switches for one fetch. Build it with `from_settings` in the app."""

    max_bytes: int
    connect_timeout_seconds: float
    read_timeout_seconds: float
    max_redirects: int
    allow_loopback: bool = False
    # Wall-clock limit for the whole fetch, all hops and the body included. None: connect + 2 x read timeout.
    total_timeout_seconds: float | None = None
    # Who resolves host names; None is the system resolver. Whatever it answers is vetted like any DNS answer,
    # so a custom resolver cannot widen what is allowed (tests use one to show the connect is pinned).
    resolver: Resolver | None = field(default=None, compare=False, repr=False)
    user_agent: str = "imagepipe-fetch/1.0"

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if self.connect_timeout_seconds <= 0 or self.read_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        if self.total_timeout_seconds is not None and self.total_timeout_seconds <= 0:
            raise ValueError("total_timeout_seconds must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            max_bytes=settings.fetch_max_bytes,
            connect_timeout_seconds=settings.fetch_connect_timeout_seconds,
            read_timeout_seconds=settings.fetch_read_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
            allow_loopback=settings.fetch_allow_loopback,
        )

    @property
    def deadline_seconds(self) -> float:
        if self.total_timeout_seconds is not None:
            return self.total_timeout_seconds
        return self.connect_timeout_seconds + 2 * self.read_timeout_seconds


@dataclass(frozen=True)
class FetchResult:
    """The body of a successful fetch. `content_type` is the media type only (no parameters), lower-cased."""

    content: bytes = field(repr=False)
    final_url: str = field(repr=False)
    content_type: str | None
    redirects: int = 0

    def __repr__(self) -> str:  # the URL may hold a SAS token: never print it whole
        return (
            f"FetchResult(bytes={len(self.content)}, final_url={redact_url(self.final_url)!r}, "
            f"content_type={self.content_type!r}, redirects={self.redirects})"
        )


# --- URLs ------------------------------------------------------------------------------------------------------------


def redact_url(url: str | httpx.URL) -> str:
    """The URL fit for logs: scheme, host, port and path; user info, query and fragment are dropped.

    Query strings may hold SAS tokens or signed-URL credentials, so the query is replaced by `?<redacted>`.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    host = parsed.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port is not None else ""
    path = parsed.path
    if len(path) > 200:
        path = path[:200] + "..."
    query = "?<redacted>" if parsed.query else ""
    return f"{parsed.scheme}://{host}{port}{path}{query}"


def _parse_http_url(url: str | httpx.URL) -> httpx.URL:
    """Syntax checks shared by every hop: http(s), a host, no user info."""
    if isinstance(url, str):
        if not url or len(url) > MAX_URL_LENGTH:
            raise FetchError(FetchErrorCode.INVALID_URL, f"URL is empty or longer than {MAX_URL_LENGTH} characters")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError(FetchErrorCode.INVALID_URL, f"malformed URL: {exc}") from None
    else:
        parsed = url
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchError(FetchErrorCode.INVALID_URL, f"scheme {parsed.scheme!r} is not allowed (http, https only)")
    if not parsed.host:
        raise FetchError(FetchErrorCode.INVALID_URL, "URL has no host")
    # Credentials in the URL would be sent as Basic auth to whatever host a redirect names.
    if parsed.userinfo:
        raise FetchError(FetchErrorCode.INVALID_URL, "URLs with user info (user:password@) are not accepted")
    return parsed


def check_public_url(url: str, allow_loopback: bool = False) -> None:
    """Check a URL at submission time (e.g. a job's callback URL); raises `FetchError` or returns None.

    Checks syntax and scheme, and refuses hosts that are refused whatever DNS says: IP literals of refused
    addresses and `localhost` names. Host names are resolved and vetted again when the request is sent.
    """
    parsed = _parse_http_url(url)
    host = parsed.host.rstrip(".").lower()
    literal = _ip_literal(host)
    if literal is not None:
        reason = address_refusal_reason(literal, allow_loopback=allow_loopback)
        if reason is not None:
            raise FetchError(FetchErrorCode.BLOCKED_ADDRESS, f"address refused: {reason}", url=redact_url(parsed))
        return
    # RFC 6761: localhost and *.localhost always mean loopback.
    if (host == "localhost" or host.endswith(".localhost")) and not allow_loopback:
        raise FetchError(FetchErrorCode.BLOCKED_ADDRESS, "address refused: loopback", url=redact_url(parsed))


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


# --- addresses -------------------------------------------------------------------------------------------------------


def address_refusal_reason(address: str | IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why connecting to this IP address is refused, or None when it is allowed.

    Refused: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with the metadata service, fe80::/10),
    unspecified, multicast, reserved, shared (100.64/10), other non-global ranges, the Azure wireserver, and IPv6
    forms embedding a refused IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4). Teredo and site-local IPv6 too.
    With `allow_loopback`, exactly 127.0.0.0/8 and ::1 are allowed (not their IPv4-mapped forms).
    """
    if isinstance(address, str):
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return "not an IP address"
    else:
        ip = address
    if allow_loopback and (ip in _LOOPBACK_V4 if ip.version == 4 else ip == _LOOPBACK_V6):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return _v6_refusal_reason(ip)
    return _v4_refusal_reason(ip)


def is_address_allowed(address: str | IPAddress, *, allow_loopback: bool = False) -> bool:
    return address_refusal_reason(address, allow_loopback=allow_loopback) is None


def _v4_refusal_reason(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip == _METADATA_V4:
        return "cloud metadata service"
    if ip.is_link_local:
        return "link-local"
    if ip == _AZURE_WIRESERVER:
        return "Azure wireserver"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED_ADDRESS_SPACE:
        return "shared address space (100.64.0.0/10)"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def _v6_refusal_reason(ip: ipaddress.IPv6Address) -> str | None:
    # Forms that carry an IPv4 address are judged by that address: it is where the packets end up.
    mapped = ip.ipv4_mapped
    if mapped is not None:
        reason = _v4_refusal_reason(mapped)
        return f"{reason} (IPv4-mapped)" if reason else None
    if ip in _NAT64_WELL_KNOWN:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        reason = _v4_refusal_reason(embedded)
        return f"{reason} (NAT64)" if reason else None
    if ip.sixtofour is not None:
        reason = _v4_refusal_reason(ip.sixtofour)
        if reason:
            return f"{reason} (6to4)"
    if ip in _TEREDO:
        return "Teredo tunnel"
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip in _SITE_LOCAL_V6:
        return "site-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_allowed_addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """Resolve `host` and return its addresses if EVERY one of them is allowed; raise `FetchError` otherwise.

    Refusing when any address is bad (not just skipping it) keeps an attacker from mixing a public address with an
    internal one and hoping for a fallback.
    """
    resolver = policy.resolver or _system_resolve
    try:
        addresses = list(dict.fromkeys(resolver(host, port)))  # de-duplicated, order kept
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(FetchErrorCode.DNS_FAILURE, f"could not resolve {host!r}: {exc}") from None
    except OSError as exc:
        raise FetchError(FetchErrorCode.DNS_FAILURE, f"could not resolve {host!r}: {exc}") from None
    if not addresses:
        raise FetchError(FetchErrorCode.DNS_FAILURE, f"{host!r} has no addresses")
    for address in addresses:
        reason = address_refusal_reason(address, allow_loopback=policy.allow_loopback)
        if reason is not None:
            raise FetchError(FetchErrorCode.BLOCKED_ADDRESS, f"{host!r} resolves to a refused address: {reason}")
    return addresses


# --- the pinned transport --------------------------------------------------------------------------------------------


class _PinnedBackend(httpcore.NetworkBackend):
    """Resolves and vets the host, then connects only to a vetted address (see the module docstring)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_allowed_addresses(host, port, self._policy)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # addresses is never empty
        raise last_error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise FetchError(FetchErrorCode.BLOCKED_ADDRESS, "unix sockets are never used")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool swapped for one using `_PinnedBackend`.

    httpx 0.28 has no public way to pass a network backend; `_pool` is the attribute its `handle_request` uses
    (httpx is pinned in requirements.txt; tests/unit/test_fetch.py shows the backend is in effect).
    """

    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=10,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_PinnedBackend(policy),
        )


def guarded_client(policy: FetchPolicy) -> httpx.Client:
    """An httpx client whose connections go only to vetted addresses. Use it with `guarded_stream`."""
    return httpx.Client(
        transport=_PinnedTransport(policy),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(
            connect=policy.connect_timeout_seconds,
            read=policy.read_timeout_seconds,
            write=policy.read_timeout_seconds,
            pool=policy.connect_timeout_seconds,
        ),
    )


def verify_peer(response: httpx.Response, policy: FetchPolicy) -> None:
    """Refuse the response unless the socket it came over is connected to an allowed address.

    Called before any body byte is read. Fails closed when the peer address cannot be found.
    """
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        raise FetchError(FetchErrorCode.BLOCKED_ADDRESS, "could not determine the connected peer address")
    reason = address_refusal_reason(str(peer[0]), allow_loopback=policy.allow_loopback)
    if reason is not None:
        raise FetchError(FetchErrorCode.BLOCKED_ADDRESS, f"connected peer address refused: {reason}")


@contextlib.contextmanager
def _transport_errors_as_fetch_errors(url: httpx.URL) -> Iterator[None]:
    redacted = redact_url(url)
    try:
        yield
    except FetchError as exc:
        if exc.url is None:
            exc.url = redacted
        raise
    except httpx.ConnectTimeout:
        raise FetchError(FetchErrorCode.CONNECT_TIMEOUT, "connect timed out", url=redacted) from None
    except httpx.ReadTimeout:
        raise FetchError(FetchErrorCode.READ_TIMEOUT, "read timed out", url=redacted) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise FetchError(FetchErrorCode.INVALID_URL, f"malformed URL: {exc}", url=redacted) from None
    except httpx.TransportError as exc:
        raise FetchError(FetchErrorCode.CONNECTION_ERROR, f"{type(exc).__name__}: {exc}", url=redacted) from None


@contextlib.contextmanager
def guarded_stream(
    client: httpx.Client,
    method: str,
    url: str | httpx.URL,
    policy: FetchPolicy,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: httpx.Timeout | None = None,
) -> Iterator[httpx.Response]:
    """Send ONE request (no redirects) through `client` (from `guarded_client`) and yield the unread response.

    The URL is checked, the connect is pinned to vetted addresses, the peer is verified before the caller reads
    anything, and transport errors come out as `FetchError`. Errors raised by the caller pass through as they are.
    """
    parsed = _parse_http_url(url)
    with contextlib.ExitStack() as stack:
        with _transport_errors_as_fetch_errors(parsed):
            response = stack.enter_context(
                client.stream(
                    method,
                    parsed,
                    headers=dict(headers or {}),
                    content=content,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            )
            verify_peer(response, policy)
        yield response


# --- fetching --------------------------------------------------------------------------------------------------------


def fetch_image(
    url: str, policy: FetchPolicy, *, client: httpx.Client | None = None, deadline: float | None = None
) -> FetchResult:
    """GET `url` through the SSRF guard, following up to `policy.max_redirects` redirects, each hop checked.

    Returns the body, the final URL and the media type; raises `FetchError` on any failure.
    `client`, if given, must come from `guarded_client(policy)`: a chunk worker can share one across a chunk's images
    to reuse connections (each connection was made to a vetted address). Without it a client is made and closed here.
    `deadline` (time.monotonic()) ends the fetch earlier than the policy's own total limit would.
    """
    if client is None:
        with guarded_client(policy) as own_client:
            return fetch_image(url, policy, client=own_client, deadline=deadline)
    current = _parse_http_url(url)
    started = time.monotonic()
    deadline = min(started + policy.deadline_seconds, deadline if deadline is not None else float("inf"))
    headers = {
        "User-Agent": policy.user_agent,
        "Accept": "image/*, */*;q=0.1",
        "Accept-Encoding": "identity",
    }
    redirects = 0
    while True:
        timeout = _hop_timeout(policy, deadline, current)
        with guarded_stream(client, "GET", current, policy, headers=headers, timeout=timeout) as response:
            status = response.status_code
            if status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise FetchError(
                        FetchErrorCode.HTTP_ERROR,
                        f"redirect {status} without Location",
                        status=status,
                        url=redact_url(current),
                    )
                if redirects >= policy.max_redirects:
                    raise FetchError(
                        FetchErrorCode.TOO_MANY_REDIRECTS,
                        f"more than {policy.max_redirects} redirects",
                        url=redact_url(current),
                    )
                current = _redirect_target(current, location)
                redirects += 1
                logger.debug("fetch: redirect %d to %s", redirects, redact_url(current))
                continue
            if not 200 <= status < 300:
                raise FetchError(
                    FetchErrorCode.HTTP_ERROR,
                    f"HTTP {status}",
                    status=status,
                    url=redact_url(current),
                    retry_after=response.headers.get("retry-after"),
                )
            with _transport_errors_as_fetch_errors(current):
                content = _read_capped(response, policy, deadline)
            return FetchResult(
                content=content,
                final_url=str(current),
                content_type=_media_type(response.headers.get("content-type")),
                redirects=redirects,
            )


def _hop_timeout(policy: FetchPolicy, deadline: float, url: httpx.URL) -> httpx.Timeout:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(FetchErrorCode.READ_TIMEOUT, "total time limit reached", url=redact_url(url))
    connect = min(policy.connect_timeout_seconds, remaining)
    read = min(policy.read_timeout_seconds, remaining)
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    try:
        target = current.join(location.strip())
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchError(FetchErrorCode.INVALID_URL, f"bad redirect Location: {exc}", url=redact_url(current)) from None
    target = target.copy_with(fragment=None)
    try:
        return _parse_http_url(target)
    except FetchError as exc:
        exc.message = f"redirect refused: {exc.message}"
        exc.args = (exc.message,)
        exc.url = redact_url(current)
        raise


def _read_capped(response: httpx.Response, policy: FetchPolicy, deadline: float) -> bytes:
    """Read the body with the byte cap (on the wire and decoded) and the total deadline enforced as it streams."""
    url = redact_url(response.request.url)
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(
            FetchErrorCode.TOO_LARGE, f"Content-Length {int(declared)} exceeds {policy.max_bytes} bytes", url=url
        )
    decoder = _BoundedDecoder.for_encoding(response.headers.get("content-encoding"), url)
    body = bytearray()
    wire_bytes = 0

    def check_size() -> None:
        if len(body) > policy.max_bytes:
            raise FetchError(FetchErrorCode.TOO_LARGE, f"body exceeds {policy.max_bytes} bytes", url=url)

    # No chunk_size: each network read comes out as it arrives, so the deadline is checked after every read.
    for chunk in response.iter_raw():
        wire_bytes += len(chunk)
        if wire_bytes > policy.max_bytes:
            raise FetchError(FetchErrorCode.TOO_LARGE, f"body exceeds {policy.max_bytes} bytes", url=url)
        # One byte more than the room left is enough to know the cap is exceeded.
        body += decoder.decode(chunk, policy.max_bytes - len(body) + 1) if decoder else chunk
        check_size()
        if time.monotonic() > deadline:
            raise FetchError(FetchErrorCode.READ_TIMEOUT, "total time limit reached while reading", url=url)
    if decoder:
        body += decoder.finish(policy.max_bytes - len(body) + 1)
        check_size()
    return bytes(body)


class _BoundedDecoder:
    """gzip/deflate decoding that never produces more than the caller's limit per call (no decompression bombs)."""

    def __init__(self, encoding: str, url: str) -> None:
        self._encoding = encoding
        self._url = url
        self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)  # accepts gzip and zlib headers

    @classmethod
    def for_encoding(cls, content_encoding: str | None, url: str) -> _BoundedDecoder | None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise FetchError(
                FetchErrorCode.UNSUPPORTED_ENCODING, f"Content-Encoding {encoding!r} not supported", url=url
            )
        return cls(encoding, url)

    def decode(self, chunk: bytes, limit: int) -> bytes:
        try:
            # max_length bounds the output; input beyond it waits in unconsumed_tail, and the caller stops anyway
            # because `limit` is one more than the room left.
            return self._decompressor.decompress(chunk, limit)
        except zlib.error as exc:
            raise self._error(exc) from None

    def finish(self, limit: int) -> bytes:
        try:
            tail = self._decompressor.decompress(self._decompressor.unconsumed_tail, limit)
            return tail + self._decompressor.flush()
        except zlib.error as exc:
            raise self._error(exc) from None

    def _error(self, exc: zlib.error) -> FetchError:
        return FetchError(
            FetchErrorCode.UNSUPPORTED_ENCODING, f"could not decode {self._encoding}: {exc}", url=self._url
        )


def _media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type or None
