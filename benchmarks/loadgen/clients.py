"""The generator's side of one connection, in each wire dialect the benchmark drives.

`Chat1Client` speaks chat/1 through `framing`; `RespClient` speaks the RESP
subset of Redis pub/sub (SUBSCRIBE, PUBLISH, PING).  Both take whatever one
recv() returned and keep counts: messages delivered, the sender's own
messages acknowledged, and the delivery check of every message number.

A member of the room reads on the process's shared `RoomStream`: what it
read is compared with the checked stream at its position (one memcmp per
read), and only the member that reads a stretch first checks its frames
(see stream.py).  One read in 32 has one frame decoded in full, to hold
the scan to the real decoder and to sample delivery latency.  A member
whose bytes differ from the stream, and everything before the room's first
message (handshake, presence), is checked on its own, frame by frame: the
chat/1 path walks frame headers, pulls the `id`s of a read out with one
regular-expression scan and compares them with the expected run in one
list comparison; a read that is not all `msg` frames is decoded frame by
frame.
"""

import re
import ssl
import struct
import time
from itertools import groupby
from operator import itemgetter

import framing
from framing import EVENTS

from .delivery import DeliveryCheck
from .histogram import LogHistogram
from .stream import RoomStream

_unpack_length = struct.Struct(">I").unpack_from
# `,"` cannot occur inside a JSON string (the quote would be escaped), so in a
# msg payload these bytes can only be the members themselves.
_MSG_START = b'{"type":"msg",'
_MSG_ID = re.compile(rb',"id":(\d+)')
# A say's payload is framing's own around the text.  A text of only these
# characters (message_text's are) is the same in JSON, so it is put in place
# without running the JSON encoder, which was a fifth of the generator's CPU.
_SAY_HEAD, _SAY_TAIL = framing.encode_payload({"type": "say", "text": "@"}).split(b"@")
_PLAIN_TEXT = re.compile(r"[0-9A-Za-z:. _-]*")
# One read in 32 has its first frame decoded in full (a power of two, less one).
SAMPLE_MASK = 31
# Every chat/1 stream a chat/1 target serves is one room: the lobby.
ROOM_STREAM = "room"


def message_text(sender: int, seq: int, intended: float, size: int) -> str:
    """A message body that says who sent it, its number and when it was due."""
    head = f"{sender:04d}:{seq:010d}:{intended:.6f}:"
    return head + "x" * max(0, size - len(head))


def intended_time(text) -> float:
    """The send time carried by `message_text` (str or bytes)."""
    return float(text.split(":" if type(text) is str else b":")[2])


class LoadClient:
    """Socket, unsent bytes, the counters the scenarios read, and the place in the room stream."""

    __slots__ = ("sock", "name", "sender", "out", "welcomed", "failed", "events",
                 "own_delivered", "acked", "sent", "checks", "bad_frames", "latency_sample",
                 "pending", "reads", "stream", "position", "aligned_index", "aligned_counts",
                 "acked_through", "own_marker")

    def __init__(self, sock, name: str, sender: int | None, latency_sample: LogHistogram,
                 stream=None):
        self.sock = sock
        self.name = name
        self.sender = sender          # the sender's index, None for a receiver
        self.out = bytearray()
        self.welcomed = False
        self.failed: str | None = None  # why the handshake failed, if it did
        self.events: list = []        # decoded frames other than msg, for the scenario
        self.own_delivered = 0        # msg frames received, but those read on the stream
        self.acked = 0                # own messages acknowledged
        self.sent = 0                 # own messages sent
        self.checks: dict[object, DeliveryCheck] = {}
        self.bad_frames = 0           # frames that failed to decode or disagreed with the scan
        self.latency_sample = latency_sample
        self.pending = b""            # received bytes of a frame still arriving
        self.reads = 0
        # The shared room stream (None: always check on its own), and while this
        # member reads on it: its position, the frame index and per-key frame
        # counts where it joined, and the frames its acknowledgements are counted to.
        self.stream = stream if self.reads_room() else None
        self.position: int | None = None
        self.aligned_index = 0
        self.aligned_counts: dict = {}
        self.acked_through = 0
        self.own_marker: bytes | None = None  # bytes only this sender's own messages carry

    def reads_room(self) -> bool:
        """Whether this connection receives the room's messages."""
        return True

    @property
    def delivered(self) -> int:
        """Messages received."""
        if self.position is None:
            return self.own_delivered
        return self.own_delivered + self.stream.frames_before(self.position) - self.aligned_index

    def flush(self) -> bool:
        """Send what the socket takes; True once nothing is left."""
        out = self.out
        if out:
            try:
                sent = self.sock.send(out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):  # TLS: retried with the same bytes first
                return False
            del out[:sent]
        return not out

    def feed(self, data) -> None:
        """Take the bytes one recv() returned (any bytes-like object)."""
        position = self.position
        if position is None:
            self.feed_own(bytes(data))
            self._join_stream()
            return
        stream = self.stream
        if self.pending:
            data = self.pending + data
            self.pending = b""
        log = stream.log
        offset = position - stream.base
        size = len(data)
        known = len(log) - offset
        if size <= known:
            if not log.startswith(data, offset):
                self._leave_stream(data)
                return
            self.position = position + size
        else:
            if known and not log.startswith(data[:known], offset):
                self._leave_stream(data)
                return
            stop = stream.extend(data, known)
            if stop is None:
                self._leave_stream(data)
                return
            self.position = position + stop
            if stop < size:
                self.pending = bytes(data[stop:])
        self.reads += 1
        if self.own_marker is not None:
            self._count_acks()
        if not self.reads & SAMPLE_MASK:
            index = stream.frames_before(position)
            if index < stream.frames_before(self.position):
                intended = stream.sample(index)
                if intended is not None:
                    self.latency_sample.record(time.monotonic() - intended)

    def feed_own(self, data: bytes) -> None:
        """Check `data` on this connection's own, frame by frame."""
        raise NotImplementedError

    def _count_acks(self) -> None:
        stream = self.stream
        done = stream.frames_before(self.position)
        if done > self.acked_through:
            base = stream.base
            self.acked += stream.log.count(self.own_marker,
                                           stream.frame_start(self.acked_through) - base,
                                           stream.frame_start(done) - base)
            self.acked_through = done

    def _join_stream(self) -> None:
        """Read on the shared stream from here on, if it holds where this member is."""
        stream = self.stream
        if stream is None:
            return
        index = stream.align_index({key: check.expected - 1 for key, check in self.checks.items()
                                    if check.expected > 1})
        if index is None:
            return
        self.position = stream.frame_start(index)
        self.aligned_index = self.acked_through = index
        self.aligned_counts = stream.state_at(index)[1]
        pending, self.pending = self.pending, b""
        if pending:
            self.feed(pending)

    def settle(self) -> None:
        """Bring the delivery checks up to date with what was read on the stream."""
        if self.position is not None:
            self._settle(self.stream.frames_before(self.position))

    def _settle(self, index: int) -> None:
        last, counts = self.stream.state_at(index)
        for key, number in last.items():
            check = self.checks.get(key)
            if check is None:
                check = self.checks[key] = DeliveryCheck(1)
            check.advance(number, counts[key] - self.aligned_counts.get(key, 0))
        self.own_delivered += index - self.aligned_index
        self.aligned_index, self.aligned_counts = index, counts

    def _leave_stream(self, data) -> None:
        """Bytes that differ from the stream: check on our own from the frame they are in."""
        stream = self.stream
        index = stream.frames_before(self.position)
        self._settle(index)
        start = stream.frame_start(index) - stream.base
        partial = bytes(stream.log[start:self.position - stream.base])
        self.position = None
        self.pending = b""
        self.feed_own(partial + bytes(data))


def scan_msgs(chunk: bytes):
    """The complete chat/1 frames of `chunk`: (ends, keys, ids), or None if one is not a msg."""
    ends = []
    position, available = 0, len(chunk)
    while available - position >= 4:
        end = position + 4 + _unpack_length(chunk, position)[0]
        if end > available:
            break
        if not chunk.startswith(_MSG_START, position + 4):
            return None
        ends.append(end)
        position = end
    ids = list(map(int, _MSG_ID.findall(chunk, 0, position)))
    if len(ids) != len(ends):
        return None
    return ends, [ROOM_STREAM] * len(ends), ids


def decode_msg(frame: bytes) -> tuple:
    """(stream key, id, intended send time) of one whole chat/1 `msg` frame."""
    message = framing.parse_payload(frame[4:], EVENTS)
    if message["type"] != "msg":
        raise ValueError(f"a {message['type']} frame, not msg")
    return ROOM_STREAM, message["id"], intended_time(message["text"])


class Chat1Client(LoadClient):
    """A chat/1 member; a sender's own `msg` echo is its acknowledgement."""

    __slots__ = ()

    def __init__(self, sock, name, sender, latency_sample, stream=None):
        super().__init__(sock, name, sender, latency_sample, stream)
        self.own_marker = f',"from":"{name}",'.encode() if sender is not None else None
        self.checks[ROOM_STREAM] = DeliveryCheck(1)

    @staticmethod
    def new_stream() -> RoomStream:
        return RoomStream(scan_msgs, decode_msg)

    def hello(self) -> None:
        self.out += framing.encode({"type": "hello", "name": self.name})

    def say(self, text: str) -> None:
        if _PLAIN_TEXT.fullmatch(text):
            self.out += framing.frame(_SAY_HEAD + text.encode() + _SAY_TAIL)
        else:
            self.out += framing.encode({"type": "say", "text": text})
        self.sent += 1

    def ping(self, data: int) -> None:
        self.out += framing.encode({"type": "ping", "data": data})

    def feed_own(self, data: bytes) -> None:
        buffer = self.pending + data if self.pending else data
        position, available, frames = 0, len(buffer), 0
        while available - position >= 4:
            end = position + 4 + _unpack_length(buffer, position)[0]
            if end > available:
                break
            position = end
            frames += 1
        self.pending = buffer[position:] if position < available else b""
        if not frames:
            return
        if buffer.count(_MSG_START, 0, position) == frames:
            ids = list(map(int, _MSG_ID.findall(buffer, 0, position)))
            if len(ids) == frames:
                self.checks[ROOM_STREAM].add_run(ids)
                self.own_delivered += frames
                if self.own_marker is not None:
                    self.acked += buffer.count(self.own_marker, 0, position)
                self.reads += 1
                if not self.reads & SAMPLE_MASK:
                    self._sample(buffer, ids[0])
                return
        self._feed_each(buffer, position)

    def _sample(self, buffer: bytes, scanned_id: int) -> None:
        """Decode the read's first frame in full and hold the scan to it."""
        end = 4 + _unpack_length(buffer, 0)[0]
        try:
            message = framing.parse_payload(buffer[4:end], EVENTS)
        except framing.MessageError:
            self.bad_frames += 1
            return
        if message["type"] != "msg" or message["id"] != scanned_id:
            self.bad_frames += 1
            return
        try:
            self.latency_sample.record(time.monotonic() - intended_time(message["text"]))
        except (ValueError, IndexError):
            pass  # not a text this generator wrote

    def _feed_each(self, buffer: bytes, stop: int) -> None:
        position = 0
        check = self.checks[ROOM_STREAM]
        while position < stop:
            end = position + 4 + _unpack_length(buffer, position)[0]
            try:
                message = framing.parse_payload(buffer[position + 4:end], EVENTS)
            except framing.MessageError as exc:
                self.bad_frames += 1
                self.events.append({"type": "bad_frame", "error": str(exc)})
                position = end
                continue
            position = end
            if message["type"] != "msg":
                if message["type"] == "welcome":
                    self.welcomed = True
                elif message["type"] == "error" and not self.welcomed:
                    self.failed = f"{message['code']}: {message['message']}"
                self.events.append(message)
                continue
            check.add(message["id"])
            self.own_delivered += 1
            if message["from"] == self.name:
                self.acked += 1


# RESP: a subscriber's push is an array of "message", the channel, the payload.
_CHANNEL = b"lobby"
_PUSH_START = b"*3\r\n$7\r\nmessage\r\n$5\r\nlobby\r\n$"
_PUSH_PAYLOAD = re.compile(rb"\$\d+\r\n(\d+):(\d+):")
_sender_of, _number_of = itemgetter(0), itemgetter(1)


def resp_command(*words: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        parts.append(b"$%d\r\n%s\r\n" % (len(word), word))
    return b"".join(parts)


def parse_resp(buffer: bytes, position: int):
    """One RESP2 reply at `position`: (value, end), or None when incomplete."""
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        return None
    kind, line = buffer[position:position + 1], buffer[position + 1:line_end]
    if kind in (b"+", b"-"):
        return (kind + line).decode(errors="replace"), line_end + 2
    if kind == b":":
        return int(line), line_end + 2
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, line_end + 2
        end = line_end + 2 + size
        if end + 2 > len(buffer):
            return None
        return buffer[line_end + 2:end], end + 2
    if kind == b"*":
        items, position = [], line_end + 2
        for _ in range(int(line)):
            parsed = parse_resp(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        return items, position
    raise ValueError(f"not RESP: {buffer[position:position + 20]!r}")


def scan_pushes(chunk: bytes):
    """The complete pushes of `chunk`: (ends, sender keys, numbers), or None if one is not a push."""
    ends = []
    position, available, skip = 0, len(chunk), len(_PUSH_START)
    while position < available:
        if not chunk.startswith(_PUSH_START, position):
            if _PUSH_START.startswith(chunk[position:]):
                break  # the header itself is still arriving
            return None
        line_end = chunk.find(b"\r\n", position + skip)
        if line_end < 0:
            break
        end = line_end + 2 + int(chunk[position + skip:line_end]) + 2
        if end > available:
            break
        ends.append(end)
        position = end
    found = _PUSH_PAYLOAD.findall(chunk, 0, position)
    if len(found) != len(ends):
        return None
    return ends, list(map(_sender_of, found)), list(map(int, map(_number_of, found)))


def decode_push(frame: bytes) -> tuple:
    """(sender key, number, intended send time) of one whole push."""
    parsed = parse_resp(frame, 0)
    if parsed is None or parsed[1] != len(frame) or type(parsed[0]) is not list \
            or parsed[0][:2] != [b"message", _CHANNEL]:
        raise ValueError(f"not a push: {frame[:40]!r}")
    sender, number, _ = parsed[0][2].split(b":", 2)
    return sender, int(number), intended_time(parsed[0][2])


class RespClient(LoadClient):
    """A Redis pub/sub client: receivers SUBSCRIBE, senders PUBLISH.

    Redis numbers nothing, so each sender numbers its own messages and a
    receiver checks one stream per sender.  A sender is not subscribed (in
    RESP2 a subscribed connection may not PUBLISH); PUBLISH's integer reply
    is its acknowledgement.
    """

    __slots__ = ()

    def reads_room(self) -> bool:
        return self.sender is None

    @staticmethod
    def new_stream() -> RoomStream:
        return RoomStream(scan_pushes, decode_push)

    def hello(self) -> None:
        self.out += resp_command(b"SUBSCRIBE", _CHANNEL) if self.sender is None \
            else resp_command(b"PING")

    def say(self, text: str) -> None:
        self.out += resp_command(b"PUBLISH", _CHANNEL, text.encode())
        self.sent += 1

    def ping(self, data: int) -> None:
        self.out += resp_command(b"PING", b"%d" % data)

    def feed_own(self, data: bytes) -> None:
        buffer = self.pending + data if self.pending else data
        available = len(buffer)
        position = 0
        while position < available:
            if self.sender is not None and buffer[position] == 58:  # b":"
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                self.acked += 1
                position = line_end + 2
                continue
            if buffer.startswith(_PUSH_START, position):
                start = position + len(_PUSH_START)
                line_end = buffer.find(b"\r\n", start)
                if line_end < 0:
                    break
                end = line_end + 2 + int(buffer[start:line_end]) + 2
                if end > available:
                    break
                position = self._pushes(buffer, position, end)
                continue
            parsed = parse_resp(buffer, position)
            if parsed is None:
                break
            reply, position = parsed
            self._reply(reply)
        self.pending = buffer[position:] if position < available else b""

    def _pushes(self, buffer: bytes, position: int, first_end: int) -> int:
        """Walk the run of pushes starting at `position`; return where it stops.

        Pushes of one payload size share their header bytes, so the walk
        only compares headers; a push of another size ends the run and the
        caller carries on from there.  Each sender's numbers are checked as
        one run: a stable sort by sender keeps each sender's arrival order.
        """
        available, skip = len(buffer), len(_PUSH_START)
        payload_start = buffer.find(b"\r\n", position + skip) + 2
        header, size = buffer[position:payload_start], first_end - position
        start, count = position, 1
        position = first_end
        while buffer.startswith(header, position) and position + size <= available:
            position += size
            count += 1
        numbers = _PUSH_PAYLOAD.findall(buffer, start, position)
        if len(numbers) != count:
            self.bad_frames += abs(count - len(numbers))
        numbers.sort(key=_sender_of)
        checks = self.checks
        for sender, run in groupby(numbers, _sender_of):
            check = checks.get(sender)
            if check is None:
                check = checks[sender] = DeliveryCheck(1)
            check.add_run(list(map(int, map(_number_of, run))))
        self.own_delivered += count
        try:
            self.latency_sample.record(
                time.monotonic() - intended_time(buffer[payload_start:first_end - 2]))
        except (ValueError, IndexError):
            self.bad_frames += 1
        return position

    def _reply(self, reply) -> None:
        if type(reply) is list and reply[:1] == [b"subscribe"]:
            self.welcomed = True
        elif type(reply) is list and reply[:1] == [b"pong"]:
            self.events.append({"type": "pong", "data": int(reply[1])})
        elif reply == "+PONG" and self.sender is not None:
            self.welcomed = True
        elif type(reply) is str and reply.startswith("-"):
            if not self.welcomed:
                self.failed = reply
            self.bad_frames += 1
            self.events.append({"type": "error", "message": reply})
        else:
            self.events.append(reply)
