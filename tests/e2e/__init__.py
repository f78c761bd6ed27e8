"""The test apps of ``tests/apps`` plus what only the proxy tests need.

``/parity/{name}`` answers GET, HEAD and POST with an ``X-Accel-Source`` marker
and every header the proxy must pass on (:data:`PARITY`), so that an offloaded
answer can be compared with a streamed one, header by header.

The app also answers under the internal prefix itself (:data:`SHADOW`), so that
a 404 there can only come from the proxy.
"""

from __future__ import annotations

# The app's headers that must reach the client whoever sends the bytes.
PARITY: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Disposition", 'attachment; filename="report.txt"'),
    ("Cache-Control", "private, max-age=60"),
    ("Expires", "Thu, 01 Jan 2037 00:00:00 GMT"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
    ("Access-Control-Allow-Origin", "https://learn.example.org"),
    ("Access-Control-Allow-Credentials", "true"),
    ("Access-Control-Expose-Headers", "Content-Range, Content-Disposition"),
    ("Vary", "Cookie"),
    ("X-Content-Type-Options", "nosniff"),
    ("Set-Cookie", "seen=1; Path=/; HttpOnly"),
    ("Set-Cookie", "theme=dark; Path=/"),
)

SHADOW = b"the app answered under the internal prefix\n"
