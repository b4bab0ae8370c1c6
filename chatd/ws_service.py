"""What every connection of the web listener shares (`WebService`), and its factory.

The connections themselves are `ws_protocol.WebProtocol`s; this module
holds the files they serve, the Origin allow-list checked at the upgrade,
and the encoding of chat/1 frames as WebSocket frames, once per broadcast.
"""

import ipaddress

from wsproto.frame_protocol import FrameProtocol

from framing import HEADER_SIZE
from framing.codec import HEADER

from .web import StaticFiles
from .ws_protocol import WebProtocol


class WebService:
    """What every web connection shares: the chat service, the files, the Origin
    allow-list and the WebSocket frame encoder.

    `origins`: the Origins (e.g. "https://chat.example.org") that may open the
    WebSocket; empty means the page's own, the scheme (`https` when `secure`)
    and the request's Host, and that Host must name this server (see
    `host_names_server`: against DNS rebinding).  A request without Origin is
    not from a browser (no cross-site hijacking is possible) and is let in.
    `upgrades` and `refused_origins` count, for metrics, the WebSockets
    opened and the upgrades refused 403 for their Origin or Host.
    """

    def __init__(self, chat, origins, secure: bool):
        self.chat = chat
        self.loop = chat.loop
        self.files = StaticFiles()
        self.origins = frozenset(origin.lower() for origin in origins)
        self.scheme = "https" if secure else "http"
        # Server frames are not masked and no extension is negotiated, so one
        # encoder serves every connection.
        self.encoder = FrameProtocol(client=False, extensions=[])
        # id(chat/1 chunk) -> (chunk, its WebSocket frames), for this turn's
        # flushes: the chunk is kept so that its id is not reused meanwhile.
        self.frames: dict = {}
        self.upgrades = 0
        self.refused_origins = 0

    def protocol(self) -> WebProtocol:
        """A protocol for one new connection (the web listener's factory)."""
        return WebProtocol(self)

    def origin_allowed(self, origin: bytes, host: bytes | None, local: str) -> bool:
        """True if a page from `origin` may open the WebSocket (RFC 6455 section
        10.2); `host` is the request's Host header, `local` the IP address the
        connection reached (its socket's own)."""
        origin = origin.decode("ascii", "replace").lower()
        if self.origins:
            return origin in self.origins
        if host is None:
            return False
        host = host.decode("ascii", "replace").lower()
        return origin == f"{self.scheme}://{host}" and host_names_server(host, local)

    def ws_frames(self, chunk: bytes) -> bytes:
        """Encode the WebSocket text frames of `chunk`'s chat/1 frames (one or a run
        of them) and keep them in `frames` for the rest of the turn: callers look
        there first, so a broadcast is encoded once whatever its recipients."""
        send_data = self.encoder.send_data
        frames, position, end = [], 0, len(chunk)
        while position < end:
            (size,) = HEADER.unpack_from(chunk, position)
            start = position + HEADER_SIZE
            position = start + size
            # wsproto sends a str as a text frame (bytes would be binary).
            frames.append(send_data(str(chunk[start:position], "utf-8")))
        data = b"".join(frames)
        if not self.frames:
            self.loop.call_soon(self.frames.clear)
        self.frames[id(chunk)] = (chunk, data)
        return data


def host_names_server(host: str, local: str) -> bool:
    """True if the Host header `host` ("name[:port]", "[v6][:port]") names this
    server as reached at the IP address `local`: `localhost`, or that IP address
    itself (any loopback address when `local` is one).

    A page's own origin is not enough by itself: by DNS rebinding a hostile
    site's name can resolve to this server, and its page then sends matching
    Origin and Host headers (the reason Jupyter and webpack-dev-server check
    Host too).  A name of this server's own must be listed in `ws_origins`.
    """
    if host.startswith("["):
        name = host[1:host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        named, reached = ipaddress.ip_address(name), ipaddress.ip_address(local.split("%")[0])
    except ValueError:
        return False
    # A dual-stack socket reports an IPv4 client's server address as ::ffff:a.b.c.d.
    reached = getattr(reached, "ipv4_mapped", None) or reached
    return named == reached or (named.is_loopback and reached.is_loopback)
