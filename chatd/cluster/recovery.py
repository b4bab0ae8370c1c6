"""What a cluster node does when its link to Redis comes back, or its lease is gone.

A part of ClusterCore (a mixin, as requests.py): resubscribe every room it
follows and read what it missed from each room's stream (resume.lua), read
what it was told meanwhile from its inbox (inbox.lua), send again the
idempotent scripts whose answer was lost, then settle the says and dms whose
answer was lost (CLUSTER.md, "Failure").

Both reads also notice a Redis that lost recent data (an `everysec` AOF
after a crash of its machine, a failover to a replica that was behind): a
room's events, or this node's inbox numbers, below what this node already
handled.  The script that notices sets them on from there and raises the
floor above every id this node saw (`loss_floor`), so no id is handed out
twice (common.lua, `counter`); the node logs it.  A Redis that lost all its
data is noticed at connect instead (epoch.lua, node.py) and fences every
node.
"""

import logging
from functools import partial

from .effects import Command, Script, Subscribe
from .feeds import Feed
from .link import LINK_DOWN, NOT_SENT

log = logging.getLogger("chatd")


class ClusterRecovery:
    """ClusterCore's catch-up after a reconnect, and its fencing (see the module
    docstring)."""

    def loss_floor(self) -> int:
        """A floor above every id handed out that this node knows of: the highest
        it saw plus `history`, and at least the Unix time in ms (ids of rooms
        it never saw are below that, unless a room took more than a message
        per ms since the last floor)."""
        return max(self.highest + self.settings.history, int(self.wall_clock() * 1000))

    def _resync(self) -> None:
        """The link is up again: resubscribe every feed and read what it missed
        from its stream, read what this node was told meanwhile from its
        inbox; then settle the says and dms whose answer was lost."""
        floor = self.loss_floor()
        for feed in self.feeds.values():
            self.out.effects.append(Subscribe(feed.channel))
            if feed.expected is None:
                self.out.effects.append(Command(
                    ("GET", "chatd:ev:" + feed.key),
                    lambda reply, feed=feed: self._started(feed, reply)))
            else:
                feed.filling = True
                self.out.effects.append(Script(
                    "resume", (self.node, feed.key, feed.expected - 1, floor),
                    partial(self._resumed, feed)))
        self.inbox_reading = True
        self.out.effects.append(Script("inbox", (self.node, self.inbox_seen, floor),
                                       partial(self._inbox_read, self.node)))
        unsent, self.unsent = self.unsent, []
        for name, args in unsent:
            self.must_run(name, args)
        if self.unsettled:
            # Answered after every catch-up above (one connection, in order): a
            # say whose echo was not in its room's stream was not accepted.
            self.out.effects.append(Command(("PING",), self._settle))

    def _resumed(self, feed: Feed, reply) -> None:
        if type(reply) is not list:
            self._filled(feed, reply, None)  # the link broke again, or an error
            return
        went_back, entries = reply
        if went_back:
            log.error("cluster: Redis lost recent data: room %s's events went back "
                      "below %d; they go on from there, and ids jump", feed.name,
                      feed.expected - 1)
        self._filled(feed, entries, None)

    def _inbox_read(self, node: str, reply) -> None:
        """What this node was told while it was disconnected, after the last entry
        it handled (a read for a node id given up since is dropped)."""
        if node != self.node or reply is LINK_DOWN or reply is NOT_SENT:
            return  # the next resync reads again
        self.inbox_reading = False
        if self.failed(reply) is not None:  # an error answer (logged): nothing read
            self.unsure = True
            return
        told, entries, went_back = reply
        if went_back:
            log.error("cluster: Redis lost recent data: this node's inbox numbers went "
                      "back below %d; they go on from there, and ids jump",
                      self.inbox_seen)
        missing = told - self.inbox_seen - len(entries)
        if missing > 0:
            # Told more than the inbox keeps while cut off: the oldest are gone.
            self.inbox_lost += missing
            self.unsure = True
            log.error("cluster: %d of what this node was told while it was disconnected "
                      "were no longer in its inbox (past its cap, common.lua): dms are "
                      "missing", missing)
        self.inbox_caught_up += len(entries)
        for entry, fields in entries:
            self.inbox_seen = int(entry.partition(b"-")[2])
            self._told(fields[1])

    def _started(self, feed: Feed, reply) -> None:
        if type(reply) is bytes or reply is None:
            self._flow(feed, feed.start_at(int(reply or 0)))

    def _settle(self, reply) -> None:
        if self.failed(reply) is not None:
            return  # the link broke again: the next resync settles them
        for tag in list(self.unsettled):
            entry = self.awaiting.pop(tag, None)
            if entry is not None and not entry[0].ended:
                session, ref, say = entry
                if self.unsure and not say:
                    text = ("the cluster cannot tell whether this message was delivered "
                            "(this node was cut off too long); see history before "
                            "sending it again")
                else:
                    text = ("the cluster lost this message on its way to Redis; nothing "
                            "was accepted, try again")
                self.out.error(session, "unavailable", text, ref)
                self.answered(session, say)
        self.unsettled.clear()
        self.unsure = False

    def _fenced(self, node: str) -> None:
        """This node was reaped (or Redis lost its data): its sessions are no longer
        the cluster's. Close them (`bye` shutdown); serve on as `node`."""
        for session in list(self.sid_of):
            if not session.ended:
                self._close(session, "shutdown")
        self.unsent.clear()
        self.node = node
        self.inbox_seen, self.inbox_reading = 0, False  # a new inbox
