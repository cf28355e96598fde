"""Serving the dashboard's static files: content types, validators, cache and security headers. Pure (reads only
the package's own files).

Only files that exist under static/ when the process starts can be served: a request names a key of that table,
never a path on disk, so no request can reach outside it. Every answer carries an ETag and `Cache-Control:
no-cache` (the browser keeps its copy and revalidates it with a 304: a deployment is seen at once, since the
modules import each other by unversioned names), and a Content-Security-Policy that allows this origin only: no
inline script or style, no external script, style, font, image or connection, no framing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class AssetResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Every servable file under static/, by its path relative to it (with '/')."""
    table = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            table[path.relative_to(STATIC_DIR).as_posix()] = Asset(body, content_type, etag)
    return table


def dashboard_response(path: str, request_path: str, if_none_match: str | None) -> AssetResponse | None:
    """The answer to GET of dashboard file `path` ("" is the page itself); None when there is no such file.
    `request_path` is the URL path asked for: the page must be asked for with a trailing slash, or the relative
    addresses of its modules and of the API would resolve one level too high."""
    if not path:
        if not request_path.endswith("/"):
            return AssetResponse(308, headers={"Location": request_path.rsplit("/", 1)[-1] + "/"})
        path = "index.html"
    asset = assets().get(path)
    if asset is None:
        return None
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if if_none_match and asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return AssetResponse(304, headers=headers)
    return AssetResponse(200, asset.body, {**headers, "Content-Type": asset.content_type})
