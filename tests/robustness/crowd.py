"""Many chat/1 clients at once, driven by one selectors loop in the calling
thread (no thread per client): the way to hold thousands of connections,
attack from many of them together, and still check every frame they get."""

import errno
import selectors
import socket
import struct
import time
from collections import deque

import framing

# Connections started but not yet welcomed at once; beyond the server's
# listen backlog the kernel drops SYNs and the client waits a second to retry.
CONNECTS_IN_FLIGHT = 256


class Peer:
    """One non-blocking connection: what it has received, what it still owes."""

    __slots__ = ("sock", "name", "decoder", "frames", "pending", "connected", "eof",
                 "paused", "error", "events", "hello_on_connect", "bad_frames",
                 "eof_at", "sent_at")

    def __init__(self, sock: socket.socket, name: str | None, max_frame: int):
        self.sock = sock
        self.name = name
        self.decoder = framing.Decoder(max_frame, framing.EVENTS)
        self.frames: list[dict] = []    # everything received, in order
        self.bad_frames: list = []      # frames that break chat/1 (a server bug)
        self.pending = bytearray()      # bytes not yet written
        self.connected = False
        self.eof = False                # the server closed (FIN or RST)
        self.eof_at: float | None = None
        self.paused = False             # not reading: the kernel buffer fills up
        self.error: int | None = None   # connect() failure
        self.events = 0
        self.hello_on_connect = name is not None
        self.sent_at = 0.0

    def of_type(self, kind: str) -> list[dict]:
        return [frame for frame in self.frames if frame["type"] == kind]

    def has(self, kind: str, **members) -> bool:
        return any(frame["type"] == kind and all(frame.get(k) == v for k, v in members.items())
                   for frame in self.frames)

    @property
    def welcomed(self) -> bool:
        return self.has("welcome")


class Crowd:
    """The peers and their selector; nothing happens until `pump` (or a
    `run_*` that pumps) runs the loop, so a test decides when time passes."""

    def __init__(self, address, max_frame: int = framing.MAX_FRAME):
        self.address = address[:2]
        self.max_frame = max_frame
        self.selector = selectors.DefaultSelector()
        self.peers: list[Peer] = []
        self._waiting: deque[Peer] = deque()  # created, connect() not yet called
        self._arriving: set[Peer] = set()     # connecting, or waiting for a first frame

    # ------------------------------------------------------------ connections

    def add(self, name: str | None = None, rcvbuf: int | None = None) -> Peer:
        """A new peer; it connects (and says hello as `name`) when the loop runs."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        # A receive window only takes full effect when set before connecting.
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        peer = Peer(sock, name, self.max_frame)
        self.peers.append(peer)
        self._waiting.append(peer)
        return peer

    def open(self, names, timeout: float = 10, rcvbuf: int | None = None) -> list[Peer]:
        """Connect one peer per name (None: no hello) and wait until all are in."""
        peers = [self.add(name, rcvbuf) for name in names]
        self.run_until(lambda: all(p.welcomed if p.name else p.connected for p in peers),
                       timeout, f"{len(peers)} peers welcomed")
        return peers

    def _start_connects(self) -> None:
        while self._waiting and len(self._arriving) < CONNECTS_IN_FLIGHT:
            peer = self._waiting.popleft()
            code = peer.sock.connect_ex(self.address)
            if code not in (0, errno.EINPROGRESS):
                peer.error = code
                continue
            self._watch(peer, selectors.EVENT_WRITE)
            self._arriving.add(peer)

    def _watch(self, peer: Peer, events: int) -> None:
        if events == peer.events:
            return
        if peer.events == 0:
            self.selector.register(peer.sock, events, peer)
        elif events == 0:
            self.selector.unregister(peer.sock)
        else:
            self.selector.modify(peer.sock, events, peer)
        peer.events = events

    def _rewatch(self, peer: Peer) -> None:
        if peer.eof or peer.sock.fileno() == -1:
            return
        events = 0 if peer.paused else selectors.EVENT_READ
        if peer.pending or not peer.connected:
            events |= selectors.EVENT_WRITE
        self._watch(peer, events)

    def send(self, peer: Peer, message: dict) -> None:
        # No size check here: a test may send what the server must refuse.
        self.send_raw(peer, framing.encode(message, 0xFFFFFFFF))

    def send_raw(self, peer: Peer, data: bytes) -> None:
        peer.pending += data
        peer.sent_at = time.monotonic()
        if peer.connected:
            self._write(peer)
        self._rewatch(peer)

    def pause(self, peer: Peer, paused: bool = True) -> None:
        peer.paused = paused
        self._rewatch(peer)

    def reset(self, peer: Peer) -> None:
        """Abort the connection with an RST (SO_LINGER 0), as a crashed host would."""
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close(peer)

    def half_close(self, peer: Peer) -> None:
        """End our output (FIN) but keep reading."""
        self._write(peer)
        peer.sock.shutdown(socket.SHUT_WR)

    def close(self, peer: Peer) -> None:
        if peer.events:
            self.selector.unregister(peer.sock)
            peer.events = 0
        peer.sock.close()
        self._arriving.discard(peer)
        if peer in self._waiting:
            self._waiting.remove(peer)

    def close_all(self) -> None:
        for peer in self.peers:
            if peer.sock.fileno() != -1:
                self.close(peer)
        self.peers.clear()
        self.selector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_all()

    # ------------------------------------------------------------------ loop

    def pump(self, timeout: float = 0.01) -> None:
        """One turn: start waiting connects, then serve what is ready."""
        if self._waiting:
            self._start_connects()
        for key, mask in self.selector.select(timeout):
            peer = key.data
            if not peer.connected:
                self._finish_connect(peer)
                continue
            if mask & selectors.EVENT_WRITE:
                self._write(peer)
            if mask & selectors.EVENT_READ:
                self._read(peer)
            self._rewatch(peer)

    def run_until(self, condition, timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            self.pump(min(remaining, 0.05))

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.pump(min(remaining, 0.05))

    def _finish_connect(self, peer: Peer) -> None:
        code = peer.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            peer.error = code
            self._arriving.discard(peer)
            self._watch(peer, 0)
            return
        peer.connected = True
        if peer.hello_on_connect:
            peer.pending[:0] = framing.encode({"type": "hello", "name": peer.name})
        else:
            self._arriving.discard(peer)
        self._write(peer)
        self._rewatch(peer)

    def _write(self, peer: Peer) -> None:
        if not peer.pending or not peer.connected or peer.eof:
            return
        try:
            sent = peer.sock.send(peer.pending)
        except BlockingIOError:
            return
        except OSError:
            self._ended(peer)
            return
        del peer.pending[:sent]

    def _read(self, peer: Peer) -> None:
        try:
            data = peer.sock.recv(262_144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended(peer)
            return
        if not peer.frames:
            self._arriving.discard(peer)
        for item in peer.decoder.feed(data):
            if type(item) is dict:
                peer.frames.append(item)
            else:
                peer.bad_frames.append(item)

    def _ended(self, peer: Peer) -> None:
        """The server closed: hang up too, as a real client would."""
        self._arriving.discard(peer)
        peer.eof = True
        peer.eof_at = time.monotonic()
        self._watch(peer, 0)
        peer.sock.close()
