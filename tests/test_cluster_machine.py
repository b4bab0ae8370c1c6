"""A hypothesis state machine of two cluster nodes' cores against the in-memory
fake of Redis (cluster_fake.py): clients say hello, join, say, dm, leave and
go away on either node while Redis runs commands and the nodes read replies and
pushes in random interleavings, and links break.

What must hold (CLUSTER.md, "Tests that prove it"): per room, every
client's ids rise strictly and every id means the same message everywhere;
while a client stays in a room its ids have no hole; every say is answered
exactly once (its echo or an error), and so is every dm; a dm reaches its
recipient once, each pair's ids rising (also across a broken link: the
node's inbox); a name is held by one session.
"""

import itertools
from collections import deque

import hiredis
from hypothesis import event, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from chatd.cluster.accounts import credential_text
from chatd.cluster.core import ClusterCore
from chatd.cluster.effects import Answered, Batch
from chatd.config import Config
from chatd.core import Credential, PasswordChecked, Session
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
        self.dms: dict = {}                     # session -> refs of its dms
        self.names: dict = {}                   # session -> the name of its hello

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
        self.names[session] = name
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
    @rule(data=st.data(), to=st.sampled_from(NAMES))
    def dm(self, data, to):
        node, session = data.draw(st.sampled_from(self._live()))
        ref = f"d{next(self.refs)}"
        self.dms.setdefault(session, []).append(ref)
        self._send(node, session, {"type": "dm", "to": to, "text": ref, "ref": ref})

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
                if frame["type"] != "msg" or "room" not in frame:
                    continue  # not a room's (a dm)
                room, msgid = frame["room"], frame["id"]
                if room in last:
                    assert msgid > last[room], (room, msgid, last[room])
                    if member.get(room):
                        assert msgid == last[room] + 1, (room, msgid, last[room])
                last[room] = msgid
                text = {k: v for k, v in frame.items() if k != "ref"}
                assert meaning.setdefault((room, msgid), text) == text

    @invariant()
    def each_dm_reaches_its_recipient_once_in_order(self):
        for session, frames in self._frames():
            last = {}
            for frame in frames:
                if frame["type"] != "msg" or "room" in frame or "ref" in frame:
                    continue
                assert frame["to"].lower() == session.key
                assert frame["id"] > last.get(frame["from"], 0), frame
                last[frame["from"]] = frame["id"]

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
        event("inbox entries caught up: "
              f"{'yes' if any(n.core.inbox_caught_up for n in self.nodes) else 'no'}")
        for node, session in self.clients:
            if session.ended:
                continue
            for kind, sent in (("s", self.says), ("d", self.dms)):
                answered = [frame.get("ref") for frame in node.frames.get(session, [])
                            if frame.get("ref", "").startswith(kind)]
                assert answered == sent.get(session, [])
        # An accepted dm to a name only one session ever asked for (and still
        # has) reached it.
        asked = {}
        for node, session in self.clients:
            asked.setdefault(self.names[session], []).append((node, session))
        for node, session in self.clients:
            for frame in node.frames.get(session, []):
                if frame["type"] != "msg" or "room" in frame or "ref" not in frame:
                    continue
                held = asked.get(frame["to"].lower(), [])
                if len(held) == 1 and held[0][1].key == frame["to"].lower() \
                        and not held[0][1].ended and held[0][1] is not session:
                    texts = [m["text"] for m in held[0][0].frames.get(held[0][1], [])
                             if m["type"] == "msg" and "room" not in m]
                    assert texts.count(frame["text"]) == 1, frame


TestClusterMachine = ClusterMachine.TestCase


def four_members() -> ClusterMachine:
    """A machine after its start: w and y on node 0, x and z on node 1."""
    machine = ClusterMachine()
    machine.four_members_of_r1()
    return machine


def test_a_dm_told_while_the_recipients_link_was_down_comes_from_its_inbox():
    machine = four_members()
    (n0, w), (n1, x) = machine.clients[:2]
    machine._send(n0, w, {"type": "dm", "to": "x", "text": "hi", "ref": "d"})
    n0.connection.execute()  # the dm runs; node 1 loses its push with its link
    assert n1.connection.outbound
    n1.break_link()
    machine.settle()
    assert [m["text"] for m in n1.frames[x] if m["type"] == "msg"] == ["hi"]
    assert n1.core.inbox_caught_up == 1
    assert [m["type"] for m in n0.frames[w] if m.get("ref") == "d"] == ["msg"]


def test_a_dm_whose_answer_was_lost_is_settled_from_the_senders_inbox():
    machine = four_members()
    (n0, w), (n1, x) = machine.clients[:2]
    machine._send(n0, w, {"type": "dm", "to": "x", "text": "hi", "ref": "d1"})
    machine._send(n0, w, {"type": "ping", "ref": "p"})  # waits for the dm's answer
    n0.connection.execute()  # it ran; its answer is lost with node 0's link
    n0.break_link()
    machine.settle()
    answers = [m for m in n0.frames[w] if m.get("ref") in ("d1", "p")]
    assert [(m["type"], m["ref"]) for m in answers] == [("msg", "d1"), ("pong", "p")]
    assert [m["text"] for m in n1.frames[x] if m["type"] == "msg"] == ["hi"]
    # One that never ran is refused once the inbox has been read.
    machine._send(n0, w, {"type": "dm", "to": "x", "text": "lost", "ref": "d2"})
    n0.break_link()
    machine.settle()
    assert [m["code"] for m in n0.frames[w] if m.get("ref") == "d2"] == ["unavailable"]
    assert "lost" not in [m["text"] for m in n1.frames[x] if m["type"] == "msg"]


def test_a_leave_cut_by_a_broken_link_is_done_not_refused():
    machine = four_members()
    n0, w = machine.clients[0]
    machine._send(n0, w, {"type": "leave", "room": "r1", "ref": "l"})
    n0.break_link()  # the leave did not run; its answer is LINK_DOWN
    machine.settle()
    assert [m["type"] for m in n0.frames[w] if m.get("ref") == "l"] == ["left"]
    assert w.rooms.keys() == {"lobby"}
    assert machine.redis.sess[machine.redis.users["w"]]["rooms"] == {"lobby"}
    others = [m for node, s in machine.clients[1:] for m in node.frames[s]
              if m["type"] == "left" and m["name"] == "w"]
    assert len(others) == 3  # x, y and z were told once each


def test_a_leave_redis_refuses_is_unavailable_and_not_tried_again():
    machine = four_members()
    n0, w = machine.clients[0]
    machine._send(n0, w, {"type": "leave", "room": "r1", "ref": "l"})
    effect, _, _ = n0.connection.inbound.popleft()  # answered by an error, not run
    n0.apply(n0.core.complete(Batch([Answered(effect, hiredis.ReplyError(
        "OOM command not allowed when used memory > 'maxmemory'"))])))
    assert [m["code"] for m in n0.frames[w] if m.get("ref") == "l"] == ["unavailable"]
    assert "r1" in w.rooms and not n0.core.unsent
    n0.break_link()
    machine.settle()
    assert "r1" in machine.redis.sess[machine.redis.users["w"]]["rooms"]


def test_a_dm_the_trimmed_inbox_cannot_settle_is_said_to_be_unsure():
    machine = four_members()
    n0, w = machine.clients[0]
    machine._send(n0, w, {"type": "dm", "to": "x", "text": "hi", "ref": "d"})
    n0.connection.execute()  # it ran; its answer is lost, and so is its inbox entry
    machine.redis.trim("n0", 1)  # the inbox's cap dropped its entry
    n0.break_link()
    machine.settle()
    assert n0.core.inbox_lost == 1
    [answer] = [m for m in n0.frames[w] if m.get("ref") == "d"]
    assert answer["code"] == "unavailable" and "cannot tell" in answer["message"]


def test_a_dm_before_the_welcomes_place_in_the_lobby_waits_for_the_welcome():
    machine = four_members()
    (n0, w), n1 = machine.clients[0], machine.nodes[1]
    ed = Session()
    machine._send(n1, ed, {"type": "hello", "name": "ed", "ref": "h"})
    n1.connection.execute()  # the name is claimed; its `joined` push is late:
    late = [item for item in n1.connection.outbound if item[0] == "push"]
    n1.connection.outbound = deque(i for i in n1.connection.outbound if i[0] != "push")
    n1.read(len(n1.connection.outbound))
    machine._send(n0, w, {"type": "dm", "to": "ed", "text": "early", "ref": "d"})
    n0.connection.execute()
    n1.read(len(n1.connection.outbound))  # the dm: ed is not welcomed yet
    assert ed not in n1.frames
    n1.connection.outbound.extend(late)
    machine.settle()
    assert [(m["type"], m.get("text")) for m in n1.frames[ed]] == \
        [("welcome", None), ("msg", "early")]


PASSWORD = "correct horse"


def parked_login(machine, node, password=PASSWORD) -> Session:
    """A login for the account ann (in the fake) on `node`, waiting for its
    password check, whose CheckPassword is `node.checks[-1]`."""
    machine.redis.accounts["ann"] = {"name": "Ann", "identity": "a1", "cred": credential_text(
        Credential(2, 1, 1, b"salt", b"hash"))}
    ann = Session()
    machine._send(node, ann, {"type": "hello", "name": "ann", "password": password,
                              "ref": "h"})
    machine.settle()  # the credential read from Redis
    assert node.checks[-1].session is ann and ann not in node.frames
    return ann


def test_a_login_whose_account_changed_during_its_check_is_refused():
    machine = four_members()
    node = machine.nodes[1]
    ann = parked_login(machine, node)
    machine.redis.accounts["ann"]["cred"] = "changed by the operator"
    node.apply(node.core.complete(PasswordChecked(node.checks[-1], True)))
    machine.settle()
    assert [m["code"] for m in node.frames[ann]] == ["auth_failed"]
    good = parked_login(machine, node)
    node.apply(node.core.complete(PasswordChecked(node.checks[-1], True)))
    machine.settle()
    welcome = node.frames[good][0]
    assert (welcome["type"], welcome["name"], welcome["account"]) == ("welcome", "Ann", True)


def test_a_login_the_hasher_cannot_take_or_the_link_cuts_is_unavailable():
    machine = four_members()
    node = machine.nodes[1]
    ann = parked_login(machine, node)
    node.apply(node.core.complete(PasswordChecked(node.checks[-1], None)))
    [refused] = node.frames[ann]
    assert refused["code"] == "unavailable" and "logins being checked" in refused["message"]
    cut = Session()
    machine._send(node, cut, {"type": "hello", "name": "ann", "password": PASSWORD,
                              "ref": "h"})
    node.break_link()  # the credential's read is cut
    machine.settle()
    assert [m["code"] for m in node.frames[cut]] == ["unavailable"]
    assert len(node.checks) == 1  # nothing was hashed for it


def test_a_push_between_two_rooms_catch_ups_is_delivered_after_them():
    """After a reconnect the lobby's catch-up is answered, then x says in the
    lobby, then r1's catch-up is answered: the say (newer than the lobby's
    read) reaches w once, after what the read had, not dropped as if it were
    in the read."""
    machine = four_members()
    (n0, w), (n1, x) = machine.clients[:2]
    n0.break_link()
    inbound = n0.connection.inbound
    while True:  # up to the lobby's catch-up read
        effect, kind, args = inbound[0]
        n0.connection.execute()
        if kind == "script" and args[0] == "resume" and args[1][1] == "lobby":
            break
    machine._send(n1, x, {"type": "say", "text": "between", "ref": "s"})
    n1.connection.execute()  # published to node 0 after its lobby read
    machine.settle()
    assert [m["text"] for m in n0.frames[w] if m["type"] == "msg"] == ["between"]
