"""The room's byte stream as one generator process receives it, checked once for all members.

Every member of the room gets the same bytes: the servers encode each `msg`
(Redis each push) once and send that to every member.  So the first member
to receive a stretch of the stream checks it here, frame by frame (whole
frames, each the next message of its stream: nothing skipped, repeated or
out of order), and appends it to the log; every other member only compares
what it read with the log at its own byte position, one memcmp per read
instead of Python work per frame.  A member whose bytes differ (a lost,
repeated or reordered message, or a frame only it gets) leaves the shared
stream at the frame where they part and checks frame by frame from there,
so every byte it receives is checked either way.

Positions are byte offsets into the whole stream; frame indexes count the
frames of the whole stream.  `trim` drops what every member has read.
"""

from bisect import bisect_right
from collections import Counter


class RoomStream:
    __slots__ = ("scan", "decode", "log", "base", "first", "ends", "keys", "numbers",
                 "last_before", "counts_before", "last", "bad_frames")

    def __init__(self, scan, decode):
        # scan(bytes) -> (frame ends, stream keys, numbers) of the complete frames, or None
        # when one is not a message; decode(frame bytes) -> (key, number, intended time).
        self.scan, self.decode = scan, decode
        self.log = bytearray()
        self.base = 0                 # position of log[0]
        self.first = 0                # index of the log's first frame
        self.ends: list[int] = []     # where each frame of the log ends
        self.keys: list = []          # each frame's stream (sender) key...
        self.numbers: list[int] = []  # ...and its number within that stream
        self.last_before: dict = {}   # key -> last number, over the frames trimmed off
        self.counts_before = Counter()  # key -> frames, over the frames trimmed off
        self.last: dict = {}          # key -> last number, through the end of the log
        self.bad_frames = 0           # sampled frames the decoder disagreed with

    @property
    def end(self) -> int:
        return self.base + len(self.log)

    def extend(self, data, start: int) -> int | None:
        """Check the frames of `data` from `start` on and append the complete ones.

        Returns where the complete frames stop in `data` (the rest is a frame
        still arriving), or None, appending nothing, when one of them is not
        the next message of its stream.
        """
        chunk = bytes(data[start:])
        scanned = self.scan(chunk)
        if scanned is None:
            return None
        ends, keys, numbers = scanned
        if not ends:
            return start
        last = dict(self.last)
        for key, number in zip(keys, numbers):
            if number != last.get(key, 0) + 1:
                return None
            last[key] = number
        stop = ends[-1]
        shift = self.end
        self.log += chunk[:stop]
        self.ends += [end + shift for end in ends]
        self.keys += keys
        self.numbers += numbers
        self.last = last
        return start + stop

    def frames_before(self, position: int) -> int:
        """Index of the first frame not complete at `position`."""
        return self.first + bisect_right(self.ends, position)

    def frame_start(self, index: int) -> int:
        offset = index - self.first
        return self.base if offset == 0 else self.ends[offset - 1]

    def state_at(self, index: int) -> tuple[dict, Counter]:
        """Per stream key, the last number and how many frames, before frame `index`."""
        offset = index - self.first
        last = dict(self.last_before)
        last.update(zip(self.keys[:offset], self.numbers[:offset]))
        counts = self.counts_before.copy()
        counts.update(self.keys[:offset])
        return last, counts

    def align_index(self, last: dict) -> int | None:
        """The frame a member that saw up to `last` (key -> last number) reads next, if logged."""
        if last == self.last:
            return self.first + len(self.ends)
        if last == self.last_before:
            return self.first
        if len(self.last) == 1 and last.keys() == self.last.keys():
            # One numbered stream (chat/1's room): frame i of the log is number before + i + 1.
            (key, number), = last.items()
            offset = number - self.last_before.get(key, 0)
            if 0 < offset < len(self.ends):
                return self.first + offset
        return None

    def sample(self, index: int) -> float | None:
        """Decode frame `index` in full; its intended send time, if it agrees with the scan."""
        offset = index - self.first
        start = self.frame_start(index) - self.base
        frame = bytes(self.log[start:self.ends[offset] - self.base])
        try:
            key, number, intended = self.decode(frame)
        except (ValueError, IndexError):
            self.bad_frames += 1
            return None
        if key != self.keys[offset] or number != self.numbers[offset]:
            self.bad_frames += 1
            return None
        return intended

    def trim(self, index: int) -> None:
        """Forget the frames before `index` (no member reads them again)."""
        offset = index - self.first
        if offset <= 0:
            return
        self.last_before.update(zip(self.keys[:offset], self.numbers[:offset]))
        self.counts_before.update(self.keys[:offset])
        cut = self.ends[offset - 1] - self.base
        del self.log[:cut], self.ends[:offset], self.keys[:offset], self.numbers[:offset]
        self.base += cut
        self.first = index
