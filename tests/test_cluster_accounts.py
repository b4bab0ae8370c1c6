"""Accounts in cluster mode (issue 16): kept in Redis, so an account made on one
node logs in on another, and its private messages follow it.

Two chatd processes and a real redis-server, as in test_cluster.py.
"""

import signal
import subprocess
import sys

from redis_support import RedisServer, redis  # noqa: F401  (the fixture)
from support import WAIT, ChatClient, wait_until
from test_cluster import client, connects, nodes, start_node  # noqa: F401  (nodes: the fixture)

PASSWORD = "correct horse battery"


def answer(c: ChatClient, message: dict) -> dict:
    """Send `message` (with a ref) and return the frame that answers it."""
    c.send({**message, "ref": "r"})
    return c.next(lambda m: m.get("ref") == "r")


def test_an_account_made_on_one_node_logs_in_on_the_other(nodes):
    a, b = nodes
    with client(a, "Carol") as carol:
        assert answer(carol, {"type": "register", "password": PASSWORD}) == \
            {"type": "registered", "name": "Carol", "ref": "r"}
        assert answer(carol, {"type": "register", "password": PASSWORD})["code"] == \
            "name_registered"
        assert answer(carol, {"type": "nick", "name": "caz"})["code"] == "not_allowed"
        with client(b) as other:
            assert answer(other, {"type": "hello", "name": "carol"})["code"] == \
                "auth_required"
            assert answer(other, {"type": "hello", "name": "carol",
                                  "password": "wrong password"})["code"] == "auth_failed"
            assert answer(other, {"type": "hello", "name": "nobody",
                                  "password": PASSWORD})["code"] == "auth_failed"
            welcome = answer(other, {"type": "hello", "name": "CAROL", "password": PASSWORD})
            assert welcome["type"] == "welcome" and welcome["name"] == "Carol"
            assert welcome["account"] is True and welcome["conversations"] == []
            assert welcome["limits"]["accounts"] == "open"
            # The account's earlier session, on the other node, is replaced.
            assert carol.frames_until_close()[-1] == {"type": "bye", "reason": "replaced"}
            assert answer(other, {"type": "passwd", "old": "wrong password",
                                  "new": "a new password"})["code"] == "auth_failed"
            assert answer(other, {"type": "passwd", "old": PASSWORD,
                                  "new": "a new password"}) == \
                {"type": "password_changed", "ref": "r"}
        with client(a, "dave") as dave:
            assert answer(dave, {"type": "nick", "name": "carol"})["code"] == \
                "name_registered"
            assert answer(dave, {"type": "hello", "name": "x"})["code"] == "bad_message"
        with client(a) as again:
            assert answer(again, {"type": "hello", "name": "carol",
                                  "password": PASSWORD})["code"] == "auth_failed"
            assert answer(again, {"type": "hello", "name": "carol",
                                  "password": "a new password"})["account"] is True


def test_a_dm_to_an_offline_account_waits_for_it_on_any_node(nodes):
    a, b = nodes
    with client(a, "erin") as erin:
        assert answer(erin, {"type": "register", "password": PASSWORD})["type"] == \
            "registered"
    with client(b, "frank") as frank:
        echo = answer(frank, {"type": "dm", "to": "Erin", "text": "are you there?"})
        assert echo["type"] == "msg" and echo["to"] == "erin" and echo["id"] == 1
        assert answer(frank, {"type": "dm", "to": "ghost", "text": "?"})["code"] == \
            "no_such_user"
        assert answer(frank, {"type": "register", "password": PASSWORD})["type"] == \
            "registered"
        # The pair of a guest who registered stays the account's.
        assert answer(frank, {"type": "dm", "to": "erin", "text": "now as an account"}
                      )["id"] == 2
    with client(b, "gus") as gus:  # a guest: listed as the account's partner all the same
        assert answer(gus, {"type": "dm", "to": "erin", "text": "hello"})["id"] == 1
    with client(a, "Erin", password=PASSWORD) as erin:  # most recent first
        assert erin.welcome["conversations"] == [{"with": "gus", "last_id": 1},
                                                 {"with": "frank", "last_id": 2}]
        # gus is gone, but his conversation with erin is hers to read.
        assert [m["text"] for m in answer(erin, {"type": "history", "with": "Gus"}
                                          )["messages"]] == ["hello"]
        history = answer(erin, {"type": "history", "with": "frank"})
        assert [m["text"] for m in history["messages"]] == ["are you there?",
                                                            "now as an account"]
    with client(b, "frank", password=PASSWORD) as frank:
        assert frank.welcome["conversations"] == [{"with": "erin", "last_id": 2}]


def test_a_node_without_guests_serves_only_accounts(redis, nodes):  # noqa: F811
    a, _ = nodes
    with client(a, "gina") as gina:
        assert answer(gina, {"type": "register", "password": PASSWORD})["type"] == \
            "registered"
    with start_node(redis, "--guests", "no") as private:
        with client(private) as guest:
            assert answer(guest, {"type": "hello", "name": "someone"})["code"] == \
                "auth_required"
            assert answer(guest, {"type": "hello", "name": "gina",
                                  "password": PASSWORD})["account"] is True


def operator(redis_server, *arguments: str, password: str | None = None):
    """`chatd account ... --cluster URL` as the operator runs it."""
    return subprocess.run([sys.executable, "-m", "chatd", "account", *arguments,
                           "--cluster", redis_server.url],
                          input=None if password is None else password + "\n",
                          capture_output=True, text=True, timeout=WAIT)


def test_the_operator_changes_a_clusters_accounts_while_it_serves(redis, nodes):  # noqa: F811
    a, b = nodes
    with client(b, "watcher") as watcher, client(a, "Hana") as guest:
        watcher.next_of("joined")
        made = operator(redis, "add", "hana", password=PASSWORD)
        assert (made.returncode, made.stdout) == (0, "account 'hana' added\n")
        frames = guest.frames_until_close()
        assert frames[-2]["code"] == "name_registered"
        assert frames[-1] == {"type": "bye", "reason": "replaced"}
        assert watcher.next() == {"type": "left", "room": "lobby", "name": "Hana",
                                  "reason": "replaced"}
    again = operator(redis, "add", "HANA", password=PASSWORD)
    assert again.returncode == 1 and "is an account already" in again.stderr
    listing = operator(redis, "list")
    assert listing.returncode == 0 and listing.stdout.startswith("hana\t")
    assert "scrypt n=32768 r=8 p=1" in listing.stdout
    assert operator(redis, "passwd", "hana", password="a new password").returncode == 0
    with client(b) as other:
        assert answer(other, {"type": "hello", "name": "hana",
                              "password": PASSWORD})["code"] == "auth_failed"
    with client(a, "ken") as ken:
        assert answer(ken, {"type": "register", "password": PASSWORD})["type"] == \
            "registered"
        assert answer(ken, {"type": "dm", "to": "hana", "text": "hi"})["type"] == "msg"
    pair = b"|".join(sorted(redis.command("HGET", f"chatd:acct:{name}", "identity")
                            for name in ("hana", "ken")))
    assert redis.command("EXISTS", b"chatd:plog:" + pair, b"chatd:pseq:" + pair) == 2
    with client(b, "hana", password="a new password") as hana:
        assert hana.welcome["conversations"] == [{"with": "ken", "last_id": 1}]
        gone = operator(redis, "delete", "hana")
        assert (gone.returncode, gone.stdout) == \
            (0, "account 'hana' deleted, with its private messages\n")
        frames = hana.frames_until_close()
        assert frames[-2]["code"] == "not_registered"
        assert frames[-1] == {"type": "bye", "reason": "replaced"}
    assert operator(redis, "list").stdout.startswith("ken\t")
    with client(a, "ken", password=PASSWORD) as ken:  # hana is gone from ken's list too
        assert ken.welcome["conversations"] == []
    identity = redis.command("HGET", "chatd:acct:ken", "identity")
    assert redis.command("ZCARD", b"chatd:partners:" + identity) == 0
    assert redis.command("EXISTS", b"chatd:plog:" + pair, b"chatd:pseq:" + pair) == 0
    missing = operator(redis, "delete", "hana")
    assert missing.returncode == 1 and "no account 'hana'" in missing.stderr
    # The name is a guest's again.
    with client(a, "hana") as guest:
        assert "account" not in guest.welcome


def test_the_operator_is_told_when_redis_is_unreachable(tmp_path):
    result = subprocess.run([sys.executable, "-m", "chatd", "account", "list", "--cluster",
                             f"unix://{tmp_path}/nothing.sock"],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1
    assert result.stderr.startswith("chatd account: cannot reach Redis at unix://")
    assert len(result.stderr.splitlines()) == 1


def test_the_operator_changes_rooms_with_the_nodes_limits(redis):  # noqa: F811
    """The nodes give Redis their presence limit (here 1): evicting a guest from
    a room of two announces no `left`, as the nodes would not."""
    with start_node(redis, "--presence-limit", "1") as node:
        with client(node, "ivo") as ivo, client(node, "jan") as jan:
            assert redis.command("HMGET", "chatd:limits", "presence", "cap") == [b"1",
                                                                                 b"2000"]
            made = operator(redis, "add", "ivo", password=PASSWORD)
            assert made.returncode == 0, made.stderr
            assert ivo.frames_until_close()[-1] == {"type": "bye", "reason": "replaced"}
            jan.send({"type": "who", "ref": "w"})  # the next frame: no `left` before it
            assert jan.next() == {"type": "users", "room": "lobby", "names": ["jan"],
                                  "ref": "w"}


def test_the_operator_waits_for_a_node_after_a_redis_restart(tmp_path):
    """Accounts changed on a Redis that restarted before any node saw it would
    be numbered outside what the nodes track: refused until a node is back."""
    durable = RedisServer(str(tmp_path), appendonly=True)
    try:
        with start_node(durable, "--cluster-lease", "30") as node:
            wait_until(lambda: durable.command("GET", "chatd:run") is not None,
                       what="the node's epoch.lua")
            node.process.send_signal(signal.SIGSTOP)  # it cannot come back yet
            try:
                durable.stop()
                durable.start()
                refused = operator(durable, "add", "ivy", password=PASSWORD)
            finally:
                node.process.send_signal(signal.SIGCONT)
            assert refused.returncode == 1 and "no chatd node has connected" in \
                refused.stderr
            wait_until(lambda: connects(node) == 2, what="the node back")
            made = operator(durable, "add", "ivy", password=PASSWORD)
            assert made.returncode == 0, made.stderr
    finally:
        durable.stop()
