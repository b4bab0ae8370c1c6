"""The one-page web client's files (HTML, CSS, JavaScript modules), shipped in the package.

No build step: the files in this folder are served as they are, from memory
(read once at start).  `StaticFiles.lookup(path)` gives the answer's body
and headers, or None for a path that is not one of them (404).
"""

import hashlib
from importlib import resources

# Path -> (file in this package, Content-Type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/state.js": ("state.js", "text/javascript; charset=utf-8"),
    "/conversations.js": ("conversations.js", "text/javascript; charset=utf-8"),
    "/connection.js": ("connection.js", "text/javascript; charset=utf-8"),
    "/commands.js": ("commands.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

# Only the page's own files, its own WebSocket, no inline script or style,
# no framing by other sites (clickjacking), no plugins (CSP Level 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# Headers on every answer of the web listener, files and errors alike.
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


class StaticFile:
    """One file's bytes, Content-Type and ETag (a hash of the bytes)."""

    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str):
        self.body = body
        self.content_type = content_type
        self.etag = '"%s"' % hashlib.sha256(body).hexdigest()[:32]

    def headers(self) -> list[tuple[str, str]]:
        """Content-Type, ETag and Cache-Control: the browser keeps a copy but asks
        again each time (no-cache), so a new chatd's page is never stale."""
        return [("Content-Type", self.content_type), ("ETag", self.etag),
                ("Cache-Control", "no-cache"), *SECURITY_HEADERS]


class StaticFiles:
    """The client's files by request path (query strings ignored)."""

    def __init__(self):
        folder = resources.files(__name__)
        self.files = {path: StaticFile(folder.joinpath(name).read_bytes(), content_type)
                      for path, (name, content_type) in FILES.items()}

    def lookup(self, target: bytes) -> StaticFile | None:
        """The file a request target names, or None."""
        path = target.split(b"?", 1)[0].decode("ascii", "replace")
        return self.files.get(path)
