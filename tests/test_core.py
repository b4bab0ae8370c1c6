"""The sans-IO chat core, without sockets: examples and a stateful model test."""

import json
import os
import tempfile

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize,
                                 invariant, multiple, rule)

import framing
from chatd.config import Config
from chatd.core import (Account, AccountsLoaded, ChatCore, Close, Credential, Deliver,
                        HistoryLoaded, LoadHistory, LoadRoom, RoomLoaded, Session,
                        StoreMessage)
from chatd.store import MEMORY, open_store


class Harness:
    """Drives a ChatCore and decodes the effects it returns: who gets what, who is closed.

    `store` is MEMORY or a SQLite file's path: then the store's real Writer
    runs the store effects on that file, synchronously, after each call
    (what the worker thread does once per loop turn), and its answers go
    back in through `complete`.
    """

    def __init__(self, store=MEMORY, **settings):
        settings.setdefault("rate_limit", 0)
        self.clock = 1000.0
        self.config = Config(store=store, **settings)
        self.inbox = {}
        self.closed = {}
        self.start()

    def start(self):
        """(Re)start the core on the configured store: every session is gone."""
        config = self.config
        self.store = open_store(config.store, config.retention, config.history)
        self.core = ChatCore(config.chat_settings(), self.store.epoch, self.store.durable,
                             self.store.lobby, wall_clock=lambda: 1.7e9,
                             clock=lambda: self.clock)
        self.max_frame = self.core.settings.max_frame

    def restart(self):
        """A clean shutdown (the writer closes the file) and a new start."""
        if self.store.writer is not None:
            assert self.store.writer.close()
        self.inbox = {}
        self.start()

    def connect(self, name=None):
        client = Session()
        self.inbox[client] = []
        if name is not None:
            self.send(client, {"type": "hello", "name": name})
            assert self.inbox[client][-1]["type"] == "welcome", self.inbox[client]
        return client

    def send(self, client, message):
        """Feed one message through the codec, as the shell would."""
        items = framing.Decoder(self.max_frame, framing.REQUESTS).feed(
            framing.encode(message))
        self.feed(client, items[0])

    def feed(self, client, item):
        self.apply(self.core.receive(client, item))

    def end(self, client, reason):
        """The client's connection is gone, as the protocol would report it."""
        self.apply(self.core.end(client, reason))

    def apply(self, effects):
        rows, loads = [], []
        for effect in effects:
            if type(effect) is Deliver:
                assert 0 < len(effect.payload) <= self.max_frame
                message = json.loads(effect.payload)
                for recipient in effect.recipients:
                    self.inbox[recipient].append(message)
            elif type(effect) is Close:
                self.closed[effect.session] = effect.reason
            elif type(effect) is StoreMessage:
                rows.append(effect)
            else:
                assert type(effect) in (LoadRoom, LoadHistory)
                loads.append(effect)
        writer = self.store.writer
        if rows or loads:
            assert writer is not None, "a memory store asked for store effects"
            assert writer.write(rows)[2] is None
        for load in loads:
            if type(load) is LoadRoom:
                self.apply(self.core.complete(RoomLoaded(load.room,
                                                         *writer.load_room(load.key))))
            else:
                self.apply(self.core.complete(HistoryLoaded(load.session, writer.load_history(
                    load.key, load.since, load.limit))))

    def take(self, client):
        frames, self.inbox[client] = self.inbox[client], []
        return frames


@pytest.fixture
def chat():
    return Harness()


def test_welcome_lists_the_newcomer_first_and_others_hear_joined(chat):
    alice = chat.connect("alice")
    bob = chat.connect("bob")
    welcome = chat.take(bob)[0]
    assert welcome["users"] == ["bob", "alice"] and welcome["user_count"] == 2
    assert welcome["rooms"] == ["lobby"] and len(welcome["token"]) >= 22
    assert chat.take(alice)[-1] == {"type": "joined", "room": "lobby", "name": "bob"}


def test_the_end_of_a_session_tells_its_rooms_once_and_frees_its_name(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.send(alice, {"type": "join", "room": "den"})
    chat.send(bob, {"type": "join", "room": "den"})
    chat.take(alice), chat.take(bob)
    chat.end(alice, "disconnect")
    chat.end(alice, "disconnect")  # a second end changes nothing
    assert chat.take(bob) == [
        {"type": "left", "room": "lobby", "name": "alice", "reason": "disconnect"},
        {"type": "left", "room": "den", "name": "alice", "reason": "disconnect"}]
    assert chat.take(alice) == []
    chat.connect("alice")  # the name is free again


def test_say_reaches_every_member_with_ids_counting_up(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    for text in ("one", "two"):
        chat.send(alice, {"type": "say", "text": text})
    for client in (alice, bob):
        assert [(m["id"], m["text"], m["from"]) for m in chat.take(client)] == [
            (1, "one", "alice"), (2, "two", "alice")]


def test_sender_echo_carries_ref_others_do_not(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    chat.send(alice, {"type": "say", "text": "x", "ref": "r1"})
    assert chat.take(alice)[0]["ref"] == "r1"
    assert "ref" not in chat.take(bob)[0]


def test_from_cannot_be_forged(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(bob)
    chat.send(alice, {"type": "say", "text": "x", "from": "bob"})
    assert chat.take(bob)[0]["from"] == "alice"


def test_only_hello_ping_quit_before_welcome(chat):
    client = chat.connect()
    chat.send(client, {"type": "say", "text": "x", "ref": 5})
    chat.send(client, {"type": "ping", "data": [1]})
    assert chat.take(client) == [
        {"type": "error", "code": "not_welcome", "message": "send hello first", "ref": 5},
        {"type": "pong", "data": [1]}]


def test_names_are_unique_case_insensitively_and_token_reclaims(chat):
    alice = chat.connect("Alice")
    token = chat.take(alice)[0]["token"]
    intruder = chat.connect()
    chat.send(intruder, {"type": "hello", "name": "aLiCe"})
    chat.send(intruder, {"type": "hello", "name": "alice", "token": "wrong"})
    assert [m["code"] for m in chat.take(intruder)] == ["name_taken", "name_taken"]
    chat.send(intruder, {"type": "hello", "name": "alice", "token": token})
    assert chat.take(intruder)[0]["type"] == "welcome"
    assert chat.closed[alice] == "replaced"


def test_dm_reaches_only_the_recipient_and_the_sender(chat):
    alice, bob, carol = (chat.connect(n) for n in ("alice", "bob", "carol"))
    for c in (alice, bob, carol):
        chat.take(c)
    chat.send(alice, {"type": "dm", "to": "BOB", "text": "psst"})
    expected = {"type": "msg", "to": "bob", "from": "alice", "text": "psst", "id": 1,
                "ts": 1.7e9}
    assert chat.take(alice) == [expected] and chat.take(bob) == [expected]
    assert chat.take(carol) == []
    chat.send(alice, {"type": "dm", "to": "nobody", "text": "x"})
    assert chat.take(alice)[0]["code"] == "no_such_user"


def test_join_leave_and_room_lifecycle(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    chat.send(alice, {"type": "join", "room": "dev"})
    assert chat.take(alice) == [{"type": "joined", "room": "dev", "name": "alice"},
                                {"type": "users", "room": "dev", "names": ["alice"]}]
    chat.send(bob, {"type": "say", "room": "dev", "text": "x"})
    assert chat.take(bob)[0]["code"] == "not_in_room"
    chat.send(alice, {"type": "say", "room": "dev", "text": "first"})
    chat.send(alice, {"type": "leave", "room": "dev"})
    assert chat.take(alice)[-1] == {"type": "left", "room": "dev", "name": "alice"}
    chat.send(bob, {"type": "who", "room": "dev"})
    assert chat.take(bob)[0]["code"] == "no_such_room"  # empty rooms vanish
    # ... but a room that comes back keeps its ids and history.
    chat.send(bob, {"type": "join", "room": "DEV"})
    chat.send(bob, {"type": "say", "room": "dev", "text": "second"})
    assert chat.take(bob)[-1]["id"] == 2


def test_presence_stops_above_the_limit_but_the_actor_is_told():
    chat = Harness(presence_limit=2)
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    carol = chat.connect("carol")
    assert chat.take(alice) == []  # lobby now has 3 > 2 members
    chat.send(carol, {"type": "join", "room": "lobby"})
    chat.send(carol, {"type": "leave", "room": "lobby"})
    assert chat.take(carol)[-1] == {"type": "left", "room": "lobby", "name": "carol"}
    assert chat.take(alice) == [] and chat.take(bob) == []


def test_nick_is_announced_to_room_mates_and_self(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    chat.send(alice, {"type": "nick", "name": "BOB"})
    assert chat.take(alice)[0]["code"] == "name_taken"
    chat.send(alice, {"type": "nick", "name": "ally"})
    renamed = {"type": "renamed", "old": "alice", "new": "ally"}
    assert chat.take(alice) == [renamed] and chat.take(bob) == [renamed]
    chat.send(alice, {"type": "say", "text": "x"})
    assert chat.take(bob)[0]["from"] == "ally"


def test_history_since_limit_and_more_within_max_frame():
    chat = Harness(max_frame=8192)
    alice = chat.connect("alice")
    for i in range(10):
        chat.send(alice, {"type": "say", "text": f"{i}" * 2000})
    chat.take(alice)
    chat.send(alice, {"type": "history", "room": "lobby", "limit": 3})
    answer = chat.take(alice)[0]
    assert [m["id"] for m in answer["messages"]] == [8, 9, 10] and "more" not in answer
    chat.send(alice, {"type": "history", "room": "lobby", "since": 2, "ref": 7})
    answer = chat.take(alice)[0]
    ids = [m["id"] for m in answer["messages"]]
    assert ids[0] == 3 and ids == list(range(3, 3 + len(ids))) and len(ids) < 8
    assert answer["more"] is True and answer["ref"] == 7


def test_history_ring_keeps_the_newest():
    chat = Harness(history=3)
    alice = chat.connect("alice")
    for i in range(5):
        chat.send(alice, {"type": "say", "text": str(i)})
    chat.take(alice)
    chat.send(alice, {"type": "history", "room": "lobby", "since": 0})
    assert [m["id"] for m in chat.take(alice)[0]["messages"]] == [3, 4, 5]


def test_rate_limit_drops_and_refills():
    chat = Harness(rate_limit=2, rate_burst=2)
    alice = chat.connect("alice")  # the hello took one token
    chat.take(alice)
    for _ in range(2):
        chat.send(alice, {"type": "say", "text": "x", "ref": 1})
    codes = [m.get("code", m["type"]) for m in chat.take(alice)]
    assert codes == ["msg", "rate_limited"]
    chat.clock += 1.0
    chat.send(alice, {"type": "say", "text": "y"})
    chat.send(alice, {"type": "quit"})  # never limited
    assert chat.take(alice)[0]["text"] == "y" and chat.closed[alice] == "quit"


def test_bad_messages_then_abuse():
    chat = Harness(max_bad_messages=3)
    client = chat.connect()
    for _ in range(3):
        chat.feed(client, framing.BadMessage("bad"))
    assert [m["code"] for m in chat.take(client)] == ["bad_message"] * 4
    assert chat.closed[client] == "abuse"


def test_frame_error_closes_with_its_code(chat):
    client = chat.connect("alice")
    chat.take(client)
    chat.feed(client, framing.FrameTooLarge("too big"))
    assert chat.take(client)[0]["code"] == "frame_too_large"
    assert chat.closed[client] == "frame_too_large"


def test_quit_tells_the_others_with_the_reason(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    chat.send(alice, {"type": "quit", "reason": "lunch"})
    assert chat.closed[alice] == "quit"
    assert chat.take(bob) == [{"type": "left", "room": "lobby", "name": "alice",
                               "reason": "lunch"}]
    assert chat.take(alice) == []
    chat.send(chat.connect(), {"type": "hello", "name": "alice"})  # the name is free


@pytest.mark.parametrize("mode", ["open", "off"])
def test_an_operators_new_account_ends_the_guest_holding_its_name_unless_accounts_are_off(
        mode):
    chat = Harness(accounts=mode)
    guest = chat.connect("Alice")
    chat.take(guest)
    credential = Credential(n=2, r=1, p=1, salt=b"s" * 16, hash=b"h" * 32)
    chat.apply(chat.core.complete(AccountsLoaded({"alice": Account("alice", credential,
                                                                   1.7e9)})))
    if mode == "off":  # nobody could log in to it: the guest keeps the name
        assert guest not in chat.closed and chat.take(guest) == []
        chat.send(guest, {"type": "ping", "ref": 1})
        assert chat.take(guest)[-1]["type"] == "pong"
    else:
        assert chat.take(guest)[-1]["code"] == "name_registered"
        assert chat.closed[guest] == "replaced"


def test_huge_pong_becomes_bad_message():
    chat = Harness(max_frame=8192)
    client = chat.connect()
    chat.feed(client, {"type": "ping", "data": "x" * 8180, "ref": 1})
    assert chat.take(client)[0]["code"] == "bad_message"


def test_paged_users_and_rooms():
    chat = Harness(max_frame=8192, presence_limit=0)
    clients = [chat.connect(f"user{i:028d}") for i in range(400)]
    chat.send(clients[0], {"type": "who"})
    pages = chat.take(clients[0])[1:]
    assert len(pages) > 1 and all(p["more"] for p in pages[:-1]) and "more" not in pages[-1]
    assert sum((p["names"] for p in pages), []) == [f"user{i:028d}" for i in range(400)]


# ------------------------------------------------------------- stateful model

NAMES = ["ann", "Bob", "cy", "dee", "ED"]
ROOMS = ["lobby", "dev", "ops"]


class ChatModel(RuleBasedStateMachine):
    """Random connects, joins, leaves, says, dms, renames and quits.

    The model: who is online under which name, who is in which room, and
    each room's next id.  Invariants: every member gets every room message
    once and in id order; no non-member gets it; names stay unique
    case-insensitively.
    """

    online = Bundle("online")

    @initialize()
    def start(self):
        self.chat = Harness()
        self.names = {}        # client -> name
        self.rooms = {}        # client -> set of room keys
        self.next_id = {}      # room key -> next id
        self.last_seen = {}    # (client, room) -> last id received
        self.said = {}         # room key -> [(id, text)] in order

    def _drain_and_check(self):
        for client, frames in self.chat.inbox.items():
            for message in frames:
                if message["type"] == "msg" and "room" in message:
                    room = message["room"].lower()
                    assert room in self.rooms.get(client, ()), "non-member got a msg"
                    last = self.last_seen.get((client, room))
                    if last is not None:
                        assert message["id"] == last + 1, "gap or reorder"
                    self.last_seen[(client, room)] = message["id"]
            frames.clear()

    @rule(target=online, name=st.sampled_from(NAMES))
    def connect(self, name):
        client = self.chat.connect()
        self.chat.send(client, {"type": "hello", "name": name})
        reply = self.chat.inbox[client][-1]
        taken = any(n.lower() == name.lower() for n in self.names.values())
        assert reply["type"] == ("error" if taken else "welcome")
        if taken:
            self.chat.inbox.pop(client)
            return multiple()
        self.names[client] = name
        self.rooms[client] = {"lobby"}
        self._drain_and_check()
        return client

    @rule(client=online, room=st.sampled_from(ROOMS))
    def join(self, client, room):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "join", "room": room})
        self.rooms[client].add(room)
        for (who, key) in list(self.last_seen):
            if who is client and key == room:
                del self.last_seen[(who, key)]
        self._drain_and_check()

    @rule(client=online, room=st.sampled_from(ROOMS))
    def leave(self, client, room):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "leave", "room": room})
        self.rooms[client].discard(room)
        self.last_seen.pop((client, room), None)
        self._drain_and_check()

    @rule(client=online, room=st.sampled_from(ROOMS), text=st.text(min_size=1, max_size=5)
          .filter(lambda t: "\x00" not in t and not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
    def say(self, client, room, text):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "say", "room": room, "text": text})
        if room in self.rooms[client]:
            expected_id = self.next_id.get(room, 1)
            self.next_id[room] = expected_id + 1
            self.said.setdefault(room, []).append((expected_id, text))
            members = [c for c, rooms in self.rooms.items() if room in rooms]
            for member in members:
                got = [m for m in self.chat.inbox[member] if m["type"] == "msg"]
                assert [(m["id"], m["text"], m["from"]) for m in got] == [
                    (expected_id, text, self.names[client])]
        else:
            assert self.chat.inbox[client][-1]["code"] in ("not_in_room", "no_such_room")
        self._drain_and_check()

    @rule(sender=online, recipient=online, text=st.sampled_from(["hi", "yo"]))
    def dm(self, sender, recipient, text):
        if sender not in self.names or recipient not in self.names:
            return
        self.chat.send(sender, {"type": "dm", "to": self.names[recipient], "text": text})
        for client in self.names:
            got = [m for m in self.chat.inbox[client] if m["type"] == "msg"]
            assert len(got) == (1 if client in (sender, recipient) else 0)
        self._drain_and_check()

    @rule(client=online, name=st.sampled_from(NAMES))
    def nick(self, client, name):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "nick", "name": name})
        holder = [c for c, n in self.names.items() if n.lower() == name.lower()]
        if holder and holder[0] is not client:
            assert self.chat.inbox[client][-1]["code"] == "name_taken"
        else:
            self.names[client] = name
        self._drain_and_check()

    @rule(client=consumes(online))
    def quit(self, client):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "quit"})
        assert self.chat.closed[client] == "quit"
        del self.names[client], self.rooms[client]
        self.last_seen = {k: v for k, v in self.last_seen.items() if k[0] is not client}
        self._drain_and_check()
        self.chat.inbox.pop(client)

    @invariant()
    def names_unique_case_insensitively(self):
        if not hasattr(self, "chat"):
            return
        keys = [n.lower() for n in self.names.values()]
        assert len(keys) == len(set(keys))
        assert set(self.chat.core.users) == set(keys)


TestChatModel = ChatModel.TestCase


class DurableChatModel(ChatModel):
    """The same model on a SQLite store, with clean restarts as a step.

    After a restart every session is gone, a room's ids go on where they
    were, and each room's history is what was said in it (its newest
    `history`), read back by a fresh session.
    """

    @initialize()
    def start(self):
        super().start()
        self.directory = tempfile.TemporaryDirectory(prefix="chatd-model-")
        self.chat = Harness(store=os.path.join(self.directory.name, "chatd.db"))

    def teardown(self):
        if hasattr(self, "directory"):
            self.directory.cleanup()

    @rule()
    def restart(self):
        self.chat.restart()
        self.names.clear()
        self.rooms.clear()
        self.last_seen.clear()
        checker = self.chat.connect("checker")
        keep = self.chat.config.history
        for room, said in self.said.items():
            self.chat.send(checker, {"type": "join", "room": room})
            self.chat.send(checker, {"type": "history", "room": room, "since": 0,
                                     "limit": keep})
            answer = self.chat.take(checker)[-1]
            assert [(m["id"], m["text"]) for m in answer["messages"]] == said[-keep:]
            self.chat.send(checker, {"type": "leave", "room": room})
        self.chat.send(checker, {"type": "quit"})
        self.chat.inbox.pop(checker)


TestDurableChatModel = DurableChatModel.TestCase


class HeldLoads(Harness):
    """A durable harness whose store answers only when told (`answer`), as a
    slow disk would: what the core does meanwhile can be seen."""

    def __init__(self, path, **settings):
        self.held = []
        super().__init__(store=path, **settings)

    def apply(self, effects):
        loads = [e for e in effects if type(e) in (LoadRoom, LoadHistory)]
        self.held += loads
        super().apply([e for e in effects if e not in loads])

    def answer(self):
        held, self.held = self.held, []
        super().apply(held)


def test_requests_behind_a_room_being_opened_wait_in_order_and_others_are_served(tmp_path):
    chat = HeldLoads(str(tmp_path / "chatd.db"))
    alice, bob = chat.connect("alice"), chat.connect("bob")
    chat.take(alice), chat.take(bob)
    chat.send(alice, {"type": "join", "room": "dev"})
    # The join is done at once; the say needs the room's numbering and waits,
    # and so does everything alice sends after it.
    assert [m["type"] for m in chat.take(alice)] == ["joined", "users"]
    chat.send(alice, {"type": "say", "room": "dev", "text": "first"})
    chat.send(alice, {"type": "ping", "ref": "p"})
    chat.send(bob, {"type": "join", "room": "dev"})
    chat.send(bob, {"type": "ping", "ref": "b"})
    assert chat.take(alice) == [{"type": "joined", "room": "dev", "name": "bob"}]
    assert [m.get("ref") for m in chat.take(bob)] == [None, None, "b"]  # not held up
    chat.answer()
    assert [(m["type"], m.get("text") or m.get("ref")) for m in chat.take(alice)] == [
        ("msg", "first"), ("pong", "p")]
    assert [m["id"] for m in chat.take(bob)] == [1]


class EarlyAnswers(Harness):
    """A durable harness whose store reads a room when asked (as the worker
    does, in order) but whose answers reach the core only when delivered: an
    answer may arrive after the room that asked has closed and opened again."""

    def __init__(self, path, **settings):
        self.answers = []
        super().__init__(store=path, **settings)

    def apply(self, effects):
        loads = [e for e in effects if type(e) is LoadRoom]
        super().apply([e for e in effects if e not in loads])  # writes first
        writer = self.store.writer
        self.answers += [RoomLoaded(load.room, *writer.load_room(load.key)) for load in loads]

    def deliver(self):
        super().apply(self.core.complete(self.answers.pop(0)))


def test_a_late_answer_for_a_closed_room_never_numbers_the_room_opened_after_it(tmp_path):
    chat = EarlyAnswers(str(tmp_path / "chatd.db"))
    alice = chat.connect("alice")
    chat.send(alice, {"type": "join", "room": "dev"})   # asks (answer 1)
    chat.send(alice, {"type": "leave", "room": "dev"})  # the room closes, still unanswered
    chat.send(alice, {"type": "join", "room": "dev"})   # opened again, asks (answer 2)
    chat.deliver()  # answer 1: for the closed room, not this one
    for text in ("a", "b", "c"):
        chat.send(alice, {"type": "say", "room": "dev", "text": text})
    chat.send(alice, {"type": "leave", "room": "dev"})
    chat.send(alice, {"type": "join", "room": "dev"})
    chat.deliver()  # answer 2: read before a, b, c were written
    while chat.answers:
        chat.deliver()
    chat.send(alice, {"type": "say", "room": "dev", "text": "d"})
    assert [m["id"] for m in chat.take(alice) if m["type"] == "msg"] == [1, 2, 3, 4]
