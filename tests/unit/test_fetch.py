"""shared.fetch: the SSRF guard, limits and redirects, against a real HTTP server on 127.0.0.1.

No traffic ever leaves 127.0.0.1: refused addresses are refused before any connect, which `ConnectionLog` (an audit
hook on socket.connect) proves.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlencode

import httpx
import pytest

from shared.config import Settings
from shared.fetch import (
    FetchError,
    FetchErrorCode,
    FetchPolicy,
    address_refusal_reason,
    check_public_url,
    fetch_image,
    guarded_client,
    is_address_allowed,
    redact_url,
    resolve_allowed_addresses,
    verify_peer,
)
from tests.unit.local_http import IMAGE_BYTES, ConnectionLog, LocalServer

LOOPBACK_OK = FetchPolicy(
    max_bytes=100_000,
    connect_timeout_seconds=1.0,
    read_timeout_seconds=1.0,
    max_redirects=3,
    allow_loopback=True,
)
STRICT = replace(LOOPBACK_OK, allow_loopback=False)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def connections(server: LocalServer) -> Iterator[ConnectionLog]:
    """Records connects during the test and checks that none went anywhere but 127.0.0.1."""
    server.state.received.clear()
    with ConnectionLog().recording() as log:
        yield log
    assert log.hosts_connected() <= {"127.0.0.1"}, log.connects


def _fetch_error(url: str, policy: FetchPolicy) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_image(url, policy)
    return info.value


# --- success ---------------------------------------------------------------------------------------------------------


def test_fetch_returns_bytes_final_url_and_media_type(server: LocalServer, connections: ConnectionLog) -> None:
    result = fetch_image(server.url("/image"), LOOPBACK_OK)
    assert result.content == IMAGE_BYTES
    assert result.final_url == server.url("/image")
    assert result.content_type == "image/png"
    assert result.redirects == 0
    assert connections.hosts_connected() == {"127.0.0.1"}
    assert server.state.received[0].headers["accept-encoding"] == "identity"


def test_redirects_within_the_limit_are_followed(server: LocalServer, connections: ConnectionLog) -> None:
    result = fetch_image(server.url("/hop/3"), LOOPBACK_OK)
    assert result.content == IMAGE_BYTES
    assert result.redirects == 3
    assert result.final_url == server.url("/hop/0")
    assert [r.path for r in server.state.received] == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]


def test_gzip_body_sent_anyway_is_decoded(server: LocalServer, connections: ConnectionLog) -> None:
    assert fetch_image(server.url("/gzip"), LOOPBACK_OK).content == IMAGE_BYTES


def test_from_settings_copies_the_fetch_settings() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "ServiceBusConnection": "Endpoint=sb://localhost/",
            "COSMOS_ENDPOINT": "https://127.0.0.1:8081",
            "FETCH_MAX_BYTES": "1234",
            "FETCH_CONNECT_TIMEOUT_SECONDS": "1.5",
            "FETCH_READ_TIMEOUT_SECONDS": "2.5",
            "FETCH_MAX_REDIRECTS": "2",
            "FETCH_ALLOW_LOOPBACK_FOR_TESTS": "true",
        }
    )
    policy = FetchPolicy.from_settings(settings)
    assert (policy.max_bytes, policy.connect_timeout_seconds, policy.read_timeout_seconds) == (1234, 1.5, 2.5)
    assert (policy.max_redirects, policy.allow_loopback) == (2, True)
    assert policy.deadline_seconds == 1.5 + 2 * 2.5


# --- limits ----------------------------------------------------------------------------------------------------------


def test_body_at_the_cap_is_accepted(server: LocalServer, connections: ConnectionLog) -> None:
    policy = replace(LOOPBACK_OK, max_bytes=5000)
    assert len(fetch_image(server.url("/sized?size=5000"), policy).content) == 5000


def test_content_length_over_the_cap_is_refused_before_reading(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(server.url("/lying-length"), LOOPBACK_OK)
    assert error.code is FetchErrorCode.TOO_LARGE
    assert "Content-Length" in error.message


def test_content_length_one_over_the_cap_is_refused(server: LocalServer, connections: ConnectionLog) -> None:
    policy = replace(LOOPBACK_OK, max_bytes=5000)
    assert _fetch_error(server.url("/sized?size=5001"), policy).code is FetchErrorCode.TOO_LARGE


def test_chunked_body_over_the_cap_is_refused_while_streaming(server: LocalServer, connections: ConnectionLog) -> None:
    # 2 MB announced by no header at all; the cap is 100 kB.
    error = _fetch_error(server.url("/chunked?size=2000000"), LOOPBACK_OK)
    assert error.code is FetchErrorCode.TOO_LARGE
    assert "Content-Length" not in error.message


def test_chunked_body_under_the_cap_is_accepted(server: LocalServer, connections: ConnectionLog) -> None:
    assert len(fetch_image(server.url("/chunked?size=50000"), LOOPBACK_OK).content) == 50_000


def test_gzip_bomb_is_capped_on_decoded_bytes(server: LocalServer, connections: ConnectionLog) -> None:
    # 5 MB of zeros compress to about 5 kB: the wire size is under the cap, the decoded size is not.
    error = _fetch_error(server.url("/gzip-bomb?size=5000000"), LOOPBACK_OK)
    assert error.code is FetchErrorCode.TOO_LARGE


def test_unknown_content_encoding_is_refused(server: LocalServer, connections: ConnectionLog) -> None:
    assert _fetch_error(server.url("/brotli"), LOOPBACK_OK).code is FetchErrorCode.UNSUPPORTED_ENCODING


def test_server_that_does_not_answer_hits_the_read_timeout(server: LocalServer, connections: ConnectionLog) -> None:
    policy = replace(LOOPBACK_OK, read_timeout_seconds=0.3)
    error = _fetch_error(server.url("/slow-headers?seconds=5"), policy)
    assert error.code is FetchErrorCode.READ_TIMEOUT


def test_server_dripping_bytes_hits_the_total_deadline(server: LocalServer, connections: ConnectionLog) -> None:
    # Each read succeeds well within the read timeout; only the total deadline stops it.
    policy = replace(LOOPBACK_OK, read_timeout_seconds=1.0, total_timeout_seconds=0.5)
    started = time.monotonic()
    error = _fetch_error(server.url("/drip?interval=0.05&count=200"), policy)  # would take 10 s
    assert error.code is FetchErrorCode.READ_TIMEOUT
    assert "total" in error.message
    assert time.monotonic() - started < 2.0


def test_http_error_status_is_reported(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(server.url("/status?code=503"), LOOPBACK_OK)
    assert (error.code, error.status) == (FetchErrorCode.HTTP_ERROR, 503)


def test_too_many_redirects(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(server.url("/hop/4"), LOOPBACK_OK)  # 4 redirects, 3 allowed
    assert error.code is FetchErrorCode.TOO_MANY_REDIRECTS
    assert len(server.state.received) == 4  # the fifth request is never sent


def test_zero_redirects_allowed_refuses_the_first(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(server.url("/hop/1"), replace(LOOPBACK_OK, max_redirects=0))
    assert error.code is FetchErrorCode.TOO_MANY_REDIRECTS


def test_connection_refused_is_a_connection_error(connections: ConnectionLog) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = _fetch_error(f"http://127.0.0.1:{port}/", LOOPBACK_OK)
    assert error.code is FetchErrorCode.CONNECTION_ERROR


# --- the SSRF guard over HTTP ----------------------------------------------------------------------------------------


def test_loopback_is_refused_without_connecting(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(server.url("/image"), STRICT)
    assert error.code is FetchErrorCode.BLOCKED_ADDRESS
    assert connections.connects == []
    assert server.state.received == []


def test_localhost_name_is_refused_after_resolution(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(f"http://localhost:{server.port}/image", STRICT)
    assert error.code is FetchErrorCode.BLOCKED_ADDRESS
    assert "localhost" in connections.lookups  # it was resolved, then refused
    assert connections.connects == []


def test_numeric_host_forms_are_resolved_and_refused(connections: ConnectionLog) -> None:
    # 2130706433 == 127.0.0.1 and 167772161 == 10.0.0.1 as getaddrinfo reads them.
    for url in ("http://2130706433/", "http://167772161/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/"):
        assert _fetch_error(url, STRICT).code is FetchErrorCode.BLOCKED_ADDRESS, url
    assert connections.connects == []


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/metadata/instance?api-version=2021-02-01",
        "http://10.0.0.1/",
        "http://168.63.129.16/machine?comp=goalstate",
        "http://[fd00::1]/",
        "http://[::ffff:192.168.1.1]/",
        "http://167772161/",
    ],
)
def test_redirect_to_a_refused_address_is_refused_without_connecting(
    server: LocalServer, connections: ConnectionLog, target: str
) -> None:
    start = server.url("/redirect?" + urlencode({"to": target}))
    error = _fetch_error(start, LOOPBACK_OK)  # the first hop (127.0.0.1) is allowed, the second is not
    assert error.code is FetchErrorCode.BLOCKED_ADDRESS
    assert connections.hosts_connected() == {"127.0.0.1"}
    assert len(server.state.received) == 1


def test_redirect_from_refused_loopback_never_gets_that_far(server: LocalServer, connections: ConnectionLog) -> None:
    start = server.url("/redirect?" + urlencode({"to": "http://10.0.0.1/"}))
    assert _fetch_error(start, STRICT).code is FetchErrorCode.BLOCKED_ADDRESS
    assert connections.connects == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:6379/_INFO"])
def test_redirect_to_another_scheme_is_refused(server: LocalServer, connections: ConnectionLog, target: str) -> None:
    start = server.url("/redirect?" + urlencode({"to": target}))
    error = _fetch_error(start, LOOPBACK_OK)
    assert error.code is FetchErrorCode.INVALID_URL
    assert "redirect" in error.message
    assert len(server.state.received) == 1


def test_connect_goes_to_the_vetted_address_not_a_second_lookup(
    server: LocalServer, connections: ConnectionLog
) -> None:
    """The connect is pinned to what the guard vetted: the host name is never resolved again (no rebinding gap)."""
    answers: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        answers.append(host)
        return ["127.0.0.1"]

    policy = replace(LOOPBACK_OK, resolver=resolver)
    result = fetch_image(f"http://images.example.test:{server.port}/image", policy)
    assert result.content == IMAGE_BYTES
    assert answers == ["images.example.test"]
    assert "images.example.test" not in connections.lookups  # the system resolver never saw the name
    assert server.state.received[0].headers["host"] == f"images.example.test:{server.port}"


def test_one_refused_address_among_several_refuses_the_host(connections: ConnectionLog) -> None:
    policy = replace(LOOPBACK_OK, resolver=lambda host, port: ["127.0.0.1", "10.1.2.3"])
    error = _fetch_error("http://mixed.example.test/", policy)
    assert error.code is FetchErrorCode.BLOCKED_ADDRESS
    assert connections.connects == []


def test_dns_failure(connections: ConnectionLog) -> None:
    # .invalid never resolves (RFC 6761); the resolver answers locally without a query leaving the host.
    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = _fetch_error("http://nowhere.invalid/", replace(STRICT, resolver=resolver))
    assert error.code is FetchErrorCode.DNS_FAILURE


def test_peer_check_reads_the_connected_address_from_httpx(server: LocalServer, connections: ConnectionLog) -> None:
    """httpx 0.28 exposes the socket's peer; the post-connect check refuses 127.0.0.1 unless loopback is allowed."""
    with guarded_client(LOOPBACK_OK) as client, client.stream("GET", server.url("/image")) as response:
        verify_peer(response, LOOPBACK_OK)  # allowed
        with pytest.raises(FetchError) as info:
            verify_peer(response, STRICT)
    assert info.value.code is FetchErrorCode.BLOCKED_ADDRESS
    assert "peer" in info.value.message


def test_resolve_allowed_addresses_answers_vetted_addresses() -> None:
    policy = replace(LOOPBACK_OK, resolver=lambda host, port: ["127.0.0.1", "127.0.0.1", "::1"])
    assert resolve_allowed_addresses("x.test", 80, policy) == ["127.0.0.1", "::1"]


# --- URL checks ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "gopher://example.com/",
        "//example.com/a.png",
        "example.com/a.png",
        "",
        "http://",
        "http://user:pw@example.com/",
    ],
)
def test_non_http_and_malformed_urls_are_refused(url: str, connections: ConnectionLog) -> None:
    assert _fetch_error(url, STRICT).code is FetchErrorCode.INVALID_URL
    with pytest.raises(FetchError) as info:
        check_public_url(url)
    assert info.value.code is FetchErrorCode.INVALID_URL
    assert connections.connects == [] and connections.lookups == []


@pytest.mark.parametrize(
    ("url", "allow_loopback", "code"),
    [
        ("https://hooks.example.com/imagepipe?token=abc", False, None),
        ("http://93.184.216.34:8080/cb", False, None),
        ("http://127.0.0.1:9000/cb", True, None),
        ("http://localhost:9000/cb", True, None),
        ("http://127.0.0.1:9000/cb", False, FetchErrorCode.BLOCKED_ADDRESS),
        ("http://localhost/cb", False, FetchErrorCode.BLOCKED_ADDRESS),
        ("http://api.localhost/cb", False, FetchErrorCode.BLOCKED_ADDRESS),
        ("http://169.254.169.254/", True, FetchErrorCode.BLOCKED_ADDRESS),
        ("http://[::1]/", False, FetchErrorCode.BLOCKED_ADDRESS),
        ("http://[fe80::1]/", True, FetchErrorCode.BLOCKED_ADDRESS),
        ("ftp://example.com/", False, FetchErrorCode.INVALID_URL),
    ],
)
def test_check_public_url(url: str, allow_loopback: bool, code: FetchErrorCode | None) -> None:
    with ConnectionLog().recording() as log:
        if code is None:
            check_public_url(url, allow_loopback=allow_loopback)
        else:
            with pytest.raises(FetchError) as info:
                check_public_url(url, allow_loopback=allow_loopback)
            assert info.value.code is code
    assert log.connects == [] and log.lookups == []  # submission-time checks do no DNS


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "https://acct.blob.core.windows.net/c/a.png?sv=2022&sig=SECRET",
            "https://acct.blob.core.windows.net/c/a.png?<redacted>",
        ),
        ("http://user:pw@example.com:8080/a.png#frag", "http://example.com:8080/a.png"),
        ("http://[2001:db8::1]/x", "http://[2001:db8::1]/x"),
        ("not a url at all \x00", "<invalid url>"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_errors_and_results_never_show_the_query(server: LocalServer, connections: ConnectionLog) -> None:
    error = _fetch_error(server.url("/status?code=404&sig=SECRET"), LOOPBACK_OK)
    assert "SECRET" not in str(error) and "SECRET" not in repr(error)
    result = fetch_image(server.url("/image?sig=SECRET"), LOOPBACK_OK)
    assert "SECRET" not in repr(result)


# --- address classification (pure) ----------------------------------------------------------------------------------

REFUSED = [
    # IPv4
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.0.1", "private"),
    ("169.254.169.254", "metadata"),
    ("169.254.1.1", "link-local"),
    ("168.63.129.16", "wireserver"),
    ("100.64.0.1", "shared"),
    ("100.127.255.255", "shared"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "private"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", ""),  # reserved (Python files 240/4 under private)
    ("255.255.255.255", ""),
    ("192.0.2.1", ""),  # documentation
    ("198.18.0.1", ""),  # benchmarking
    # IPv6
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", ""),  # documentation
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("100::1", ""),  # discard-only
    ("::7f00:1", "reserved"),  # IPv4-compatible 127.0.0.1
    # IPv4-mapped, NAT64 and 6to4 forms of refused IPv4 addresses
    ("::ffff:127.0.0.1", "loopback (IPv4-mapped)"),
    ("::ffff:10.0.0.1", "private (IPv4-mapped)"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:168.63.129.16", "wireserver"),
    ("::ffff:100.64.0.1", "shared"),
    ("64:ff9b::a9fe:a9fe", "metadata service (NAT64)"),
    ("64:ff9b::7f00:1", "loopback (NAT64)"),
    ("2002:a00:1::1", "private (6to4)"),
    ("2002:a9fe:a9fe::1", "metadata"),
    ("not-an-ip", "not an IP address"),
]

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below the shared range
    "100.128.0.0",  # just above it
    "172.32.0.1",  # just outside 172.16/12
    "168.63.129.17",  # next to the wireserver
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize(("address", "reason_part"), REFUSED)
def test_refused_addresses(address: str, reason_part: str) -> None:
    reason = address_refusal_reason(address)
    assert reason is not None, address
    assert reason_part in reason
    assert not is_address_allowed(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_allowed_addresses(address: str) -> None:
    assert address_refusal_reason(address) is None
    assert address_refusal_reason(address, allow_loopback=True) is None


@pytest.mark.parametrize(
    ("address", "allowed_with_loopback_switch"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", False),  # only the plain forms
        ("64:ff9b::7f00:1", False),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("168.63.129.16", False),
        ("fe80::1", False),
        ("fd00::1", False),
    ],
)
def test_allow_loopback_allows_loopback_and_nothing_else(address: str, allowed_with_loopback_switch: bool) -> None:
    assert is_address_allowed(address, allow_loopback=True) is allowed_with_loopback_switch
    assert not is_address_allowed(address, allow_loopback=False)


def test_policy_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        replace(STRICT, max_bytes=0)
    with pytest.raises(ValueError):
        replace(STRICT, read_timeout_seconds=0)
    with pytest.raises(ValueError):
        replace(STRICT, max_redirects=-1)


def test_a_shared_guarded_client_reuses_its_connection(server: LocalServer, connections: ConnectionLog) -> None:
    with guarded_client(LOOPBACK_OK) as client:
        for _ in range(3):
            assert fetch_image(server.url("/image"), LOOPBACK_OK, client=client).content == IMAGE_BYTES
    assert len(connections.connects) == 1


def test_a_shared_guarded_client_still_refuses(server: LocalServer, connections: ConnectionLog) -> None:
    with guarded_client(STRICT) as client:
        error = _fetch_error_with(client, server.url("/image"), STRICT)
    assert error.code is FetchErrorCode.BLOCKED_ADDRESS
    assert connections.connects == []


def _fetch_error_with(client: httpx.Client, url: str, policy: FetchPolicy) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_image(url, policy, client=client)
    return info.value


def test_tls_handshake_failure_is_a_connection_error(server: LocalServer, connections: ConnectionLog) -> None:
    # https to a plain-HTTP server: the guard lets 127.0.0.1 through, the TLS handshake fails.
    error = _fetch_error(f"https://127.0.0.1:{server.port}/image", LOOPBACK_OK)
    assert error.code is FetchErrorCode.CONNECTION_ERROR
    assert connections.hosts_connected() == {"127.0.0.1"}


def test_fetch_error_survives_pickling() -> None:
    import pickle

    error = FetchError(FetchErrorCode.HTTP_ERROR, "HTTP 503", status=503, url="http://example.com/a.png?<redacted>")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message, copy.status, copy.url) == (error.code, error.message, 503, error.url)
    assert str(copy) == str(error)
