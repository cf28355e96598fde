"""Continuation tokens of the paged routes: opaque to clients, checked by the API before they reach the store.

A token is the store's own continuation with the page's scope (route and job), as URL-safe base64 of JSON: a token
that does not decode, or that belongs to another route or job, is refused as an invalid request rather than passed
on (the store could mistake it for no token and answer page 1).
"""

from __future__ import annotations

import base64
import binascii
import json

from shared.errors import InvalidRequest

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,16384}$"


class ContinuationRejected(ValueError):
    """The store refused a continuation (a well-formed token whose inner part was altered)."""


def encode_continuation(scope: str, store_token: str | None) -> str | None:
    if store_token is None:
        return None
    text = json.dumps({"s": scope, "c": store_token}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_continuation(scope: str, token: str | None) -> str | None:
    """The store's continuation from a client's token, or None for the first page."""
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict) or raw.get("s") != scope or not isinstance(raw.get("c"), str):
        raise invalid_continuation()
    return str(raw["c"])


def invalid_continuation() -> InvalidRequest:
    return InvalidRequest(
        "invalid_continuation",
        "the continuation token is not one this route gave for this job: pass back the `continuation` of the "
        "previous page unchanged",
        {"field": "continuation"},
    )
