"""A hypothesis state machine of two cluster nodes' cores against the in-memory
fake of Redis (cluster_fake.py): clients say hello, join, say, leave and go
away on either node while Redis runs commands and the nodes read replies and
pushes in random interleavings, and links break.

What must hold (CLUSTER.md, "Tests that prove it"): per room, every
client's ids rise strictly and every id means the same message everywhere;
while a client stays in a room its ids have no hole; every say is answered
exactly once (its echo or an error); a name is held by one session.
"""

import itertools

from hypothesis import event, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from chatd.cluster.core import ClusterCore
from chatd.config import Config
from chatd.core import Session
from cluster_fake import FakeNode, FakeRedis

NAMES = ("ann", "bo", "cy", "di", "ed")
ROOMS = ("r1", "r2", "lobby")


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.redis = FakeRedis()
        settings = Config(store="memory", rate_limit=0).chat_settings()
        self.nodes = [FakeNode(self.redis, ClusterCore(settings, f"n{i}")) for i in range(2)]
        self.clients: list[tuple] = []          # (node, session), in hello order
        self.refs = itertools.count()
        self.says: dict = {}                    # session -> refs of its says

    def _send(self, node, session, message: dict) -> None:
        node.apply(node.core.receive(session, message))

    def _live(self):
        return [(n, s) for n, s in self.clients if not s.ended]

    @initialize()
    def four_members_of_r1(self):
        for i, name in enumerate(("w", "x", "y", "z")):
            self.hello(i % 2, name)
        self.settle()
        for node, session in self.clients:
            self._send(node, session, {"type": "join", "room": "r1", "ref": "jr1"})
        self.settle()

    @rule(node=st.integers(0, 1), name=st.sampled_from(NAMES))
    def hello(self, node, name):
        session = Session()
        self.clients.append((self.nodes[node], session))
        self._send(self.nodes[node], session, {"type": "hello", "name": name, "ref": "h"})

    @precondition(lambda self: self._live())
    @rule(data=st.data(), room=st.sampled_from(ROOMS))
    def join(self, data, room):
        node, session = data.draw(st.sampled_from(self._live()))
        self._send(node, session, {"type": "join", "room": room,
                                   "ref": f"j{room}{next(self.refs)}"})

    @precondition(lambda self: self._live())
    @rule(data=st.data(), room=st.sampled_from(ROOMS))
    def leave(self, data, room):
        node, session = data.draw(st.sampled_from(self._live()))
        self._send(node, session, {"type": "leave", "room": room,
                                   "ref": f"l{room}{next(self.refs)}"})

    @precondition(lambda self: self._live())
    @rule(data=st.data(), room=st.sampled_from(ROOMS), count=st.integers(1, 3))
    def say(self, data, room, count):
        node, session = data.draw(st.sampled_from(self._live()))
        for _ in range(count):
            ref = f"s{next(self.refs)}"
            self.says.setdefault(session, []).append(ref)
            self._send(node, session, {"type": "say", "room": room, "text": ref, "ref": ref})

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def go_away(self, data):
        node, session = data.draw(st.sampled_from(self._live()))
        node.apply(node.core.end(session, "disconnect"))

    @rule(node=st.integers(0, 1), count=st.integers(1, 8))
    def redis_runs(self, node, count):
        connection = self.nodes[node].connection
        for _ in range(min(count, len(connection.inbound))):
            connection.execute()

    @rule(node=st.integers(0, 1), count=st.integers(1, 8))
    def node_reads(self, node, count):
        self.nodes[node].read(count)

    @rule()
    def settle(self):
        """Redis runs everything queued and the nodes read everything, until quiet."""
        for _ in range(1000):
            busy = False
            for node in self.nodes:
                while node.connection.inbound:
                    node.connection.execute()
                    busy = True
                if node.connection.outbound:
                    node.read(len(node.connection.outbound))
                    busy = True
            if not busy:
                return
        raise AssertionError("the nodes and the fake never went quiet")

    @rule(node=st.integers(0, 1))
    def link_breaks(self, node):
        self.nodes[node].break_link()

    # ------------------------------------------------------------ checks

    def _frames(self):
        for node, session in self.clients:
            yield session, node.frames.get(session, [])

    @invariant()
    def one_sequence_per_room(self):
        meaning = {}
        for session, frames in self._frames():
            last = {}
            member = {}
            for frame in frames:
                ref = frame.get("ref", "")
                if frame["type"] == "users" and ref.startswith("j"):
                    member[frame["room"]] = True
                    last.pop(frame["room"], None)
                elif frame["type"] == "left" and ref.startswith("l"):
                    member[frame["room"]] = False
                if frame["type"] != "msg":
                    continue
                room, msgid = frame["room"], frame["id"]
                if room in last:
                    assert msgid > last[room], (room, msgid, last[room])
                    if member.get(room):
                        assert msgid == last[room] + 1, (room, msgid, last[room])
                last[room] = msgid
                text = {k: v for k, v in frame.items() if k != "ref"}
                assert meaning.setdefault((room, msgid), text) == text

    @invariant()
    def one_session_per_name(self):
        holders = {}
        for node in self.nodes:
            for key, session in node.core.users.items():
                assert holders.setdefault(key, session) is session

    def teardown(self):
        self.settle()
        self.one_sequence_per_room()
        delivered = sum(frame["type"] == "msg" for _, frames in self._frames() for frame in frames)
        event(f"msgs delivered: {'0' if not delivered else '1-9' if delivered < 10 else '10+'}")
        event(f"holes filled: {'yes' if any(n.core.gaps_filled for n in self.nodes) else 'no'}")
        for node, session in self.clients:
            if session.ended:
                continue
            answered = [frame.get("ref") for frame in node.frames.get(session, [])
                        if frame.get("ref", "").startswith("s")]
            assert answered == self.says.get(session, [])


TestClusterMachine = ClusterMachine.TestCase
