"""The dashboard's static files as served: content types, validators, headers, and nothing outside static/."""

from __future__ import annotations

import re

from shared.dashboard.assets import STATIC_DIR, assets, dashboard_response


def test_the_page_and_its_modules_are_served_with_their_types_and_a_strict_policy() -> None:
    page = dashboard_response("", "/api/dashboard/", None)
    assert page is not None and page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy and "unsafe" not in policy, "no external origin, no inline code"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["ETag"].startswith('"')
    for name, content_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
        answer = dashboard_response(name, f"/api/dashboard/{name}", None)
        assert answer is not None and answer.status == 200
        assert answer.headers["Content-Type"].startswith(content_type)
        assert answer.body == (STATIC_DIR / name).read_bytes()


def test_a_known_etag_is_answered_304_without_a_body() -> None:
    first = dashboard_response("app.js", "/api/dashboard/app.js", None)
    assert first is not None
    again = dashboard_response("app.js", "/api/dashboard/app.js", f'"other", {first.headers["ETag"]}')
    assert again is not None and again.status == 304 and again.body == b""
    changed = dashboard_response("app.js", "/api/dashboard/app.js", '"stale"')
    assert changed is not None and changed.status == 200


def test_the_page_without_its_trailing_slash_redirects_to_it() -> None:
    answer = dashboard_response("", "/api/dashboard", None)
    assert answer is not None and answer.status == 308 and answer.headers["Location"] == "dashboard/"


def test_only_files_under_static_are_served() -> None:
    for path in ("../assets.py", "..%2Fassets.py", "/etc/passwd", "nope.js", "../__init__.py", "static/app.js"):
        assert dashboard_response(path, f"/api/dashboard/{path}", None) is None, path
    assert set(assets()) >= {"index.html", "app.js", "api.js", "chart.js", "style.css"}


def test_the_page_loads_nothing_from_elsewhere_and_has_no_inline_code() -> None:
    for name, asset in assets().items():
        text = asset.body.decode()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), f"{name} refers to another origin"
        assert not re.search(r"""from\s+["'](https?:)?//""", text), f"{name} imports from another origin"
        if name.endswith(".html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline script (the policy would block it)"
            assert "<style" not in text and " style=" not in text, "inline style (the policy would block it)"
            assert not re.search(r"<[^>]+\son\w+\s*=", text), "inline event handler (the policy would block it)"
