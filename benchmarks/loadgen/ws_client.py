"""The generator's chat/1-over-WebSocket member, for chatd's web port (target chatd-ws).

A `WSChat1Client` is a `Chat1Client` whose bytes travel as WebSocket
frames: its requests are masked text frames made by wsproto (the client's
side of RFC 6455), and what it reads is the HTTP 101 answer, then unmasked
text frames, one chat/1 payload each.  On its own it turns the server's
frames back into chat/1 frames for Chat1Client's checks; on the shared room
stream it compares raw bytes as every member does (chatd encodes a
broadcast's WebSocket frame once, so every member gets the same bytes),
and `scan_ws_msgs` walks the frame headers of the stretch it checks first.
That walk is the generator's own (wsproto yields payloads, not where each
frame ends, and calling it per frame would make the generator the limit);
`decode_ws_msg`, which samples frames in full, decodes with wsproto, so the
walk is held to the library's reading.
"""

import base64
import os
import struct

from wsproto.frame_protocol import FrameProtocol

import framing

from .clients import _MSG_ID, _MSG_START, ROOM_STREAM, Chat1Client, decode_msg
from .stream import RoomStream

# RFC 6455 section 5.2: FIN + opcode 1 (text), then 7 bits of length (126: a
# 16-bit length follows, 127: a 64-bit one); a server's frames are not masked.
_TEXT_FINAL = 0x81
_U16, _U64 = struct.Struct(">H").unpack_from, struct.Struct(">Q").unpack_from
_END_OF_HEAD = b"\r\n\r\n"


def _frame_at(chunk, position: int):
    """(payload start, frame end) of the unmasked frame at `position`, or None when
    its header is incomplete; ValueError when it is not a whole text frame."""
    available = len(chunk)
    if available - position < 2:
        return None
    if chunk[position] != _TEXT_FINAL or chunk[position + 1] & 0x80:
        raise ValueError(f"not an unmasked final text frame: {bytes(chunk[position:position + 2])!r}")
    size = chunk[position + 1]
    start = position + 2
    if size == 126:
        if available - position < 4:
            return None
        size, start = _U16(chunk, position + 2)[0], position + 4
    elif size == 127:
        if available - position < 10:
            return None
        size, start = _U64(chunk, position + 2)[0], position + 10
    return start, start + size


def ws_payloads(chunk) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) of each complete frame's payload in `chunk`, and where they stop."""
    spans, position = [], 0
    while True:
        found = _frame_at(chunk, position)
        if found is None or found[1] > len(chunk):
            return spans, position
        spans.append(found)
        position = found[1]


def scan_ws_msgs(chunk: bytes):
    """As clients.scan_msgs, for WebSocket frames: (ends, keys, ids), or None if one
    is not a msg (or not a text frame)."""
    try:
        spans, _ = ws_payloads(chunk)
    except ValueError:
        return None
    for start, _ in spans:
        if not chunk.startswith(_MSG_START, start):
            return None
    stop = spans[-1][1] if spans else 0
    ids = list(map(int, _MSG_ID.findall(chunk, 0, stop)))
    if len(ids) != len(spans):
        return None
    return [end for _, end in spans], [ROOM_STREAM] * len(spans), ids


def decode_ws_msg(frame: bytes) -> tuple:
    """(stream key, id, intended send time) of one whole frame, read by wsproto."""
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(frame)
    events = list(reader.received_frames())
    if len(events) != 1 or not events[0].message_finished or type(events[0].payload) is not str:
        raise ValueError("not one whole text frame")
    return decode_msg(framing.frame(events[0].payload.encode("utf-8"), 1 << 62))


class WSChat1Client(Chat1Client):
    """A chat/1 member over WebSocket; `pending` holds raw bytes as on the stream."""

    __slots__ = ("encoder", "upgraded", "host")

    def __init__(self, sock, name, sender, latency_sample, stream=None):
        super().__init__(sock, name, sender, latency_sample, stream)
        self.encoder = FrameProtocol(client=True, extensions=[])
        self.upgraded = False
        self.host = "%s:%d" % sock.getpeername()[:2]

    @staticmethod
    def new_stream() -> RoomStream:
        return RoomStream(scan_ws_msgs, decode_ws_msg)

    def _send_payload(self, payload: bytes) -> None:
        self.out += self.encoder.send_data(payload.decode("utf-8"))

    def hello(self) -> None:
        # The upgrade, and the hello right behind it (chatd reads what follows the head).
        key = base64.b64encode(os.urandom(16)).decode()
        self.out += (f"GET /chat HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self._send_payload(framing.encode_payload({"type": "hello", "name": self.name}))

    def say(self, text: str) -> None:
        self._send_payload(framing.encode_payload({"type": "say", "text": text}))
        self.sent += 1

    def ping(self, data: int) -> None:
        self._send_payload(framing.encode_payload({"type": "ping", "data": data}))

    def feed_own(self, data: bytes) -> None:
        buffer = self.pending + data if self.pending else data
        self.pending = b""
        if not self.upgraded:
            head_end = buffer.find(_END_OF_HEAD)
            if head_end < 0:
                self.pending = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.failed = buffer[:buffer.find(b"\r\n")].decode("latin-1")
                return
            self.upgraded = True
            buffer = buffer[head_end + len(_END_OF_HEAD):]
        try:
            spans, stop = ws_payloads(buffer)
        except ValueError as exc:
            self.bad_frames += 1
            self.failed = self.failed or str(exc)
            return
        if spans:
            Chat1Client.feed_own(self, b"".join(
                framing.frame(buffer[start:end], 1 << 62) for start, end in spans))
        self.pending = buffer[stop:]
