"""Two chatd nodes sharing one chat through a real redis-server (issue 16).

Each node is a subprocess (`chatd --cluster unix://...`); Redis runs on a
unix socket in a temporary directory (redis_support.py).  Leases are short
(1 s) so the failure tests finish quickly.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

import framing
from chatd.cluster.scripts import load_scripts
from chatd.config import Config, ConfigError, load_config
from redis_support import RedisServer, redis  # noqa: F401  (the fixture)
from support import WAIT, ChatClient, ServerProcess, TLSFiles, running_server, wait_until
from test_metrics import scrape, value

LEASE = "1"


def start_node(redis_server, *flags) -> ServerProcess:
    node = ServerProcess("--cluster", redis_server.url, "--store", "memory",
                         "--cluster-lease", LEASE, "--rate-limit", "0", *flags)
    node.wait_for_log("cluster: connected")
    return node


@pytest.fixture
def nodes(redis):  # noqa: F811
    """Two nodes on one Redis: (a, b)."""
    with start_node(redis) as a, start_node(redis) as b:
        yield a, b


def connects(node: ServerProcess) -> int:
    """How many times `node` has connected to Redis so far (from its log)."""
    return sum("cluster: connected" in line for line in list(node.lines))


def client(node, name=None, **hello) -> ChatClient:
    return ChatClient((node.host, node.port), name, **hello)


def joined(c: ChatClient, room: str) -> dict:
    c.send({"type": "join", "room": room, "ref": "j"})
    return c.next(lambda m: m.get("ref") == "j" or m["type"] == "error")


def four_in_a_room(nodes, prefix: str, room: str) -> list[ChatClient]:
    """Two clients on each node, all in `room`, each past everyone's `joined`
    (a ping answered after all joined: later frames are messages)."""
    clients = [client(node, f"{prefix}{i}{node.port}") for node in nodes for i in range(2)]
    try:
        for c in clients:
            joined(c, room)
        for c in clients:
            c.send({"type": "ping", "ref": "sync"})
            c.next(lambda m: m.get("ref") == "sync")
    except BaseException:
        for c in clients:
            c.close()
        raise
    return clients


def pipelining(clients, room: str, count: int, refs: bool) -> list[threading.Thread]:
    """Each client sends `count` says to `room` ("NAME n", with ref n if `refs`)
    in one write, from a thread of its own; the started threads."""
    def send_all(c):
        c.send_raw(b"".join(framing.encode({
            "type": "say", "room": room, "text": f"{c.welcome['name']} {n}",
            **({"ref": n} if refs else {})}) for n in range(count)))
    threads = [threading.Thread(target=send_all, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    return threads


def test_cluster_settings_are_checked():
    assert Config().cluster == ""  # a single node unless asked
    assert Config(cluster="redis://10.0.0.5:6380").cluster_lease == 10.0
    for url in ("http://h:1", "redis://", "redis://h:99999", "unix://"):
        with pytest.raises(ConfigError, match="cluster"):
            Config(cluster=url)
    with pytest.raises(ConfigError, match="cluster_lease"):
        Config(cluster="unix:///tmp/r.sock", cluster_lease=0)
    assert load_config(["--cluster", "unix:///tmp/r.sock"], environ={}).cluster == \
        "unix:///tmp/r.sock"
    # A password with / ? or # not percent-encoded: refused, and never shown.
    for unencoded in ("redis://chatd:s3cr/et@h:6379", "redis://chatd:2024/Winter@h:6379",
                      "redis://:s3?cret@h", "rediss://u:s#3cret@h",
                      "redis://u:s3cr@t/pw@h:6379", "redis://u:p@q#cret@h",
                      "unix://:pa@ss/x@/tmp/s.sock"):
        with pytest.raises(ConfigError, match="percent-encode the password") as refused:
            Config(cluster=unencoded)
        assert not any(secret in str(refused.value) for secret in
                       ("cret", "Winter", "pw", "t/", "pa@", "ss/"))
    assert Config(cluster="unix:///run/redis@6379.sock").cluster  # an @ in a path
    assert Config(cluster="unix://:pw@/run/r@1.sock").cluster


def test_every_request_works_across_nodes(nodes):
    a, b = nodes
    with client(a, "alice") as alice, client(b, "bob") as bob:
        assert bob.welcome["users"] == ["bob", "alice"]
        assert bob.welcome["epoch"] == alice.welcome["epoch"]
        assert alice.next() == {"type": "joined", "room": "lobby", "name": "bob"}
        assert joined(alice, "Den")["names"] == ["alice"]
        assert joined(bob, "den")["names"] == ["alice", "bob"]
        assert alice.next_of("joined") == {"type": "joined", "room": "Den", "name": "bob"}
        alice.send({"type": "say", "room": "den", "text": "hi", "ref": 1})
        echo = alice.next()
        heard = bob.next_of("msg")
        assert echo.pop("ref") == 1 and echo == heard and heard["id"] == 1
        bob.send({"type": "dm", "to": "ALICE", "text": "psst", "ref": 2})
        assert bob.next()["ref"] == 2
        assert alice.next_of("msg")["to"] == "alice"
        bob.send({"type": "who", "room": "DEN", "ref": 3})
        assert bob.next() == {"type": "users", "room": "Den", "ref": 3,
                              "names": ["alice", "bob"]}
        bob.send({"type": "rooms", "ref": 4})
        assert sorted(r["name"] for r in bob.next()["rooms"]) == ["Den", "lobby"]
        bob.send({"type": "history", "room": "den", "ref": 5})
        assert [m["text"] for m in bob.next()["messages"]] == ["hi"]
        bob.send({"type": "leave", "room": "den", "ref": 6})
        assert bob.next() == {"type": "left", "room": "Den", "name": "bob", "ref": 6}
        assert alice.next() == {"type": "left", "room": "Den", "name": "bob"}
        bob.send({"type": "dm", "to": "nobody", "text": "?", "ref": 7})
        assert bob.next()["code"] == "no_such_user"
        bob.send({"type": "say", "room": "den", "text": "?", "ref": 77})
        assert bob.next()["code"] == "not_in_room"  # open on alice's node
        bob.send({"type": "history", "room": "nowhere", "ref": 78})
        assert bob.next()["code"] == "no_such_room"
        alice.send({"type": "history", "with": "Bob", "ref": 71})
        assert [m["text"] for m in alice.next()["messages"]] == ["psst"]
        alice.send({"type": "history", "with": "bob", "since": 1, "ref": 72})
        assert alice.next()["messages"] == []
        joined(bob, "den")
        assert alice.next_of("joined")["name"] == "bob"
        bob.send({"type": "nick", "name": "Robert", "ref": 73})
        assert bob.next() == {"type": "renamed", "old": "bob", "new": "Robert", "ref": 73}
        # In the lobby and in Den with bob: told once.
        assert alice.next() == {"type": "renamed", "old": "bob", "new": "Robert"}
        alice.send({"type": "nick", "name": "robert", "ref": 74})
        assert alice.next()["code"] == "name_taken"
        alice.send({"type": "who", "room": "den", "ref": 75})
        assert alice.next()["names"] == ["alice", "Robert"]
        bob.send({"type": "leave", "room": "den", "ref": 76})
        assert bob.next()["ref"] == 76
        assert alice.next()["type"] == "left"
        bob.close()
        assert alice.next() == {"type": "left", "room": "lobby", "name": "Robert",
                                "reason": "disconnect"}
        alice.send({"type": "who", "ref": 8})
        assert alice.next()["names"] == ["alice"]


def test_concurrent_says_on_both_nodes_give_one_order(nodes):
    """Two senders per node, pipelining: every member sees the same ids, the
    same order, the same payloads (ts included), ids 1..n without a hole."""
    per_sender = 100
    clients = four_in_a_room(nodes, "u", "busy")
    try:
        threads = pipelining(clients, "busy", per_sender, refs=False)
        for t in threads:
            t.join(WAIT)
        total = per_sender * len(clients)
        seen = []
        for c in clients:
            msgs = [c.next_of("msg", timeout=3 * WAIT) for _ in range(total)]
            seen.append(msgs)
        assert [m["id"] for m in seen[0]] == list(range(1, total + 1))
        for msgs in seen[1:]:
            assert msgs == seen[0]
        for c in clients:  # each sender's own order is kept
            own = [m["text"] for m in seen[0] if m["from"] == c.welcome["name"]]
            assert own == [f"{c.welcome['name']} {n}" for n in range(per_sender)]
    finally:
        for c in clients:
            c.close()


def test_fifty_simultaneous_hellos_for_one_name_get_one_welcome(nodes):
    hello = framing.encode({"type": "hello", "name": "zed"})
    sockets = []
    try:
        for i in range(50):
            node = nodes[i % 2]
            sockets.append(socket.create_connection((node.host, node.port), WAIT))
        for sock in sockets:
            sock.sendall(hello)
        answers = []
        for sock in sockets:
            sock.settimeout(WAIT)
            decoder = framing.Decoder(schema=framing.EVENTS)
            items = []
            while not items:
                data = sock.recv(65536)
                assert data, "closed before answering"
                items = decoder.feed(data)
            answers.append(items[0]["type"] if items[0]["type"] == "welcome"
                           else items[0]["code"])
        assert sorted(answers) == ["name_taken"] * 49 + ["welcome"]
    finally:
        for sock in sockets:
            sock.close()


def test_token_reclaim_across_nodes(nodes):
    a, b = nodes
    with client(a, "dora") as old, client(b, "eve") as eve:
        joined(old, "room")
        joined(eve, "room")
        with client(b) as new:
            new.send({"type": "hello", "name": "Dora", "token": old.welcome["token"]})
            assert new.next_of("welcome")["name"] == "Dora"
            assert old.next_of("bye")["reason"] == "replaced"
            left = eve.next(lambda m: m["type"] == "left" and m["room"] == "room")
            assert left == {"type": "left", "room": "room", "name": "dora",
                            "reason": "replaced"}
        with client(b) as thief:
            thief.send({"type": "hello", "name": "eve", "token": "not-the-token"})
            assert thief.next()["code"] == "name_taken"


def test_a_killed_node_is_reaped(nodes):
    a, b = nodes
    with client(a, "fred") as fred, client(b, "gil") as gil:
        joined(gil, "x")
        joined(fred, "x")
        gil.next(lambda m: m["type"] == "joined" and m["name"] == "fred")
        a.process.send_signal(signal.SIGKILL)
        left = gil.next(lambda m: m["type"] == "left" and m["room"] == "x", timeout=4 * WAIT)
        assert left["reason"] == "timeout"
        b.wait_for_log("reaped node")
        gil.send({"type": "dm", "to": "fred", "text": "there?", "ref": "d"})
        assert gil.next(lambda m: m.get("ref") == "d")["code"] == "no_such_user"
        with client(b, "fred") as again:  # the name came free
            assert again.welcome["name"] == "fred"


def test_redis_restart_without_persistence_ids_jump_never_repeat(redis, nodes):  # noqa: F811
    a, b = nodes
    with client(a, "hal") as hal, client(b, "ivy") as ivy:
        joined(hal, "r")
        joined(ivy, "r")
        hal.send({"type": "say", "room": "r", "text": "before", "ref": 1})
        before = hal.next(lambda m: m.get("ref") == 1)["id"]
        epoch = hal.welcome["epoch"]
        ivy.next_of("msg")
        redis.stop()
        redis.start()
        # The nodes find their leases gone with the data: their clients are closed.
        assert hal.next_of("bye", timeout=4 * WAIT)["reason"] == "shutdown"
        assert ivy.next_of("bye", timeout=4 * WAIT)["reason"] == "shutdown"
    with client(a, "hal") as hal, client(b, "ivy") as ivy:
        assert hal.welcome["epoch"] == ivy.welcome["epoch"] == epoch
        joined(hal, "r")
        joined(ivy, "r")
        hal.send({"type": "say", "room": "r", "text": "after", "ref": 2})
        after = hal.next(lambda m: m.get("ref") == 2)["id"]
        assert ivy.next_of("msg")["id"] == after > before


def test_while_redis_is_stopped_ping_works_and_say_is_unavailable(redis, nodes):  # noqa: F811
    a, b = nodes
    with client(a, "jo") as jo, client(b, "kim") as kim:
        joined(jo, "s")
        joined(kim, "s")
        redis.pause()
        try:
            jo.send({"type": "ping", "ref": "p"})
            assert jo.next_of("pong") == {"type": "pong", "ref": "p"}
            jo.send({"type": "who", "ref": "w"})
            jo.send({"type": "ping", "ref": "p2"})
            # The ping waits behind the who (one order per client).
            answer = jo.next(lambda m: "ref" in m, timeout=4 * WAIT)
            assert answer["code"] == "unavailable" and answer["ref"] == "w"
            assert jo.next() == {"type": "pong", "ref": "p2"}
            jo.send({"type": "say", "room": "s", "text": "lost", "ref": "l"})
            answer = jo.next(timeout=4 * WAIT)
            assert answer["code"] == "unavailable" and answer["ref"] == "l"
        finally:
            redis.resume()
        jo.send({"type": "say", "room": "s", "text": "back", "ref": "s"})
        assert jo.next(lambda m: m.get("ref") == "s", timeout=2 * WAIT)["type"] == "msg"
        assert kim.next_of("msg")["text"] == "back"


def test_dms_told_while_a_node_was_cut_off_reach_it_from_its_inbox(redis):  # noqa: F811
    """Node a is stopped and its link killed while b's user sends dms to a's
    user (a long lease: a is not reaped meanwhile); resumed, a reconnects and
    reads what it was told from its inbox stream: each dm once, in order."""
    with start_node(redis, "--cluster-lease", "60") as a, \
            start_node(redis, "--cluster-lease", "60") as b:
        with client(a, "lu") as lu, client(b, "max") as mx:
            links = sorted(int(line.split(" ", 1)[0][len("id="):]) for line in
                           redis.command("CLIENT", "LIST").decode().splitlines()
                           if " name=chatd " in line)
            a.process.send_signal(signal.SIGSTOP)
            try:
                assert redis.command("CLIENT", "KILL", "ID", links[0]) == 1  # a's: older
                for n in range(3):
                    mx.send({"type": "dm", "to": "lu", "text": f"m{n}", "ref": n})
                    assert mx.next(lambda m: m.get("ref") == n)["type"] == "msg"
            finally:
                a.process.send_signal(signal.SIGCONT)
            assert [lu.next_of("msg")["text"] for _ in range(3)] == ["m0", "m1", "m2"]
            wait_until(lambda: connects(a) == 2, what="a reconnected")
            lu.send({"type": "ping", "ref": "p"})
            assert lu.next(lambda m: "ref" in m or m["type"] == "msg") == \
                {"type": "pong", "ref": "p"}


def test_client_kill_pubsub_under_load_loses_and_repeats_nothing(redis, nodes):  # noqa: F811
    """Redis drops both nodes' links three times while four senders pipeline:
    every say is echoed or refused `unavailable`; every member sees the same
    ids 1..n in the same order, each accepted say exactly once."""
    per_sender = 150
    clients = four_in_a_room(nodes, "k", "storm")
    try:
        threads = pipelining(clients, "storm", per_sender, refs=True)
        watcher = clients[0]
        seen = {id(c): [] for c in clients}
        for kill in range(3):
            # Let some traffic through between kills (a frame, not a sleep).
            for _ in range(20):
                seen[id(watcher)].append(watcher.next(lambda m: "ref" in m or m["type"] == "msg",
                                                      timeout=3 * WAIT))
            # Both nodes are back from the last kill, subscribed again.
            wait_until(lambda: redis.command("PUBSUB", "NUMSUB", "chatd:room:storm")[1] == 2,
                       what="both nodes subscribed")
            assert redis.command("CLIENT", "KILL", "TYPE", "pubsub") == 2
        for t in threads:
            t.join(WAIT)
        for node in nodes:
            wait_until(lambda: connects(node) == 4, what="a node reconnected")
        answers = {}
        for c in clients:
            frames = seen[id(c)]
            own = sum(1 for m in frames if "ref" in m)
            while own < per_sender:
                frame = c.next(lambda m: "ref" in m or m["type"] == "msg", timeout=3 * WAIT)
                frames.append(frame)
                own += "ref" in frame
            answers[id(c)] = [m for m in frames if "ref" in m]
        accepted = sum(1 for c in clients for m in answers[id(c)] if m["type"] == "msg")
        refused = [m for c in clients for m in answers[id(c)] if m["type"] == "error"]
        assert all(m["code"] == "unavailable" for m in refused)
        assert accepted + len(refused) == per_sender * len(clients)
        for c in clients:  # the others' says still on the way
            frames = seen[id(c)]
            while sum(1 for m in frames if m["type"] == "msg") < accepted:
                frames.append(c.next_of("msg", timeout=3 * WAIT))
        views = []
        for c in clients:
            msgs = [dict(m) for m in seen[id(c)] if m["type"] == "msg"]
            for m in msgs:
                m.pop("ref", None)
            views.append(msgs)
        assert [m["id"] for m in views[0]] == list(range(1, accepted + 1))
        for view in views[1:]:
            assert view == views[0]
        # Nothing refused was numbered after all.
        watcher.send({"type": "history", "room": "storm", "since": accepted, "ref": "h"})
        assert watcher.next(lambda m: m.get("ref") == "h")["messages"] == []
    finally:
        for c in clients:
            c.close()


def test_metrics_show_the_link(redis):  # noqa: F811
    with running_server(metrics=True, cluster=redis.url, store="memory") as server:
        with ChatClient(server.address, "lou") as lou:
            joined(lou, "m")
            families = scrape(server)
            assert value(families, "chatd_cluster_link_up") == 1
            assert value(families, "chatd_cluster_link_connects",
                         "chatd_cluster_link_connects_total") == 1
            assert 0 <= value(families, "chatd_cluster_commands_in_flight") < 10
            assert redis.command("CLIENT", "KILL", "TYPE", "pubsub") == 1
            wait_until(lambda: value(scrape(server), "chatd_cluster_link_connects",
                                     "chatd_cluster_link_connects_total") == 2,
                       what="the link made again")
            families = scrape(server)
            assert value(families, "chatd_cluster_link_losses",
                         "chatd_cluster_link_losses_total") == 1
            assert value(families, "chatd_cluster_gaps_filled",
                         "chatd_cluster_gaps_filled_total") >= 1
            lou.send({"type": "say", "room": "m", "text": "still here", "ref": 1})
            assert lou.next(lambda m: m.get("ref") == 1)["type"] == "msg"
            families = scrape(server)
            assert value(families, "chatd_messages_accepted",
                         "chatd_messages_accepted_total") == 1
            assert value(families, "chatd_rooms") == 2  # the lobby and m
            assert value(families, "chatd_cluster_inbox_caught_up",
                         "chatd_cluster_inbox_caught_up_total") == 0


def test_a_redis_restart_with_its_data_keeps_every_connection():
    """AOF with appendfsync always: Redis restarts, the nodes reconnect, their
    leases and sessions are still there; nobody is closed, ids go on (above a
    new floor: a restart may have lost the last writes)."""
    with tempfile.TemporaryDirectory(prefix="chatd-redis-") as directory:
        durable = RedisServer(directory, appendonly=True)
        try:
            with start_node(durable) as a, start_node(durable) as b, \
                    client(a, "max") as max_, client(b, "ned") as ned:
                joined(max_, "p")
                joined(ned, "p")
                max_.send({"type": "say", "room": "p", "text": "one", "ref": 1})
                first = max_.next(lambda m: m.get("ref") == 1)["id"]
                durable.stop()
                durable.start()
                for node in (a, b):
                    wait_until(lambda: connects(node) == 2, what="a node reconnected")
                ned.send({"type": "say", "room": "p", "text": "two", "ref": 2})
                # Redis cannot say whether it lost its last writes: ids jump.
                second = ned.next(lambda m: m.get("ref") == 2, timeout=2 * WAIT)["id"]
                assert second > first
                heard = max_.next_of("msg")
                assert (heard["text"], heard["id"]) == ("two", second)
                assert not any("lost its lease" in line for line in a.lines + b.lines)
        finally:
            durable.stop()


def test_presence_stops_above_the_presence_limit_on_every_node(redis):  # noqa: F811
    with start_node(redis, "--presence-limit", "2") as a, \
            start_node(redis, "--presence-limit", "2") as b:
        with client(a, "oz") as oz, client(b, "pia") as pia, client(a, "quin") as quin:
            joined(oz, "big")
            joined(pia, "big")
            assert oz.next_of("joined") == {"type": "joined", "room": "big", "name": "pia"}
            assert joined(quin, "big")["names"] == ["oz", "pia", "quin"]
            # quin made it three: no joined for the others; a say still comes.
            pia.send({"type": "say", "room": "big", "text": "hi", "ref": 1})
            assert pia.next(lambda m: m.get("ref") == 1)["type"] == "msg"
            assert oz.next(lambda m: m["type"] != "left")["type"] == "msg"


def test_a_redis_that_wants_a_password(redis):  # noqa: F811
    """The URL's user and password log in (HELLO AUTH); neither chatd's log nor
    `chatd account` says the password; a wrong one is refused and said so."""
    assert redis.command("CONFIG", "SET", "requirepass", "s3cr/t") == b"OK"
    url = redis.url.replace("unix://", "unix://default:s3cr%2Ft@")
    with ServerProcess("--cluster", url, "--store", "memory") as node:
        node.wait_for_log("cluster: connected")
        node.wait_for_log("password is on the command line")
        with client(node, "pat") as pat:
            assert joined(pat, "locked")["names"] == ["pat"]
        assert not [line for line in node.lines if "s3cr" in line]
    listing = subprocess.run([sys.executable, "-m", "chatd", "account", "list"],
                             env={**os.environ, "CHATD_CLUSTER": url},
                             capture_output=True, text=True, timeout=WAIT)
    assert (listing.returncode, listing.stdout) == (0, "")
    wrong = url.replace("s3cr%2Ft", "guess")
    with ServerProcess("--store", "memory", env={"CHATD_CLUSTER": wrong}) as node:
        node.wait_for_log("cluster: Redis refused the login")
        assert not [line for line in node.lines if "guess" in line or "command line" in line]
    refused = subprocess.run([sys.executable, "-m", "chatd", "account", "list",
                              "--cluster", wrong], capture_output=True, text=True,
                             timeout=WAIT)
    assert refused.returncode == 1 and "WRONGPASS" in refused.stderr
    assert "guess" not in refused.stderr


def free_loopback_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (for a server that cannot
    be given port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_redis_over_tls_with_client_certificates(redis, tmp_path):  # noqa: F811
    """rediss:// with a password: nodes reach Redis' tls-port, check its
    certificate against cluster_ca, show their own (tls-auth-clients) and log
    in; a certificate from another CA is refused and said so; `chatd
    account` speaks TLS too."""
    server = TLSFiles(tmp_path)
    node_files = TLSFiles(tmp_path, ca=server.ca, name="node")
    port = free_loopback_port()
    assert redis.command("CONFIG", "SET", "tls-cert-file", server.cert, "tls-key-file",
                         server.key, "tls-ca-cert-file", server.ca_file,
                         "tls-port", str(port)) == b"OK"
    assert redis.command("CONFIG", "SET", "requirepass", "tls-and-a-password") == b"OK"
    env = {"CHATD_CLUSTER": f"rediss://:tls-and-a-password@localhost:{port}",
           "CHATD_CLUSTER_CA": server.ca_file,
           "CHATD_CLUSTER_CERT": node_files.cert, "CHATD_CLUSTER_KEY": node_files.key}
    with ServerProcess("--store", "memory", env=env) as a, \
            ServerProcess("--store", "memory", env=env) as b:
        for node in (a, b):
            node.wait_for_log("cluster: connected")
        with client(a, "tia") as tia, client(b, "uma") as uma:
            joined(tia, "sealed")
            joined(uma, "sealed")
            uma.send({"type": "say", "room": "sealed", "text": "over TLS", "ref": 1})
            assert tia.next_of("msg")["text"] == "over TLS"
    listing = subprocess.run([sys.executable, "-m", "chatd", "account", "list"],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=WAIT)
    assert (listing.returncode, listing.stdout, listing.stderr) == (0, "", "")
    stranger = TLSFiles(tmp_path, name="stranger")  # another CA: Redis is not trusted
    with ServerProcess("--store", "memory",
                       env={**env, "CHATD_CLUSTER_CA": stranger.ca_file}) as node:
        node.wait_for_log(r"cluster: TLS with rediss://:\*\*\*@localhost:\d+ failed: "
                          r".*certificate verify failed")
    assert Config(cluster="rediss://h:1", cluster_ca="ca.pem").cluster_ca == "ca.pem"
    for bad in ({"cluster": "redis://h:1", "cluster_ca": "ca.pem"},
                {"cluster": "rediss://h:1", "cluster_cert": "c.pem"},
                {"cluster_key": "k.pem"}):
        with pytest.raises(ConfigError, match="cluster_"):
            Config(**bad)


def test_the_inbox_read_shows_what_its_cap_trimmed(redis):  # noqa: F811
    """inbox.lua on a real Redis: what was told after a number, and how many were
    told in all, so a node counts what the cap trimmed before it read."""
    redis.command("ZADD", "chatd:nodes", 2 ** 50, "n1")
    for n in range(1, 201):
        redis.command("XADD", "chatd:inbox:n1", "MAXLEN", 10, f"0-{n}", "d", f"told {n}")
    redis.command("SET", "chatd:told:n1", 200)
    source = load_scripts()["inbox"].source
    start, told, entries, _, _ = redis.command("EVAL", source, 0, 200, 2000, "n1", 195, "")
    assert (start, told) == (195, 200)
    assert [(entry, fields[1]) for entry, fields in entries] == \
        [(b"0-%d" % n, b"told %d" % n) for n in range(196, 201)]
    start, told, entries, _, _ = redis.command("EVAL", source, 0, 200, 2000, "n1", 0, "")
    assert (told, len(entries), entries[0][0]) == (200, 10, b"0-191")  # 190 trimmed
    # A node whose lease is gone (reaped) reads nothing.
    assert redis.command("EVAL", source, 0, 200, 2000, "n2", 7, "") == [7, 7, [], 0, b""]


def test_numbers_handed_out_again_after_a_restart_are_told_apart(redis):  # noqa: F811
    """resume.lua and inbox.lua on a real Redis that came back without its last
    writes: a node that had handled more learns where the numbering stood at
    its first write in this run (what follows is new); with no write since,
    the numbering is set on from what the node handled."""
    scripts = load_scripts()
    redis.command("ZADD", "chatd:nodes", 2 ** 50, "n1")
    redis.command("SET", "chatd:run", "second")  # the node saw run "first"
    redis.command("LPUSH", "chatd:runs", "first", "second")  # newest first
    redis.command("SET", "chatd:ev:r", 3)      # the node delivered up to ev 5
    redis.command("SET", "chatd:told:n1", 1)   # and handled inbox number 2
    # No write since the restart: the numbering goes on after what the node saw.
    assert redis.command("EVAL", scripts["resume"].source, 0, 200, 2000, "n1", "r", 5,
                         "first") == [5, [], 1, b"second"]
    assert redis.command("GET", "chatd:ev:r") == b"5"
    assert redis.command("EVAL", scripts["inbox"].source, 0, 200, 2000, "n1", 2,
                         "first") == [2, 2, [], 1, b"second"]
    assert redis.command("GET", "chatd:told:n1") == b"2"
    # Another node wrote first: ev 4 and 5 again, for new events.
    redis.command("HSET", "chatd:base:second", "ev:s", 3)
    for ev in (4, 5):
        redis.command("XADD", "chatd:log:s", f"0-{ev}", "d", f"new {ev}")
    redis.command("SET", "chatd:ev:s", 5)
    start, entries, back, run = redis.command("EVAL", scripts["resume"].source, 0, 200,
                                              2000, "n1", "s", 5, "first")
    assert (start, back, run) == (3, 1, b"second")
    assert [fields[1] for _, fields in entries] == [b"new 4", b"new 5"]
    # In the same run of Redis the bases say nothing: nothing was lost.
    assert redis.command("EVAL", scripts["resume"].source, 0, 200, 2000, "n1", "s", 5,
                         "second") == [5, [], 0, b"second"]
    # A second restart since: the base of the run between still counts.
    redis.command("SET", "chatd:run", "third")
    redis.command("LPUSH", "chatd:runs", "third")
    redis.command("HSET", "chatd:base:third", "ev:s", 5)
    assert redis.command("EVAL", scripts["resume"].source, 0, 200, 2000, "n1", "s", 5,
                         "first")[:2] == [3, entries]
