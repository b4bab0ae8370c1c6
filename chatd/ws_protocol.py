"""chat/1 over WebSocket, and the web client's files, on one HTTP/1.1 port.

One `WebProtocol` per connection of the web listener (its factory is
`WebService.protocol`).  It is a transport protocol like chat/1's (see the
top of chatd/transport.py) and starts as HTTP/1.1 parsed by h11:

- `GET /chat` with a WebSocket upgrade, from an allowed Origin (and Host:
  `WebService.origin_allowed`), is handed to wsproto's handshake (RFC 6455; sans-IO, like h11), answered 101, and
  from then on each text message is one chat/1 payload (JSON, no length
  prefix) for a `WSChatSession`: the core's Session, the same as a TCP
  user's, so both share rooms, names and ids;
- `GET`/`HEAD` of one of the client's files (chatd/web/) is answered with
  it (304 if the browser's copy is current); anything else is 404 (405 for
  another method), a head over 8 KiB 431, an Origin not allowed 403, and
  every request but the upgrade 503 over a connection limit;
- one request per connection (`Connection: close`, through
  `http_answer.OneRequestHTTP`), all within the handshake timeout (within
  REFUSED_WAIT over a connection limit).

Towards the chat layer this object is the session's transport: the core's
fan-out (`ChatService.queue`) appends chat/1 frames to `output` and puts it
on the flush list, as for a TCP connection, so the TCP hot path is
unchanged.  Its `flush` turns those frames into WebSocket text frames,
each encoded once per broadcast (`ws_service.WebService.ws_frames`: the same payload
is the same unmasked server frame for every recipient), hands them to the
socket's transport and flushes it, so the output limits, the slow-consumer
cut and TLS apply as they are.  A session's close sends its `bye`, then a
Close frame whose code fits the reason (`CLOSE_CODES`).
"""

import logging
import re

import h11
from wsproto import ConnectionType
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Request,
                            TextMessage)
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as HandshakeError

from framing import BadFrame, FrameTooLarge
from framing.codec import HEADER

from .chat_protocol import ChatProtocol
from .http_answer import OneRequestHTTP
from .output import OutputQueue
from .transport import State
from .web import SECURITY_HEADERS

log = logging.getLogger("chatd")

_OPEN, _CLOSING, _CLOSED = State.OPEN, State.CLOSING, State.CLOSED
_WS_OPEN, _WS_REMOTE_CLOSING = ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING

# Where the WebSocket is; every other path is a file or 404.
CHAT_PATH = b"/chat"
# Seconds a connection refused over a limit has to send its request (so a page
# still hears why), at most; then it is closed, as a refused TCP one is at once.
REFUSED_WAIT = 1.0
# The entity-tags (or "*") of an If-None-Match value (RFC 9110 sections 8.8.3
# and 13.1.2); a quoted tag may hold a comma.
_ETAGS = re.compile(rb'\*|(?:W/)?"[^"]*"')

# The Close frame's code for each `bye` reason (RFC 6455 section 7.4.1):
# a normal end, the server going away, data it cannot take (binary), a
# policy it enforces (abuse, idle or handshake timeout, a reader too slow),
# a message too big, and "try again later".
CLOSE_CODES = {
    "quit": 1000, "replaced": 1000,
    "shutdown": 1001,
    "bad_frame": 1003,
    "abuse": 1008, "timeout": 1008, "too_slow": 1008,
    "frame_too_large": 1009,
    "server_full": 1013,
}


class WSChatSession(ChatProtocol):
    """A chat/1 session whose transport is a `WebProtocol`: the same core Session,
    but its close also tells the WebSocket the reason (for the Close code)."""

    __slots__ = ()

    def begin_close(self, reason: str, error=None, counted_as=None, ref=None) -> None:
        """As ChatProtocol's; the Close frame after `bye` gets the code of `reason`."""
        channel = self.transport
        if channel.state is _OPEN and channel.close_code is None:
            channel.close_code = CLOSE_CODES.get(reason, 1000)
            channel.close_reason = reason
        super().begin_close(reason, error, counted_as, ref)


class WebProtocol(OneRequestHTTP):
    """One connection of the web listener: an HTTP request, then maybe a WebSocket.

    `service` is the listener's `ws_service.WebService`.

    Its `transport` is the socket's; to its `session` (after the upgrade) it
    is the transport: `output`, `scheduled`, `state`, `peer`, `write`,
    `close`, `flush`, `pause_reading`, `resume_reading`.
    """

    __slots__ = ("service", "peer", "head", "full", "ws", "session", "parts", "part_size",
                 "output", "scheduled", "state", "close_code", "close_reason", "peer_closed")

    log_name = "web"

    def __init__(self, service):
        super().__init__()
        self.service = service
        self.peer = None
        self.head = bytearray()   # the request's raw bytes, for wsproto's handshake
        self.full = None          # why, when over a connection limit: refuse the request
        self.ws = None            # wsproto's Connection, once upgraded
        self.session = None
        self.parts: list = []     # the text message being received, UTF-8 pieces
        self.part_size = 0
        self.output = OutputQueue()  # chat/1 frames for this turn's flush
        self.scheduled = False
        self.state = _OPEN
        self.close_code = None
        self.close_reason = ""
        self.peer_closed = False  # the peer's Close frame came: nothing more to send

    # ------------------------------------------------------ transport events

    def connection_made(self, transport) -> None:
        """Arm the handshake timeout: the request (and the upgrade) within it."""
        self.transport = transport
        self.peer = transport.peer
        self.arm_timer(self.service.loop, self.service.chat.handshake_timeout)

    def data_received(self, data) -> None:
        """HTTP bytes until the upgrade, WebSocket bytes after it."""
        if self.ws is not None:
            self._ws_received(bytes(data))
        elif self.http is not None:
            self.head += data
            self.receive(data)

    def eof_received(self) -> None:
        """End of input: a disconnect for a session, else the end of the request."""
        if self.session is not None:
            self.session.eof_received()
        else:
            self.transport.close()

    def slow_consumer(self, why: str) -> None:
        """Output over a limit: `too_slow` for a session, else just close."""
        if self.session is not None:
            self.session.slow_consumer(why)
        else:
            self.transport.close()

    def over_capacity(self, why: str) -> None:
        """One connection beyond max_clients or its address's limits (`why`): its
        request is refused (a WebSocket with `server_full` saying why and Close
        1013, so a page can say why; anything else with 503).  The request must
        come within REFUSED_WAIT seconds (or handshake_timeout if shorter), so a
        refused client cannot hold its connection, a file descriptor and a
        place in max_clients for the whole handshake timeout."""
        self.full = why
        self.arm_timer(self.service.loop,
                       min(REFUSED_WAIT, self.service.chat.handshake_timeout))

    def shutdown(self) -> None:
        """The server stops: `bye` {shutdown} and Close 1001 for a session."""
        if self.session is not None:
            self.session.shutdown()
        else:
            self.transport.close()

    def connection_lost(self, reason: str | None) -> None:
        """The socket closed; the session hears it (and the cycle to it is broken)."""
        self.cancel_timer()
        self.state = _CLOSED
        self.output.clear()
        session, self.session = self.session, None
        if session is not None:
            session.connection_lost(reason)

    # ---------------------------------------------------------------- HTTP

    def serve(self, request: h11.Request) -> None:
        """The upgrade at CHAT_PATH; else one of the client's files (GET or HEAD),
        304 when the browser's copy is current, 503 over a connection limit."""
        if request.target.split(b"?", 1)[0] == CHAT_PATH:
            self._upgrade(request)
            return
        if self.full is not None:
            self.answer(503, b"server full; try later\n")
            return
        if request.method not in (b"GET", b"HEAD"):
            self.answer(405, b"GET or HEAD only\n", [("Allow", "GET, HEAD")])
            return
        found = self.service.files.lookup(request.target)
        if found is None:
            self.answer(404, b"not found\n")
        elif _none_match(request.headers, found.etag.encode()):
            self.answer(304, b"", found.headers(), head_only=True)
        else:
            self.answer(200, found.body, found.headers(), head_only=request.method == b"HEAD")

    def answer(self, status: int, body: bytes, headers=(), head_only: bool = False) -> None:
        """As OneRequestHTTP's; an error answer carries the security headers too
        (a file's carry them already)."""
        if status >= 400:
            headers = [*headers, *SECURITY_HEADERS]
        self.head = None
        super().answer(status, body, headers, head_only)

    def _upgrade(self, request: h11.Request) -> None:
        """wsproto checks the upgrade and answers 101; the chat session begins."""
        headers = dict(request.headers)  # h11 gives names lowercased
        origin = headers.get(b"origin")
        service = self.service
        local = self.transport.sock.getsockname()  # (address, port, ...); a Unix path
        if origin is not None and not service.origin_allowed(
                origin, headers.get(b"host"), local[0] if type(local) is tuple else ""):
            service.refused_origins += 1
            # At debug: a script can send any number of these (metrics count them).
            log.debug("web: WebSocket from %s:%d refused, Origin %s or Host %s not allowed",
                      *self.peer, origin.decode("ascii", "replace"),
                      headers.get(b"host", b"").decode("ascii", "replace"))
            self.answer(403, b"Origin not allowed (or, with no ws_origins set, a Host "
                        b"that is not localhost or this server's address)\n")
            return
        handshake = H11Handshake(ConnectionType.SERVER)
        try:
            handshake.receive_data(bytes(self.head))
            events = list(handshake.events())
        except HandshakeError as exc:
            status = getattr(exc.event_hint, "status_code", 400)
            self.answer(status, f"not a WebSocket upgrade: {exc}\n".encode())
            return
        if not events or type(events[0]) is not Request:  # the head came whole, so it is there
            self.answer(400, b"not a WebSocket upgrade\n")
            return
        self.transport.write(handshake.send(AcceptConnection()))
        trailing = self.http.trailing_data[0]
        self.ws = handshake.connection
        self.http = self.head = None
        self.cancel_timer()
        service.upgrades += 1
        session = self.session = WSChatSession(service.chat)
        session.connection_made(self)
        if self.full is not None:
            session.over_capacity(self.full)
        elif trailing:
            self._ws_received(trailing)

    # ----------------------------------------------------------- WebSocket

    def _ws_received(self, data: bytes) -> None:
        """WebSocket events to the session: a read's whole text messages as one
        run of chat/1 frames (so its says to a room are queued together)."""
        if self.state is not _OPEN:
            return
        ws, session = self.ws, self.session
        ws.receive_data(data)
        run = []
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage:
                piece = event.data.encode("utf-8")
                self.parts.append(piece)
                self.part_size += len(piece)
                if self.part_size > session.service.max_frame:
                    self._give(run)
                    self._refuse(FrameTooLarge(f"message of more than max_frame "
                                               f"({session.service.max_frame}) bytes"))
                    return
                if event.message_finished:
                    run.append(HEADER.pack(self.part_size))
                    run.extend(self.parts)
                    self.parts.clear()
                    self.part_size = 0
            elif kind is Ping:
                self.transport.write(ws.send(event.response()))
            elif kind is BytesMessage:
                self._give(run)
                self._refuse(BadFrame("binary messages are not chat/1: send JSON as text"))
                return
            elif kind is CloseConnection:
                self._give(run)
                self._ws_closed(event)
                return
        self._give(run)

    def _give(self, run: list) -> None:
        """Hand a run of chat/1 frames to the session (while it is still open)."""
        if run and self.state is _OPEN:
            self.session.data_received(b"".join(run))
        run.clear()

    def _refuse(self, error) -> None:
        """A fatal error for the core (error, bye, close), as the TCP decoder's would be."""
        if self.state is _OPEN:
            service = self.session.service
            service.apply(service.core.receive(self.session, error))

    def _ws_closed(self, event: CloseConnection) -> None:
        """The peer's Close frame (answered with its code), or a frame wsproto refused
        (a Close with wsproto's code, e.g. 1002, after error and bye `bad_frame`)."""
        if self.ws.state is _WS_REMOTE_CLOSING:
            self.peer_closed = True
            self.output.clear()
            self.close_code = event.code
            self.session.eof_received()
        else:
            self.close_code = event.code
            self.close_reason = "bad_frame"
            self._refuse(BadFrame(f"bad WebSocket frame: {event.reason}"))

    # ------------------------------------------- the session's transport side

    def write(self, data: bytes) -> None:
        """Queue chat/1 frames for this turn's flush (dropped after the peer's Close)."""
        if self.peer_closed:
            return
        self.output.append(data)
        if not self.scheduled:
            self.service.chat.connections.schedule(self)

    def close(self) -> None:
        """After what is queued: a Close frame, then the socket's close."""
        if self.state is not _OPEN:
            return
        self.state = _CLOSING
        if not self.scheduled:
            self.service.chat.connections.schedule(self)

    @property
    def reading_paused(self) -> bool:
        """True while the socket's transport is not reading (the session paused it)."""
        return self.transport.reading_paused

    def pause_reading(self) -> None:
        """Stop reading the socket (the session waits for the store: see
        ChatService.park); what the peer sends waits in the kernel."""
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again after `pause_reading`."""
        self.transport.resume_reading()

    def flush(self, limits) -> None:
        """This turn's chat/1 frames as WebSocket frames to the socket, then its flush."""
        output, transport = self.output, self.transport
        if self.state is not _OPEN and self.ws.state not in (_WS_OPEN, _WS_REMOTE_CLOSING):
            output.clear()  # the Close frame is sent: nothing may follow it
            return
        if output.size:
            if not self.peer_closed:
                # Once per recipient per turn: the cache lookup and the append are
                # inlined (WebService.ws_frames and OutputQueue.append otherwise).
                service = self.service
                cache = service.frames
                queue = transport.output
                queued = queue.chunks
                for chunk in output.chunks:
                    cached = cache.get(id(chunk))
                    data = cached[1] if cached is not None and cached[0] is chunk \
                        else service.ws_frames(chunk)
                    queued.append(data)
                    queue.size += len(data)
            output.clear()
        if self.state is _CLOSING:
            transport.write(self.ws.send(CloseConnection(
                code=self.close_code or 1000, reason=self.close_reason)))
            transport.close()
            return
        transport.flush(limits)


def _none_match(headers, etag: bytes) -> bool:
    """True if an If-None-Match header lists `etag` or is "*" (RFC 9110 section
    13.1.2: weak comparison, so a W/ prefix does not matter)."""
    for name, value in headers:
        if name == b"if-none-match":
            for tag in _ETAGS.findall(value):
                if tag == b"*" or tag.removeprefix(b"W/") == etag:
                    return True
    return False
