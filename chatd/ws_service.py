"""What every connection of the web listener shares (`WebService`), and its factory.

The connections themselves are `ws_protocol.WebProtocol`s; this module
holds the files they serve, the Origin allow-list checked at the upgrade,
and the encoding of chat/1 frames as WebSocket frames, once per broadcast.
"""

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
    and the request's Host.  A request without Origin is not from a browser
    (no cross-site hijacking is possible) and is let in.
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

    def origin_allowed(self, origin: bytes, host: bytes | None) -> bool:
        """True if a page from `origin` may open the WebSocket (RFC 6455 section 10.2)."""
        origin = origin.decode("ascii", "replace").lower()
        if self.origins:
            return origin in self.origins
        return host is not None and \
            origin == f"{self.scheme}://{host.decode('ascii', 'replace').lower()}"

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
