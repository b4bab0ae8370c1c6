"""The chat core of a cluster node: chat/1's rules with Redis as the shared state.

`ClusterCore` is a `ChatCore` whose requests that touch shared state (hello,
join, leave, say, dm, who, rooms, history, register, passwd) become `Script`
and `Command` effects for the cluster link (a password is checked on the
hasher in between: accounts.py) and park the session (its later requests
wait: a per-client FIFO, so replies keep request order); the answers, the
pub/sub pushes and the link's ups and downs come back through `complete`,
as the store's do.
It keeps only what this node serves: its sessions, and a `Feed` per room
with local members, delivered in Redis' order (feeds.py).  ping and quit
stay local, so they work while Redis is unreachable.

The handlers are in requests.py, messages.py and accounts.py, the catch-up
after a reconnect in recovery.py (mixins, as the single node's are).
"""

import itertools
import json
import logging

import hiredis

from framing import LOBBY
from framing.paging import HISTORY_OVERHEAD

from ..core import ChatCore, ChatSettings, PasswordChecked
from ..core.effects import Deliver
from .accounts import ClusterAccounts
from .effects import Batch, Command, Fenced, LinkChanged, Pushed, Unsubscribe
from .feeds import Feed, room_event
from .link import LINK_DOWN, NOT_SENT
from .messages import ClusterMessages
from .recovery import ClusterRecovery
from .requests import ClusterRequests

log = logging.getLogger("chatd")

# Renames remembered to tell each member once: a rename's events are
# published together, so a few suffice; a bound keeps memory flat.
RENAMES_KEPT = 1024

_ROOM = b"chatd:room:"
_NODE = b"chatd:node:"


class ClusterCore(ClusterAccounts, ClusterRequests, ClusterMessages, ClusterRecovery,
                  ChatCore):
    """chat/1 over Redis for one node (see the module docstring).

    `node` is this node's id (the link's owner sets it, and a new one after
    fencing); `epoch` is the cluster's (set from Redis at each connect).
    Accounts live in Redis (accounts.py).
    """

    def __init__(self, settings: ChatSettings, node: str, **clocks):
        super().__init__(settings, epoch="", **clocks)
        self.node = node
        self.lobby = Feed(LOBBY, LOBBY)
        self.feeds: dict[str, Feed] = {LOBBY: self.lobby}
        self.sessions: dict[bytes, object] = {}   # sid -> welcomed local session
        # sid -> (session, dms for it held back): claimed its name in Redis, its
        # welcome waiting for its place in the lobby's order.
        self.welcoming: dict[bytes, tuple] = {}
        # Sessions whose password is being checked -> the credential read
        # (accounts.py), for the script after the check to compare.
        self._credentials_read: dict = {}
        self.sid_of: dict = {}                    # session -> sid, from its hello on
        self._serials = itertools.count(1)
        self._tags = itertools.count(1)
        # tag -> (session, ref, is a say): says and dms waiting for their own echo.
        self.awaiting: dict[int, tuple] = {}
        # session -> its says sent and not answered yet (pipelined).
        self.in_flight: dict = {}
        # Says in flight when the link broke: settled once the stream was read.
        self.unsettled: dict[int, None] = {}  # in the order they were sent
        # Idempotent scripts (a session's bye, a leave) Redis has not answered:
        # (name, args), sent again at reconnect until it has.
        self.unsent: list[tuple] = []
        # (sid, tag) of recent renames -> the local sessions told already.
        self._renames: dict[tuple, set] = {}
        # The number of the last thing this node was told and handled (its inbox's
        # entry 0-<number>), and whether a catch-up read of it is on its way.
        self.inbox_seen = 0
        # The run of Redis (INFO's run_id) of the last catch-up read answered,
        # and the one this node's inbox numbering was last read in (each feed
        # keeps its own): recovery.py tells a restart since by them.
        self.run = ""
        self.inbox_run = ""
        # Catch-up reads of the rooms after a reconnect: feed -> its events read,
        # delivered together once every room's answer is in (recovery.py).
        self._resumes: dict = {}
        self._resumes_pending = 0
        self.inbox_reading = False
        self.highest = 0       # the highest message id seen (the floor after a data loss)
        self.gaps_filled = 0   # holes filled from a stream (metrics)
        self.inbox_caught_up = 0  # inbox entries read after a reconnect (metrics)
        self.inbox_lost = 0       # inbox entries trimmed before they were read (metrics)
        # The inbox lost entries since the last settling: a dm not found in it
        # may have been delivered all the same.
        self.unsure = False
        self.events_lost = 0   # events a stream no longer had when a hole was filled

    @property
    def room_count(self) -> int:
        """Rooms this node follows (has members in or joining), the lobby included."""
        return len(self.feeds)

    def new_sid(self) -> bytes:
        """A session id unique in the cluster: this node's id and a serial."""
        return f"{self.node}.{next(self._serials)}".encode()

    # ------------------------------------------------------------ completions

    def complete(self, completion) -> list:
        """A cluster completion (a batch of answers and pushes, the link's state),
        else the base's."""
        kind = type(completion)
        if kind is Batch:
            out = self.out.begin()
            for item in completion.completions:
                if type(item) is Pushed:
                    self._pushed(item.channel, item.data)
                else:
                    then = item.effect.then
                    if then is not None:
                        then(item.reply)
            return out
        if kind is LinkChanged:
            out = self.out.begin()
            if completion.up:
                self._resync()
            return out
        if kind is Fenced:
            out = self.out.begin()
            self._fenced(completion.node)
            return out
        if kind is PasswordChecked:
            out = self.out.begin()
            self._password_checked(completion)
            return out
        return super().complete(completion)

    def _pushed(self, channel: bytes, data: bytes) -> None:
        if channel.startswith(_ROOM):
            feed = self.feeds.get(channel[len(_ROOM):].decode())
            if feed is None or feed.resuming:
                return  # unsubscribed meanwhile, or in the catch-up read on its way
            event = room_event(data)
            self._offer(feed, event[0], event)
            return
        if channel != _NODE + self.node.encode():
            return  # a late push for this node's id before a fencing
        number, _, told = data.partition(b" ")
        if self.inbox_reading:
            return  # published before the catch-up read ran: it is in that read
        number = int(number)
        if number == self.inbox_seen + 1:
            self.inbox_seen = number
            self._told(told)
        elif number > self.inbox_seen:  # a hole (a catch-up read that failed): read it
            self._read_inbox()

    def _told(self, data: bytes) -> None:
        """One entry of this node's inbox (scripts/common.lua, `tell`)."""
        kind, _, rest = data.partition(b" ")
        if kind == b"dm":
            self._dm_pushed(*rest.split(b" ", 3))
        elif kind == b"replaced":
            session = self.local_session(rest)
            if session is not None:
                self._close(session, "replaced")
        elif kind == b"evicted":
            self._evicted(*rest.split(b" "))
        elif kind == b"reaped":
            log.error("cluster: this node was reaped (its lease ran out); closing its clients")

    # ---------------------------------------------------------------- feeds

    def _offer(self, feed: Feed, ev: int, event: tuple) -> None:
        self._flow(feed, feed.offer(ev, event))
        self._fill_hole(feed)

    def _fill_hole(self, feed: Feed) -> None:
        """Read the events missing before the held ones from the room's stream."""
        hole = feed.hole()
        if hole is not None:
            first, last = hole
            feed.filling = True
            self.out.effects.append(Command(
                ("XRANGE", feed.log, f"0-{first}", f"0-{last}"),
                lambda reply: self._filled(feed, reply, last)))

    def _filled(self, feed: Feed, reply, last: int | None) -> None:
        """The stream's answer up to `last` (None: its end): offer what it had, skip
        what it no longer has (trimmed), and read the next hole if there is one."""
        feed.filling = False
        if type(reply) is not list:
            return  # the link broke: the resync after it reads the stream again
        self.gaps_filled += 1
        self._catch_up(feed, reply)
        lost = feed.skip_lost(last) if last is not None else 0
        if lost:
            self.events_lost += lost
            log.warning("cluster: %d events of room %s were no longer in its stream",
                        lost, feed.name)
        self._flow(feed, feed.take_ready())
        self._fill_hole(feed)

    def _catch_up(self, feed: Feed, entries: list) -> None:
        for _, fields in entries:
            event = room_event(fields[1])
            self._flow(feed, feed.offer(event[0], event))

    def _flow(self, feed: Feed, ready: list) -> None:
        """Deliver `ready` events in order, each followed by the actions due at it."""
        for event in ready:
            self._deliver(feed, event)
            if feed.actions:
                for action in feed.due(event[0]):
                    action()
        if feed.actions and feed.expected is not None:
            for action in feed.due(feed.expected - 1):
                action()

    def _deliver(self, feed: Feed, event: tuple) -> None:
        """One room event to the local members; the actor's copy (its echo with
        `ref`) is sent where its request is answered."""
        _, sid, tag, msgid, payload = event
        if msgid > self.highest:
            self.highest = msgid
        members = feed.members
        if tag and not msgid:  # a `renamed`: once per member, whatever the rooms shared
            told = self._renames.get((sid, tag))
            if told is None:
                told = self._renames[(sid, tag)] = set()
                if len(self._renames) > RENAMES_KEPT:
                    del self._renames[next(iter(self._renames))]
            members = {member: None for member in members if member not in told}
            told.update(members)
        actor = self.sessions.get(sid)
        # The actor's copy is sent where its request is answered: its echo
        # (awaited by tag) or its own joined/left/renamed.  A say it was told
        # was unavailable that got in after all reaches it as anyone's would.
        if actor is None or actor not in members or (msgid and tag not in self.awaiting):
            if members:
                self.out.effects.append(Deliver(tuple(members), payload))
            return
        others = tuple(member for member in members if member is not actor)
        if others:
            self.out.effects.append(Deliver(others, payload))
        if msgid:
            self._echo(tag, payload)

    def _echo(self, tag: int, payload: bytes) -> None:
        """A say's or dm's own copy to its sender, with its ref; its later requests go on."""
        entry = self.awaiting.pop(tag, None)
        if entry is None:
            return
        session, ref, say = entry
        self.unsettled.pop(tag, None)
        self.messages.accepted += 1
        if session.ended:
            return
        if ref is not None:
            payload = payload[:-1] + b',"ref":' + json.dumps(
                ref, ensure_ascii=False, separators=(",", ":")).encode() + b"}"
        self.out.effects.append(Deliver((session,), payload))
        self.answered(session, say)

    def answered(self, session, say: bool) -> None:
        """A say or dm of `session` has had its answer: what waited for it goes on."""
        if not say:  # a dm parked the session
            session.deferred.popleft()
            self._resume(session)
            return
        count = self.in_flight[session] - 1
        if count:
            self.in_flight[session] = count
        else:
            del self.in_flight[session]
        if session.deferred is not None:
            self._resume(session)

    def _handle(self, session, item) -> None:
        """As ChatCore's, except that while says of the session are in flight
        (pipelined, SAYS_IN_FLIGHT at most) anything but another say that goes
        to Redis waits for their answers: one order per client."""
        if session in self.in_flight and not self._pipelined(session, item):
            self._park(session, item)
            return
        super()._handle(session, item)

    def _pipelined(self, session, item) -> bool:
        """Whether `item` is a say that goes to Redis, not one answered here at once
        (not in that room; a text that may not fit: 6 bytes a character at most
        in JSON, plus the envelope), and no say of the session's waits to be
        settled after a reconnect (its echo would overtake that answer)."""
        return (type(item) is dict and item["type"] == "say"
                and item.get("room", LOBBY).lower() in session.rooms
                and 6 * len(item["text"]) + 1024 <= self.out.max_frame - HISTORY_OVERHEAD
                and not (self.unsettled and self._unsettled_of(session)))

    def local_session(self, sid: bytes):
        """This node's session `sid`, welcomed or being welcomed; None if none."""
        session = self.sessions.get(sid)
        if session is None and sid in self.welcoming:
            session = self.welcoming[sid][0]
        return session

    def _dm_pushed(self, recipient_sid: bytes, sender_sid: bytes, tag: bytes,
                   payload: bytes) -> None:
        recipient = self.sessions.get(recipient_sid)
        sender = self.sessions.get(sender_sid)
        if recipient is not None and recipient is not sender:
            self.out.effects.append(Deliver((recipient,), payload))
        elif recipient_sid in self.welcoming:  # after its welcome
            self.welcoming[recipient_sid][1].append(payload)
        if sender is not None:
            self._echo(int(tag), payload)

    def close_feed_if_unused(self, feed: Feed) -> None:
        """Stop following a room no local session is in or joining (never the lobby)."""
        if feed.members or feed.joining or feed is self.lobby \
                or self.feeds.get(feed.key) is not feed:
            return
        del self.feeds[feed.key]
        self.out.effects.append(Unsubscribe(feed.channel))

    def failed(self, reply) -> str | None:
        """Why a reply is no answer: None if it is one, else the `unavailable` text."""
        if reply is LINK_DOWN or reply is NOT_SENT:
            return "the cluster's Redis is unreachable; try again"
        if type(reply) is hiredis.ReplyError:
            log.error("cluster: Redis answered an error: %s", reply)
            return "the cluster's Redis refused the request; try again"
        return None
