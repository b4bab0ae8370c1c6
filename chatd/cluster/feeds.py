"""A room as one node sees it: its local members and its events, delivered in ev order.

Redis numbers every event of a room (ev: messages and presence alike) in the
script that publishes it.  A node delivers only from its subscription, in ev
order (CLUSTER.md, "Deliver only from the subscription"): the next expected
event and any held successors go out, lower ones are dropped (already
delivered), higher ones are held while an XRANGE of the room's stream fills
the hole.  What the node must do at a given point of a room's order (the
actor's own `joined` and `users` after a join, its `left` after a leave) is
an action at that ev, run once every event up to it has been delivered.
"""

import heapq
import itertools

_ORDER = itertools.count()  # ties between actions at one ev keep their order


def room_event(data: bytes) -> tuple:
    """A room event as Redis publishes it and keeps it in the room's stream,
    "ev sid tag msgid payload" (scripts/common.lua, `emit`), as the tuple
    (ev, sid, tag, msgid, payload) the feed holds; ints but for sid and
    payload (bytes)."""
    ev, sid, tag, msgid, payload = data.split(b" ", 4)
    return int(ev), sid, int(tag), int(msgid), payload


class Feed:
    """One room with local members (or a local join in flight).

    `name` as first spelled (from Redis), `key` casefolded, `members` the
    local sessions (an insertion-ordered dict, as core Room.members),
    `expected` the next ev to deliver (None until Redis said where the node
    starts), `held` {ev: event} beyond a hole, `actions` a heap of
    (ev, order, callable), `filling` while an XRANGE is on the way,
    `resuming` while the catch-up read after a reconnect is (pushes are in
    it), `run` the run of Redis its numbering was last read in (recovery.py),
    `joining` local joins in flight.
    """

    __slots__ = ("name", "key", "members", "expected", "held", "actions", "filling",
                 "resuming", "run", "joining", "channel", "log")

    def __init__(self, name: str, key: str):
        self.name = name
        self.key = key
        self.members: dict = {}
        self.expected: int | None = None
        self.held: dict = {}
        self.actions: list = []
        self.filling = False
        self.resuming = False
        self.run = ""
        self.joining = 0
        self.channel = "chatd:room:" + key
        self.log = "chatd:log:" + key

    def at(self, ev: int, action) -> None:
        """Run `action()` once every event up to `ev` is delivered (now if it is)."""
        heapq.heappush(self.actions, (ev, next(_ORDER), action))

    def due(self, upto: int) -> list:
        """The actions at evs up to `upto`, in order, taken off the heap."""
        due = []
        actions = self.actions
        while actions and actions[0][0] <= upto:
            due.append(heapq.heappop(actions)[2])
        return due

    def start_at(self, ev: int, run: str) -> list:
        """Redis (as run `run`) says the node's view starts after `ev` (when the
        feed had no start): held events up to `ev` are dropped. Returns the
        events now deliverable."""
        if self.expected is None:
            self.expected = ev + 1
            self.run = run
            for old in [held for held in self.held if held <= ev]:
                del self.held[old]
        return self.take_ready()

    def offer(self, ev: int, event) -> list:
        """An event arrived: the events now deliverable, in order (often just it)."""
        expected = self.expected
        if expected is not None and ev < expected:
            return []  # delivered already (a catch-up overlapping the subscription)
        if ev == expected:
            self.expected = ev + 1
            return [event] + self.take_ready() if self.held else [event]
        self.held[ev] = event
        return []

    def take_ready(self) -> list:
        """Held events that follow on from `expected`, taken out in order."""
        ready = []
        held = self.held
        while self.expected in held:
            ready.append(held.pop(self.expected))
            self.expected += 1
        return ready

    def hole(self) -> tuple[int, int] | None:
        """The evs to read from the stream, (first, last), if a hole is waiting."""
        if self.held and self.expected is not None and not self.filling:
            return self.expected, min(self.held) - 1
        return None

    def skip_lost(self, last: int) -> int:
        """After a fill of the evs up to `last`: those the stream no longer had
        (trimmed) are skipped. Returns how many."""
        if self.expected is None or self.expected > last:
            return 0
        lost = last + 1 - self.expected
        self.expected = last + 1
        return lost
