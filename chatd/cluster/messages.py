"""The cluster node's say and dm: numbered by Redis, answered by their own echo.

A part of ClusterCore (a mixin, as requests.py): a dm parks its session
until its echo comes back; a client's consecutive says are pipelined (up to
SAYS_IN_FLIGHT), the one link keeping their order.
"""

import json
from collections import deque
from functools import partial

from framing import encode_payload
from framing.paging import HISTORY_OVERHEAD

from .effects import Script
from .feeds import Feed
from .link import LINK_DOWN, NOT_SENT

# A client's says sent to Redis before the first is answered: they keep their
# order on the one link, so they need not wait for each other; beyond this
# many the client's later requests wait (and its socket is not read).
SAYS_IN_FLIGHT = 32
# The most an id and a ts add to a msg's JSON ("id":N,"ts":S.U).
_ID_TS_BYTES = 64


class ClusterMessages:
    """ClusterCore's handlers of say and dm (see the module docstring)."""

    def _labelled(self, session, message: dict, name: str, args, ref,
                  feed: Feed | None = None) -> None:
        """A say (in `feed`) or dm: numbered by Redis, answered by its own echo.

        A dm parks the session until then; says are pipelined (core.py,
        SAYS_IN_FLIGHT): what is not a say waits for them instead.
        """
        tag = next(self._tags)
        say = feed is not None
        self.awaiting[tag] = (session, ref, say)
        if not say:
            self._park(session, message)
        elif self.in_flight.setdefault(session, 0) + 1 >= SAYS_IN_FLIGHT:
            self.in_flight[session] += 1
            session.deferred = deque()  # read no more until one is answered
        else:
            self.in_flight[session] += 1
        self.out.effects.append(Script(name, (self.sid_of[session], tag, *args),
                                       partial(self._labelled_answered, session, tag, feed,
                                               message)))

    def _labelled_answered(self, session, tag: int, feed: Feed | None, message: dict,
                           reply) -> None:
        if type(reply) is list and reply[0] == b"ok":
            return  # its echo comes from the subscription
        if tag in self.awaiting and (
                reply is LINK_DOWN or (reply is NOT_SENT and self._unsettled_of(session))):
            # It may have run (the room's stream or this node's inbox will say),
            # or an earlier say of this client is waiting for that: answered in
            # order after the resync.
            self.unsettled[tag] = None
            return
        entry = self.awaiting.pop(tag, None)
        if entry is None or session.ended:
            return
        ref = entry[1]
        why = self.failed(reply)
        if why is not None:
            code, text = "unavailable", why
        elif reply[0] == b"no_such_user":
            code, text = "no_such_user", f"no user {message['to']!r}"
        elif reply[0] == b"not_in_room":
            code, text = "not_in_room", "you are not in that room"
        else:
            code, text = "unavailable", "this node is rejoining the cluster; try again"
        if feed is not None and type(reply) is list and len(reply) > 1:
            # After the echoes of this client's earlier says in that room.
            feed.at(reply[1], partial(self._refused_at, session, code, text, ref))
            self._flow(feed, [])
            return
        self._refused_at(session, code, text, ref, say=feed is not None)

    def _unsettled_of(self, session) -> bool:
        """Whether a say of `session` is waiting to be settled after a reconnect."""
        return any(self.awaiting.get(tag, (None,))[0] is session for tag in self.unsettled)

    def _refused_at(self, session, code: str, text: str, ref, say: bool = True) -> None:
        if session.ended:
            return
        self.out.error(session, code, text, ref)
        self.answered(session, say)

    def _say(self, session, message: dict, ref) -> None:
        feed = self._joined_feed(session, message)
        if feed is None:
            return
        head = encode_payload({"type": "msg", "room": feed.name, "from": session.name,
                               "text": message["text"]})[:-1]
        if self._too_long(session, head, ref):
            return
        self._labelled(session, message, "say", (feed.key, head), ref, feed)

    def _dm(self, session, message: dict, ref) -> None:
        text = json.dumps(message["text"], ensure_ascii=False, separators=(",", ":")).encode()
        if self._too_long(session, text + b"x" * 64, ref):
            return
        self._labelled(session, message, "dm", (message["to"].lower(), text), ref)

    def _too_long(self, session, head: bytes, ref) -> bool:
        largest = self.out.max_frame - HISTORY_OVERHEAD - _ID_TS_BYTES
        if len(head) > largest:
            self.out.error(session, "bad_text", f"message of {len(head)} bytes; at most "
                           f"{largest} fit max_frame", ref)
            return True
        return False

