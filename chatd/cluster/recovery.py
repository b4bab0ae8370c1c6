"""What a cluster node does when its link to Redis comes back, or its lease is gone.

A part of ClusterCore (a mixin, as requests.py): resubscribe every room it
follows and read what it missed from each room's stream (resume.lua), read
what it was told meanwhile from its inbox (inbox.lua), drop the sessions
and memberships Redis no longer has (sessions.lua), send again the
idempotent scripts whose answer was lost, then settle the says and dms whose
answer was lost (CLUSTER.md, "Failure").

A Redis that restarted (or failed over) may have lost its last writes (an
`everysec` AOF after a crash of its machine, a replica that was behind).
Every node back from another run of Redis raises the id floor (epoch.lua),
so no message id is handed out twice; the catch-up reads say when a room's
events or this node's inbox numbers were handed out again after such a
loss (the numbers past where they stood at their first write in a run
since the one the node read them in are new), and the node takes those as
new.  A Redis that
lost all its data is noticed at connect (no epoch) and fences every node.
"""

import logging
from collections import deque
from functools import partial

from .effects import Command, Script, Subscribe
from .feeds import Feed, room_event
from .link import LINK_DOWN, NOT_SENT

log = logging.getLogger("chatd")


class ClusterRecovery:
    """ClusterCore's catch-up after a reconnect, and its fencing (see the module
    docstring)."""

    def loss_floor(self) -> int:
        """A floor above every id this node saw: the highest plus `history`
        (epoch.lua takes at least Redis' clock in ms besides)."""
        return self.highest + self.settings.history

    def _resync(self) -> None:
        """The link is up again: resubscribe every feed and read what it missed
        from its stream, read what this node was told meanwhile from its
        inbox, match its sessions to Redis'; then settle the says and dms
        whose answer was lost."""
        self._resumes, self._resumes_pending = {}, 0
        for feed in self.feeds.values():
            self.out.effects.append(Subscribe(feed.channel))
            if feed.expected is None:
                self.out.effects.append(Script("start", (feed.key,),
                                               partial(self._started, feed)))
            else:
                feed.filling = feed.resuming = True
                self._resumes_pending += 1
                self.out.effects.append(Script(
                    "resume", (self.node, feed.key, feed.expected - 1, feed.run),
                    partial(self._resumed, feed, feed.expected - 1)))
        self._read_inbox()
        self.out.effects.append(Script("sessions", (self.node,),
                                       partial(self._sessions_read, self.node)))
        unsent, self.unsent = self.unsent, []
        for name, args in unsent:
            self.must_run(name, args)
        if self.unsettled:
            # Answered after every catch-up above (one connection, in order): a
            # say whose echo was not in its room's stream was not accepted.
            self.out.effects.append(Command(("PING",), self._settle))

    def _resumed(self, feed: Feed, seen: int, reply) -> None:
        """The catch-up read of a room this node had delivered up to ev `seen`.
        Pushes from now on are later than it: they are held behind what it
        read (`filling` keeps the feed from asking for the hole).  What it
        read waits until every room's is in, then all go together."""
        feed.resuming = False
        self._resumes_pending -= 1
        if type(reply) is not list:
            self._filled(feed, reply, None)  # the link broke again, or an error
        else:
            start, entries, back, run = reply
            feed.run = self.run = run.decode()
            if back:
                log.error("cluster: Redis restarted without its last writes: room %s's "
                          "events after %d were lost; %s", feed.name, start,
                          "the numbers given again are taken as new" if start < seen
                          else "its numbering goes on after them")
            if start < seen:
                feed.expected = start + 1
                feed.held.clear()  # numbers of before: what is new is in `entries`
            self._resumes[feed] = deque(room_event(fields[1]) for _, fields in entries)
        if not self._resumes_pending:
            self._merge_resumes()

    def _merge_resumes(self) -> None:
        """Deliver the rooms' catch-ups: each room in its order, and across rooms
        this node's says whose answer was lost in the order they were sent, so
        a client's echoes keep its requests' order (one link keeps it live;
        catch-ups come room by room)."""
        queues, self._resumes = self._resumes, {}
        # This node's says answered by none of these yet, in the order sent.
        order = [tag for tag in self.unsettled if self.awaiting.get(tag, (0, 0, False))[2]]
        while queues:
            progressed = False
            for feed, queue in list(queues.items()):
                while queue:
                    event = queue[0]
                    tag = event[2]
                    ours = event[3] and tag in self.awaiting \
                        and self.sessions.get(event[1]) is self.awaiting[tag][0]
                    if ours and tag in order:
                        if tag != order[0]:
                            break  # an earlier say of this node's is answered first
                        order.pop(0)
                    queue.popleft()
                    self._flow(feed, feed.offer(event[0], event))
                    progressed = True
                if not queue:
                    del queues[feed]
                    self._filled(feed, [], None)
                    progressed = True
            if not progressed:
                order.pop(0)  # in no room's catch-up: not accepted (settled after)

    def _read_inbox(self) -> None:
        """Read what this node was told after the last number it handled; pushes
        are ignored until the answer (they are in it)."""
        self.inbox_reading = True
        self.out.effects.append(Script("inbox", (self.node, self.inbox_seen, self.inbox_run),
                                       partial(self._inbox_read, self.node)))

    def _sessions_read(self, node: str, reply) -> None:
        """Redis' view of this node's sessions: end those it no longer has (their
        claim lost with Redis' last writes, or reaped; `bye` shutdown: the
        client comes back with a new hello), take the session out of rooms
        Redis lost its joins to (`left`), and leave again the rooms Redis
        lost its leaves from."""
        if node != self.node or type(reply) is not list:
            return  # the next resync reads again
        rooms = {reply[i]: {room.decode() for room in reply[i + 1]}
                 for i in range(0, len(reply), 2)}
        for sid, session in [*self.sessions.items(),
                             *((sid, entry[0]) for sid, entry in self.welcoming.items())]:
            if session.ended:
                continue
            if sid not in rooms:
                log.warning("cluster: Redis no longer has session %s; closing it", sid)
                self._close(session, "shutdown")
                continue
            for key, feed in list(session.rooms.items()):
                if key not in rooms[sid]:
                    feed.members.pop(session, None)
                    del session.rooms[key]
                    self.out.reply(session, {"type": "left", "room": feed.name,
                                             "name": session.name})
                    self.close_feed_if_unused(feed)
            if session.name is not None:
                for key in rooms[sid] - session.rooms.keys():
                    self.must_run("leave", (sid, key))

    def _inbox_read(self, node: str, reply) -> None:
        """What this node was told while it was disconnected, after the last entry
        it handled (a read for a node id given up since is dropped)."""
        if node != self.node or reply is LINK_DOWN or reply is NOT_SENT:
            return  # the next resync reads again
        self.inbox_reading = False
        if self.failed(reply) is not None:  # an error answer (logged): nothing read
            self.unsure = True
            return
        start, told, entries, back, run = reply
        self.inbox_run = self.run = run.decode()
        if back:
            log.error("cluster: Redis restarted without its last writes: what this node "
                      "was told after %d was lost; %s", start,
                      "the numbers given again are taken as new"
                      if start < self.inbox_seen else "its numbering goes on after it")
            self.inbox_seen = start
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
        if type(reply) is list:
            self.run = reply[1].decode()
            self._flow(feed, feed.start_at(reply[0], self.run))

    def _settle(self, reply) -> None:
        """After every catch-up of a reconnect: the says and dms whose answer was
        lost and whose echo no catch-up found were not accepted."""
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
        self.inbox_seen, self.inbox_reading, self.inbox_run = 0, False, ""  # a new inbox
