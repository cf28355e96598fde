"""The HTTP transport for the local emulators' self-signed HTTPS endpoints (Cosmos DB, the Service Bus admin API).

`connection_verify=False` alone makes azure-core build a fresh SSL context for every connection (~17 ms of
`load_default_certs`, measured with azure-cosmos 4.17): the Cosmos emulator was capped at ~45 operations/s and one
health check (six queue-depth reads on the Service Bus admin API) took ~230 ms. One pre-built context, shared by the
pool, removes that. Certificates are not checked: emulator endpoints only (Settings refuses the flag for a real one).
"""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any

import requests
import urllib3
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter

from shared.adapters.proxies import proxies_configured


class _ReusedContextAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools all share one SSL context (no certificate checks: emulator only)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(pool_connections=4, pool_maxsize=32)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


def emulator_transport() -> RequestsTransport:
    """One transport per process, shared by every client: the Cosmos client is built once per thread (see
    ThreadLocalDatabase), and a context and a TLS handshake per thread cost a new thread's first call ~60-110 ms.
    A requests session's pool is safe to share between threads; the state that must not be shared (a client's
    last response headers) lives in the clients, not here."""
    # Unverified on purpose (see above); said at every client construction, as warning filters can be reset.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return _shared_transport()


@cache
def _shared_transport() -> RequestsTransport:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    session = requests.Session()
    session.verify = False
    session.trust_env = proxies_configured()
    session.mount("https://", _ReusedContextAdapter(context))
    return RequestsTransport(session=session, session_owner=False, connection_verify=False)
