"""Accounts (chat/1 second edition): the core with a real store file, then real sockets."""

import logging
import os
import socket
import sqlite3
import tempfile
import threading
import time

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, multiple, rule

import chatd.accounts
from chatd.accounts import SCRYPT_N, check, hash_password, verify_password
from chatd.core import (ChatCore, CheckPassword, HistoryLoaded, LoadPrivate, StoreAccount,
                        StorePrivate)
from chatd.store import MEMORY, open_store
from support import ChatClient, ServerProcess, running_server
from test_core import NAMES, ChatModel, Harness
from test_metrics import scrape, value

PASSWORD = "correct horse"


class AccountHarness(Harness):
    """The core harness plus the password worker's part, run synchronously, and the
    store's account writes.  With `hold`, checks wait in `held` until `finish()`."""

    def __init__(self, store=MEMORY, hold=False, **settings):
        self.hold = hold
        self.held = []
        self.checks = 0
        self.stored_accounts = 0
        self.stored_privates = 0
        super().__init__(store, **settings)

    def start(self):
        config = self.config
        self.store = open_store(config.store, config.retention, config.history)
        self.core = ChatCore(config.chat_settings(), self.store.epoch, self.store.durable,
                             self.store.lobby, wall_clock=lambda: 1.7e9,
                             clock=lambda: self.clock, accounts=self.store.accounts,
                             pairs=self.store.pairs)
        self.max_frame = self.core.settings.max_frame

    def connect(self, name=None, address="127.0.0.1", **hello):
        client = super().connect()
        client.address = address
        if name is not None:
            self.send(client, {"type": "hello", "name": name, **hello})
        return client

    def apply(self, effects):
        rest, accounts, private = [], [], []
        for effect in effects:
            if type(effect) is CheckPassword:
                self.checks += 1
                self.held.append(effect)
            elif type(effect) is StoreAccount:
                accounts.append(effect)
            elif type(effect) is LoadPrivate:
                private.append(effect)
            else:
                rest.append(effect)
        if accounts:
            self.stored_accounts += len(accounts)
            assert self.store.writer.write([], accounts)[2] is None
        rows = [row for row in rest if type(row) is StorePrivate]
        if rows:
            self.stored_privates += len(rows)
            assert self.store.writer.write(rows)[2] is None
        super().apply([row for row in rest if type(row) is not StorePrivate])
        for load in private:
            payloads = self.store.writer.load_private(load.low, load.high, load.since,
                                                      load.limit)
            self.apply(self.core.complete(HistoryLoaded(load.session, payloads)))
        if not self.hold:
            self.finish()

    def finish(self):
        """Run the held checks, as the worker would, and complete them."""
        held, self.held = self.held, []
        for job in held:
            self.apply(self.core.complete(check(job)))

    def last(self, client):
        return self.take(client)[-1]


@pytest.fixture
def store_file():
    with tempfile.TemporaryDirectory(prefix="chatd-accounts-") as directory:
        yield os.path.join(directory, "chatd.db")


def test_register_then_log_in_after_a_restart_with_the_store_file(store_file):
    chat = AccountHarness(store_file)
    alice = chat.connect("alice")
    assert "account" not in chat.take(alice)[0]
    chat.send(alice, {"type": "register", "password": PASSWORD, "ref": 1})
    assert chat.last(alice) == {"type": "registered", "name": "alice", "ref": 1}
    assert chat.stored_accounts == 1
    chat.end(alice, "quit")
    chat.restart()
    guest = chat.connect("alice")
    assert chat.last(guest)["code"] == "auth_required"
    again = chat.connect("Alice", password=PASSWORD)
    welcome = chat.last(again)
    assert welcome["type"] == "welcome" and welcome["name"] == "alice"
    assert welcome["account"] is True and welcome["conversations"] == []
    # The file holds the hash and its parameters, never the password.
    with open(store_file, "rb") as file:
        assert PASSWORD.encode() not in file.read()
    account = chat.core.accounts["alice"]
    assert account.credential.n == SCRYPT_N and len(account.credential.salt) == 16
    assert verify_password(PASSWORD, account.credential)


def test_wrong_password_and_unknown_name_get_the_same_answer():
    chat = AccountHarness()
    alice = chat.connect("alice")
    chat.send(alice, {"type": "register", "password": PASSWORD})
    chat.end(alice, "quit")
    wrong = chat.connect("alice", password="not the one")
    nobody = chat.connect("nobody", password="not the one")
    answers = [chat.last(wrong), chat.last(nobody)]
    assert answers[0] == answers[1] and answers[0]["code"] == "auth_failed"
    assert chat.checks == 3  # the unknown name is hashed too: same time, same answer


def test_failed_logins_are_limited_per_address_before_hashing():
    chat = AccountHarness(login_failures=5, login_window=60.0)
    for _ in range(5):
        client = chat.connect("alice", password="wrong password")
        assert chat.last(client)["code"] == "auth_failed"
    assert chat.checks == 5
    blocked = chat.connect("alice", password="wrong password")
    assert chat.last(blocked)["code"] == "rate_limited" and chat.checks == 5
    other = chat.connect("bob", address="127.0.0.2", password="wrong password")
    assert chat.last(other)["code"] == "auth_failed"
    chat.clock += 60.0
    later = chat.connect("alice", password="wrong password")
    assert chat.last(later)["code"] == "auth_failed"


def test_a_login_whose_session_ended_meanwhile_is_dropped_quietly():
    chat = AccountHarness(hold=True)
    alice = chat.connect("alice")
    chat.send(alice, {"type": "register", "password": PASSWORD})
    chat.finish()
    chat.end(alice, "quit")
    late = chat.connect("alice", password=PASSWORD)
    chat.send(late, {"type": "ping"})
    assert chat.take(late) == [] and chat.held
    chat.end(late, "disconnect")
    chat.finish()
    assert chat.take(late) == [] and "alice" not in chat.core.users


def test_requests_after_a_login_wait_for_it_in_order():
    chat = AccountHarness(hold=True)
    alice = chat.connect("alice")
    chat.send(alice, {"type": "register", "password": PASSWORD})
    chat.send(alice, {"type": "ping", "data": 1})
    assert chat.take(alice)[-1]["type"] == "welcome"
    chat.finish()
    assert [m["type"] for m in chat.take(alice)] == ["registered", "pong"]


def test_nick_rules_for_guests_and_accounts():
    chat = AccountHarness()
    alice = chat.connect("alice")
    chat.send(alice, {"type": "register", "password": PASSWORD})
    chat.take(alice)
    bob = chat.connect("bob")
    chat.take(bob)
    chat.send(bob, {"type": "nick", "name": "ALICE"})
    assert chat.last(bob)["code"] == "name_registered"
    chat.send(alice, {"type": "nick", "name": "alice2"})
    assert chat.last(alice)["code"] == "not_allowed"
    chat.send(bob, {"type": "nick", "name": "bobby"})
    assert chat.last(bob)["type"] == "renamed"


def test_register_and_passwd_errors_and_modes():
    chat = AccountHarness()
    guest = chat.connect("guest")
    chat.take(guest)
    chat.send(guest, {"type": "register", "password": "short"})
    assert chat.last(guest)["code"] == "bad_password"
    chat.send(guest, {"type": "register", "password": "x" * 1025})
    assert chat.last(guest)["code"] == "bad_password"
    chat.send(guest, {"type": "passwd", "old": PASSWORD, "new": PASSWORD})
    assert chat.last(guest)["code"] == "not_registered"
    chat.send(guest, {"type": "register", "password": PASSWORD})
    assert chat.last(guest)["type"] == "registered"
    chat.send(guest, {"type": "register", "password": PASSWORD})
    assert chat.last(guest)["code"] == "name_registered"
    chat.send(guest, {"type": "passwd", "old": "wrong password", "new": "new password"})
    assert chat.last(guest)["code"] == "auth_failed"
    chat.send(guest, {"type": "passwd", "old": PASSWORD, "new": "short"})
    assert chat.last(guest)["code"] == "bad_password"
    chat.send(guest, {"type": "passwd", "old": PASSWORD, "new": "new password", "ref": 7})
    assert chat.last(guest) == {"type": "password_changed", "ref": 7}
    chat.end(guest, "quit")
    old = chat.connect("guest", password=PASSWORD)
    assert chat.last(old)["code"] == "auth_failed"
    new = chat.connect("guest", password="new password")
    assert chat.last(new)["account"] is True
    for mode in ("closed", "off"):
        closed = AccountHarness(accounts=mode)
        carol = closed.connect("carol")
        assert closed.take(carol)[0]["limits"]["accounts"] == mode
        closed.send(carol, {"type": "register", "password": PASSWORD})
        assert closed.last(carol)["code"] == "registration_closed"


def test_a_memory_store_keeps_accounts_without_store_effects():
    chat = AccountHarness(MEMORY)
    alice = chat.connect("alice")
    chat.send(alice, {"type": "register", "password": PASSWORD})
    assert chat.last(alice)["type"] == "registered" and chat.stored_accounts == 0
    chat.end(alice, "quit")
    assert chat.last(chat.connect("alice", password=PASSWORD))["account"] is True


def test_a_dm_to_an_offline_account_waits_for_it():
    chat = AccountHarness()
    alice, bob = chat.connect("alice"), chat.connect("bob")
    for client in (alice, bob):
        chat.send(client, {"type": "register", "password": PASSWORD})
    chat.end(bob, "quit")
    chat.take(alice)
    chat.send(alice, {"type": "dm", "to": "BOB", "text": "are you there?", "ref": 1})
    echo = chat.last(alice)
    assert echo["to"] == "bob" and echo["id"] == 1 and echo["ref"] == 1
    chat.send(alice, {"type": "dm", "to": "carol", "text": "hi"})
    assert chat.last(alice)["code"] == "no_such_user"
    chat.end(alice, "quit")
    bob = chat.connect("bob", password=PASSWORD)
    assert chat.last(bob)["conversations"] == [{"with": "alice", "last_id": 1}]
    chat.send(bob, {"type": "history", "with": "alice"})
    answer = chat.last(bob)
    assert [m["text"] for m in answer["messages"]] == ["are you there?"]
    chat.send(bob, {"type": "dm", "to": "alice", "text": "now I am"})
    assert chat.last(bob)["id"] == 2
    alice = chat.connect("alice", password=PASSWORD)
    assert chat.last(alice)["conversations"] == [{"with": "bob", "last_id": 2}]


def test_dms_between_accounts_survive_a_restart(store_file):
    chat = AccountHarness(store_file)
    alice, bob, carol = chat.connect("alice"), chat.connect("bob"), chat.connect("carol")
    for client in (alice, bob):
        chat.send(client, {"type": "register", "password": PASSWORD})
    chat.end(bob, "quit")
    chat.send(alice, {"type": "dm", "to": "bob", "text": "one"})
    chat.send(alice, {"type": "dm", "to": "bob", "text": "two"})
    chat.send(carol, {"type": "dm", "to": "alice", "text": "from a guest"})
    assert chat.stored_privates == 2  # the guest's dm is not stored
    chat.restart()
    bob = chat.connect("bob", password=PASSWORD)
    assert chat.last(bob)["conversations"] == [{"with": "alice", "last_id": 2}]
    chat.send(bob, {"type": "history", "with": "alice", "ref": 3})
    answer = chat.last(bob)
    assert answer["with"] == "alice" and answer["ref"] == 3
    assert [(m["id"], m["from"], m["to"], m["text"]) for m in answer["messages"]] == [
        (1, "alice", "bob", "one"), (2, "alice", "bob", "two")]
    chat.send(bob, {"type": "history", "with": "alice", "since": 1})
    assert [m["text"] for m in chat.last(bob)["messages"]] == ["two"]
    chat.send(bob, {"type": "dm", "to": "alice", "text": "three"})
    assert chat.last(bob)["id"] == 3


class AccountChatModel(ChatModel):
    """The core's stateful model with accounts: guests register their names, accounts
    log in on new connections (replacing their older session) and log out (quit,
    the model's own rule), guests try account names and fail.

    Invariant: no guest ever speaks under an account's name: every session the
    core knows under an account's name is logged in to that account, and so is
    every client the model has under one (the `say` rule already checks that
    each msg's `from` is its sender's name).
    """

    @initialize()
    def start(self):
        super().start()
        # The rules are tested here, not the cost: a cheap hash (verification
        # uses each credential's own parameters, so this is all it takes).
        self.cost = chatd.accounts.SCRYPT_N
        chatd.accounts.SCRYPT_N = 2 ** 4
        self.chat = AccountHarness(login_failures=1_000_000)
        self.accounts = {}        # key -> the name as registered
        self.logged_in = set()    # clients logged in to their name's account

    def teardown(self):
        if hasattr(self, "cost"):
            chatd.accounts.SCRYPT_N = self.cost

    def _forget(self, client):
        """`client` was closed by the server (replaced): out of the model."""
        del self.names[client], self.rooms[client]
        self.logged_in.discard(client)
        self.last_seen = {k: v for k, v in self.last_seen.items() if k[0] is not client}

    @rule(target=ChatModel.online, name=st.sampled_from(NAMES))
    def connect(self, name):
        client = self.chat.connect()
        self.chat.send(client, {"type": "hello", "name": name})
        reply = self.chat.inbox[client][-1]
        key = name.lower()
        taken = any(n.lower() == key for n in self.names.values())
        if key in self.accounts:
            assert reply["code"] == "auth_required"
        elif taken:
            assert reply["code"] == "name_taken"
        else:
            assert reply["type"] == "welcome"
            self.names[client] = name
            self.rooms[client] = {"lobby"}
            self._drain_and_check()
            return client
        self.chat.inbox.pop(client)
        return multiple()

    @rule(client=ChatModel.online)
    def register(self, client):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "register", "password": PASSWORD})
        reply = self.chat.inbox[client][-1]
        key = self.names[client].lower()
        if key in self.accounts:
            assert reply["code"] == "name_registered"
        else:
            assert reply == {"type": "registered", "name": self.names[client]}
            self.accounts[key] = self.names[client]
            self.logged_in.add(client)
        self._drain_and_check()

    @rule(target=ChatModel.online, name=st.sampled_from(NAMES),
          right=st.booleans())
    def log_in(self, name, right):
        client = self.chat.connect()
        self.chat.send(client, {"type": "hello", "name": name,
                                "password": PASSWORD if right else "wrong password"})
        reply = self.chat.inbox[client][-1]
        key = name.lower()
        if not (right and key in self.accounts):
            assert reply["code"] == "auth_failed"
            self.chat.inbox.pop(client)
            return multiple()
        assert reply["type"] == "welcome" and reply["account"] is True
        assert reply["name"] == self.accounts[key]
        for holder in [c for c, n in self.names.items() if n.lower() == key]:
            assert self.chat.closed[holder] == "replaced"
            self._forget(holder)
        self.names[client] = self.accounts[key]
        self.rooms[client] = {"lobby"}
        self.logged_in.add(client)
        self._drain_and_check()
        return client

    @rule(client=ChatModel.online, name=st.sampled_from(NAMES))
    def nick(self, client, name):
        if client not in self.names:
            return
        self.chat.send(client, {"type": "nick", "name": name})
        reply = self.chat.inbox[client][-1]
        key = name.lower()
        holder = [c for c, n in self.names.items() if n.lower() == key]
        if client in self.logged_in:
            assert reply["code"] == "not_allowed"
        elif key in self.accounts and key != self.names[client].lower():
            assert reply["code"] == "name_registered"
        elif holder and holder[0] is not client:
            assert reply["code"] == "name_taken"
        else:
            assert reply["type"] == "renamed"
            self.names[client] = name
        self._drain_and_check()

    @rule(client=ChatModel.online)
    def quit(self, client):
        # Not consuming: a client replaced by a login stays in the bundle, unused.
        if client not in self.names:
            return
        self.chat.send(client, {"type": "quit"})
        assert self.chat.closed[client] == "quit"
        self._forget(client)
        self._drain_and_check()
        self.chat.inbox.pop(client)

    @invariant()
    def no_guest_speaks_under_an_account_name(self):
        if not hasattr(self, "accounts"):
            return
        core = self.chat.core
        for key, session in core.users.items():
            assert session.account == (key in core.accounts)
        for client, name in self.names.items():
            assert (name.lower() in self.accounts) == (client in self.logged_in)


TestAccountChatModel = AccountChatModel.TestCase


# ------------------------------------------------------------- real sockets

NEW_PASSWORD = "another one"


def error_of(client, message):
    client.send(message)
    reply = client.next(lambda m: m["type"] != "joined" and m["type"] != "left")
    return reply.get("code", reply["type"])


def store_with_accounts(path: str, names, password: str = PASSWORD) -> None:
    """A store file at `path` holding accounts `names`, all with `password` (one hash:
    the same salted hash serves every name, which is all these tests need)."""
    store = open_store(path, 100_000, 1_000)
    credential = hash_password(password)
    assert store.writer.write([], [StoreAccount(name.lower(), name, credential, 1.7e9)
                                   for name in names])[2] is None
    assert store.writer.close()


def account_life(address, name: str) -> None:
    """Issue 12's account life for a fresh `name`: register, quit, a guest refused with
    auth_required, a wrong password and an unknown name answered alike, login,
    passwd, login with the new password (then NEW_PASSWORD is its password)."""
    with ChatClient(address, name) as owner:
        assert owner.welcome["limits"]["accounts"] == "open"
        assert error_of(owner, {"type": "register", "password": PASSWORD}) == "registered"
        assert error_of(owner, {"type": "nick", "name": "other"}) == "not_allowed"
        owner.send({"type": "quit"})
        owner.frames_until_close()
    with ChatClient(address) as guest:
        assert error_of(guest, {"type": "hello", "name": name}) == "auth_required"
        guest.send({"type": "hello", "name": name, "password": "wrong password"})
        wrong = guest.next_of("error")
        guest.send({"type": "hello", "name": f"{name}-nobody", "password": "wrong password"})
        unknown = guest.next_of("error")
        assert wrong == unknown and wrong["code"] == "auth_failed"
        guest.hello(f"{name}-guest")
        assert error_of(guest, {"type": "nick", "name": name.upper()}) == "name_registered"
    with ChatClient(address, name, password=PASSWORD) as owner:
        assert owner.welcome["account"] is True
        assert error_of(owner, {"type": "passwd", "old": PASSWORD,
                                "new": NEW_PASSWORD}) == "password_changed"
    with ChatClient(address, name, password=NEW_PASSWORD) as owner:
        assert owner.welcome["account"] is True


def test_the_account_life_through_sockets():
    with running_server() as server:
        account_life(server.address, "alice")


def leave_a_dm_for_offline_bob(address, text: str) -> None:
    """alice and bob register, bob quits, and alice's dm to him is accepted."""
    with ChatClient(address, "alice") as alice, ChatClient(address, "bob") as bob:
        for client in (alice, bob):
            assert error_of(client, {"type": "register", "password": PASSWORD}) \
                == "registered"
        bob.send({"type": "quit"})
        bob.frames_until_close()
        alice.send({"type": "dm", "to": "bob", "text": text, "ref": "d"})
        assert alice.next(lambda m: m.get("ref") == "d")["type"] == "msg"


def test_the_account_life_again_after_a_restart_of_the_server_process(store_file):
    with ServerProcess("--store", store_file) as server:
        address = (server.host, server.port)
        leave_a_dm_for_offline_bob(address, "while you were away")
        account_life(address, "carol")
        assert server.stop() == 0
    with ServerProcess("--store", store_file) as server:
        address = (server.host, server.port)
        with ChatClient(address) as guest:
            assert error_of(guest, {"type": "hello", "name": "carol"}) == "auth_required"
            guest.send({"type": "hello", "name": "carol", "password": PASSWORD})
            assert guest.next_of("error")["code"] == "auth_failed"
        with ChatClient(address, "carol", password=NEW_PASSWORD) as carol:
            assert carol.welcome["account"] is True
        with ChatClient(address, "bob", password=PASSWORD) as bob:
            assert bob.welcome["conversations"] == [{"with": "alice", "last_id": 1}]
            bob.send({"type": "history", "with": "alice"})
            assert [m["text"] for m in bob.next_of("history")["messages"]] == [
                "while you were away"]
            bob.send({"type": "dm", "to": "alice", "text": "back"})
            assert bob.next_of("msg")["id"] == 2
        account_life(address, "dave")
        assert server.stop() == 0


def test_an_offline_dm_is_found_after_login_through_sockets():
    with running_server() as server:
        leave_a_dm_for_offline_bob(server.address, "later")
        with ChatClient(server.address) as bob:
            welcome = bob.hello("bob", password=PASSWORD)
            assert welcome["conversations"] == [{"with": "alice", "last_id": 1}]
            bob.send({"type": "history", "with": "alice"})
            assert [m["text"] for m in bob.next_of("history")["messages"]] == ["later"]


def hashes(server) -> float:
    return value(scrape(server), "chatd_password_hashes", "chatd_password_hashes_total")


def test_the_sixth_failed_login_from_an_address_is_refused_without_a_hash():
    with running_server(metrics=True) as server:
        with ChatClient(server.address, source="127.0.0.2") as client:
            for _ in range(5):
                assert error_of(client, {"type": "hello", "name": "alice",
                                         "password": "wrong password"}) == "auth_failed"
            assert hashes(server) == 5
            assert error_of(client, {"type": "hello", "name": "alice",
                                     "password": "wrong password"}) == "rate_limited"
            assert hashes(server) == 5
        # Another address is judged on its own.
        with ChatClient(server.address, source="127.0.0.3") as other:
            assert error_of(other, {"type": "hello", "name": "alice",
                                    "password": "wrong password"}) == "auth_failed"
            assert hashes(server) == 6


class Pinger(threading.Thread):
    """Pings over its own connection about every millisecond until told to stop (at
    most `limit` times), keeping (when sent, round trip) in seconds."""

    def __init__(self, address, limit: int = 100_000):
        super().__init__(daemon=True)
        self.client = ChatClient(address, "pinger")
        self.limit = limit
        self.round_trips: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self):
        for number in range(self.limit):
            sent = time.monotonic()
            self.client.send({"type": "ping", "data": number})
            assert self.client.next_of("pong")["data"] == number
            self.round_trips.append((sent, time.monotonic() - sent))
            # Pacing, not synchronisation: a pinger spinning flat out would take
            # a core of the two from the server and its hasher.
            if self.stop.wait(0.001):
                return

    def worst(self, since: float, until: float) -> tuple[int, float]:
        """(pings, longest round trip) among those sent within [since, until]."""
        trips = [trip for sent, trip in self.round_trips if since <= sent <= until]
        return len(trips), max(trips)


def test_fifty_logins_at_once_while_another_client_pings(store_file):
    names = [f"user{number}" for number in range(50)]
    store_with_accounts(store_file, names)
    # The hello deadline out of the way: re-asked logins wait for the whole burst.
    with ServerProcess("--store", store_file, "--rate-limit", "0",
                       "--handshake-timeout", "120") as server:
        address = (server.host, server.port)
        pinger = Pinger(address)
        clients = [ChatClient(address) for _ in names]
        try:
            pinger.start()
            quiet = time.monotonic()
            # A second of pings without logins: what this machine does anyway.
            pinger.stop.wait(1.0)
            began = time.monotonic()
            for name, client in zip(names, clients):
                client.send({"type": "hello", "name": name, "password": PASSWORD})
            busy = 0
            for name, client in zip(names, clients):
                # Beyond the hasher's 32 waiting: unavailable, and the client asks again.
                for _ in range(50):
                    reply = client.next(lambda m: m["type"] in ("welcome", "error"), timeout=30)
                    if reply["type"] == "welcome":
                        break
                    assert reply["code"] == "unavailable", reply
                    busy += 1
                    client.send({"type": "hello", "name": name, "password": PASSWORD})
                assert reply["type"] == "welcome" and reply["account"] is True
            ended = time.monotonic()
            pinger.stop.set()
            pinger.join(10)
        finally:
            for client in clients + [pinger.client]:
                client.close()
        assert server.stop() == 0
        longest = server.wait_for_log(r"longest loop turn so far").split(": ")[-1].strip()
    before, before_max = pinger.worst(quiet, began)
    during, during_max = pinger.worst(began, ended)
    print(f"50 logins in {(ended - began) * 1000:.0f} ms ({busy} answered unavailable and "
          f"asked again); ping round trip max {during_max * 1000:.1f} ms over {during} "
          f"pings during, {before_max * 1000:.1f} ms over {before} pings in the second "
          f"before; the server's longest loop turn {longest}")
    assert during >= 10 and during_max < 1.0


def test_a_full_hash_queue_answers_unavailable():
    with running_server(store=MEMORY, login_failures=1000) as server:
        clients = [ChatClient(server.address) for _ in range(60)]
        try:
            # All sent before any answer: the worker cannot keep up with 60 x ~70 ms.
            for number, client in enumerate(clients):
                client.send({"type": "hello", "name": f"user{number}",
                             "password": "some password"})
            answers = [client.next_of("error", timeout=15)["code"] for client in clients]
        finally:
            for client in clients:
                client.close()
        assert set(answers) == {"auth_failed", "unavailable"}


def test_a_password_check_that_raises_answers_unavailable_and_is_logged(store_file, caplog):
    store_with_accounts(store_file, ["alice"])
    with sqlite3.connect(store_file) as conn:  # parameters scrypt refuses (n not 2^k)
        conn.execute("UPDATE accounts SET n = 3")
    conn.close()
    with running_server(store=store_file, metrics=True) as server:
        with ChatClient(server.address) as client:
            assert error_of(client, {"type": "hello", "name": "alice",
                                     "password": PASSWORD}) == "unavailable"
            # Not left waiting: the session goes on.
            assert error_of(client, {"type": "ping"}) == "pong"
            assert client.hello("bob")["name"] == "bob"
        families = scrape(server)
        assert value(families, "chatd_password_hash_failures",
                     "chatd_password_hash_failures_total") == 1
    assert "password check failed (ValueError) against Credential(scrypt n=3 r=8 p=1)" \
        in caplog.text
    assert PASSWORD not in caplog.text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_password_reaches_the_log_of_a_server_at_debug():
    secrets_sent = ["first secret pw", "second secret pw", "wrong secret pw"]
    metrics_port = free_port()
    with ServerProcess("--log-level", "debug", "--metrics-port", str(metrics_port)) as server:
        address = (server.host, server.port)
        with ChatClient(address, "alice") as alice:
            assert error_of(alice, {"type": "register", "password": secrets_sent[0]}) \
                == "registered"
            assert error_of(alice, {"type": "passwd", "old": secrets_sent[2],
                                    "new": secrets_sent[1]}) == "auth_failed"
            assert error_of(alice, {"type": "passwd", "old": secrets_sent[0],
                                    "new": secrets_sent[1]}) == "password_changed"
        with ChatClient(address) as again:
            again.send({"type": "hello", "name": "alice", "password": secrets_sent[2]})
            assert again.next_of("error")["code"] == "auth_failed"
            assert again.hello("alice", password=secrets_sent[1])["account"] is True
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as scraper:
            scraper.sendall(b"GET /metrics HTTP/1.1\r\nHost: chatd\r\n\r\n")
            server.wait_for_log(r" DEBUG open ")  # debug lines are written
        assert server.stop() == 0
    log = "".join(server.lines)
    assert "closing 127.0.0.1" in log
    for secret in secrets_sent:
        assert secret not in log


def test_a_private_server_serves_accounts_only(store_file):
    store_with_accounts(store_file, ["alice"])
    with running_server(store=store_file, guests=False) as server:
        with ChatClient(server.address) as visitor:
            assert error_of(visitor, {"type": "hello", "name": "visitor"}) == "auth_required"
            assert visitor.hello("alice", password=PASSWORD)["account"] is True


def test_private_messages_on_file_keep_the_retention_per_pair(store_file):
    store = open_store(store_file, 3, 10)  # retention 3 per room and per pair
    writer = store.writer

    def dm(msg_id, low="alice", high="bob"):
        return StorePrivate(low, high, msg_id, 1.7e9 + msg_id, low, high, f"m{msg_id}")

    def kept(low="alice", high="bob"):
        return [row[0] for row in writer._rows(
            "SELECT id FROM private_messages WHERE low = ? AND high = ? ORDER BY id",
            (low, high))]

    assert writer.write([dm(1), dm(2), dm(3), dm(4), dm(5), dm(1, "carol", "dave")])[2] is None
    assert kept() == [3, 4, 5] and kept("carol", "dave") == [1]
    # After a crash's jump the count decides, not the ids: the pair keeps three.
    assert writer.write([dm(1_000_006)])[2] is None
    assert kept() == [4, 5, 1_000_006]
    assert writer.close()
