"""The admin endpoint: per-queue message counts over HTTPS.

- `GET /$counts` answers JSON `{"<queue>": {"active", "scheduled", "deferred", "deadLetter", "total"}}` for
  tests and humans.
- `GET /<queue>?api-version=...` answers the Atom entry with a `QueueDescription` that
  `ServiceBusAdministrationClient.get_queue_runtime_properties` and `get_queue` parse. That client always
  speaks HTTPS, so the endpoint has a self-signed certificate (made at first start, kept in the data
  directory); clients turn verification off for this local endpoint only (`connection_verify=False`).

It runs on its own thread and only reads counters the reactor thread maintains.
"""

from __future__ import annotations

import datetime
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from .certificate import ensure_self_signed_certificate
from .config import QueueConfig

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("servicebus_emulator.admin")

_NO_LIMIT = "P10675199DT2H48M5.4775807S"  # Service Bus' spelling of TimeSpan.MaxValue


def _iso_duration(ms: int) -> str:
    seconds = ms / 1000
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    text = "P"
    if days:
        text += f"{int(days)}D"
    time_part = ""
    if hours:
        time_part += f"{int(hours)}H"
    if minutes:
        time_part += f"{int(minutes)}M"
    if rest or not (days or hours or minutes):
        time_part += f"{rest:g}S"
    return text + ("T" + time_part if time_part else "")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def queue_entry_xml(base_url: str, config: QueueConfig, counts: dict[str, int], started: str) -> str:
    """The Atom entry Service Bus' management API returns for a queue."""
    url = f"{base_url}/{config.name}?api-version=2021-05"
    total = counts["total"]
    return f"""<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom">
  <id>{escape(url)}</id>
  <title type="text">{escape(config.name)}</title>
  <published>{started}</published>
  <updated>{started}</updated>
  <author><name>sbemulatorns</name></author>
  <link rel="self" href="{escape(url)}"/>
  <content type="application/xml">
    <QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
        xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
      <LockDuration>{_iso_duration(config.lock_duration_ms)}</LockDuration>
      <MaxSizeInMegabytes>1024</MaxSizeInMegabytes>
      <RequiresDuplicateDetection>{_flag(config.requires_duplicate_detection)}</RequiresDuplicateDetection>
      <RequiresSession>{_flag(config.requires_session)}</RequiresSession>
      <DefaultMessageTimeToLive>{_iso_duration(config.default_ttl_ms)}</DefaultMessageTimeToLive>
      <DeadLetteringOnMessageExpiration>{_flag(config.dead_letter_on_expiration)}</DeadLetteringOnMessageExpiration>
      <DuplicateDetectionHistoryTimeWindow>{_iso_duration(config.duplicate_window_ms)}</DuplicateDetectionHistoryTimeWindow>
      <MaxDeliveryCount>{config.max_delivery_count}</MaxDeliveryCount>
      <EnableBatchedOperations>true</EnableBatchedOperations>
      <SizeInBytes>0</SizeInBytes>
      <MessageCount>{total}</MessageCount>
      <IsAnonymousAccessible>false</IsAnonymousAccessible>
      <AuthorizationRules/>
      <Status>Active</Status>
      <CreatedAt>{started}</CreatedAt>
      <UpdatedAt>{started}</UpdatedAt>
      <AccessedAt>{started}</AccessedAt>
      <SupportOrdering>true</SupportOrdering>
      <CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus">
        <d2p1:ActiveMessageCount>{counts["active"]}</d2p1:ActiveMessageCount>
        <d2p1:DeadLetterMessageCount>{counts["deadLetter"]}</d2p1:DeadLetterMessageCount>
        <d2p1:ScheduledMessageCount>{counts["scheduled"]}</d2p1:ScheduledMessageCount>
        <d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>
        <d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount>
      </CountDetails>
      <AutoDeleteOnIdle>{_NO_LIMIT}</AutoDeleteOnIdle>
      <EnablePartitioning>false</EnablePartitioning>
      <EntityAvailabilityStatus>Available</EntityAvailabilityStatus>
      <EnableExpress>false</EnableExpress>
    </QueueDescription>
  </content>
</entry>
"""


class _AdminRequestHandler(BaseHTTPRequestHandler):
    server: _AdminHttpServer
    timeout = 10  # a client that stalls holds only its own thread, and not for long

    def setup(self) -> None:
        # The TLS handshake happens here, on this request's thread, not in the accept loop where one
        # silent client would block everyone.
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests poll this endpoint

    def _answer(self, status: int, content_type: str, body: str) -> None:
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path).strip("/").lower()
        broker = self.server.broker
        counts = broker.queue_counts()
        if path in ("$counts", "counts"):
            self._answer(200, "application/json", json.dumps(counts, sort_keys=True))
            return
        if path in counts:
            config = broker.entities[path].config
            base = f"https://{self.headers.get('Host', 'localhost')}"
            xml = queue_entry_xml(base, config, counts[path], self.server.started)
            self._answer(200, "application/atom+xml;type=entry;charset=utf-8", xml)
            return
        self._answer(404, "application/xml", "<Error><Code>404</Code><Detail>Not found.</Detail></Error>")


class _AdminHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], broker: Broker) -> None:
        super().__init__(address, _AdminRequestHandler)
        self.broker = broker
        self.started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that are not HTTPS, or hang up mid-handshake, are their own problem: no traceback.
        log.debug("admin request from %s failed", client_address, exc_info=True)


class AdminServer:
    def __init__(self, broker: Broker, host: str, port: int, data_dir: Path) -> None:
        cert_file, key_file = ensure_self_signed_certificate(data_dir, host)
        self._server = _AdminHttpServer((host, port), broker)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="admin-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
