"""chatd's limits and its behaviour under awkward clients, through real sockets.

Each limit is set small in the test (an in-process chatd on 127.0.0.1,
port 0) so it is reached quickly; the test waits on frames, or on the
server's own counters with a timeout, never on a fixed sleep.  The last
part holds the regressions of the tutorial server this project grew from.
"""

import socket
import struct
import threading

import pytest

import framing
from support import ChatClient, assert_cut_too_slow, ids_of, running_server, serve, wait_until


def connection_of(server, name: str):
    """The server's Transport for the user `name` (read from the test thread)."""
    return wait_until(lambda: next((transport for transport in tuple(server.connections.open)
                                    if transport.protocol.name == name), None),
                      what=f"connection of {name}")


def test_rate_limit_drops_the_request_and_tells_the_sender_but_never_quit():
    with serve(rate_limit=1, rate_burst=3) as server, \
            ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        # alice's hello took one token; two says fit, the third is dropped.
        alice.send_raw(b"".join(framing.encode({"type": "say", "text": f"s{i}", "ref": i})
                                for i in range(3)))
        assert alice.next_of("msg")["ref"] == 0
        assert alice.next()["ref"] == 1
        refused = alice.next()
        assert (refused["type"], refused["code"], refused["ref"]) == ("error", "rate_limited", 2)
        alice.send({"type": "quit", "ref": "q"})
        assert alice.frames_until_close() == [{"type": "bye", "reason": "quit", "ref": "q"}]
        assert [frame["text"] for frame in (bob.next(), bob.next())] == ["s0", "s1"]
        assert bob.next()["type"] == "left"  # and no "s2"


def test_rate_limit_zero_turns_it_off():
    with serve(rate_limit=0, rate_burst=1) as server, \
            ChatClient(server.address, "alice") as alice:
        alice.send_raw(framing.encode({"type": "say", "text": "x"}) * 100)
        assert ids_of(alice.next() for _ in range(100)) == list(range(1, 101))


def test_max_clients_answers_server_full_then_bye_and_frees_the_slot():
    with serve(max_clients=2) as server, ChatClient(server.address, "alice") as alice:
        with ChatClient(server.address, "bob"):
            with ChatClient(server.address) as third:
                frames = third.frames_until_close()
                assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
                    ("error", "server_full"), ("bye", "server_full")]
            assert server.disconnects["server_full"] == 1
        wait_until(lambda: len(server.connections.open) == 1, what="bob's slot freed")
        with ChatClient(server.address, "carol") as carol:
            assert carol.welcome["users"] == ["carol", "alice"]


def test_many_connections_at_once_are_all_accepted_a_few_per_turn():
    with serve(accepts_per_turn=2) as server:
        clients = [ChatClient(server.address) for _ in range(40)]
        try:
            for number, client in enumerate(clients):
                client.hello(f"user{number}")
            assert server.core.user_count == 40
        finally:
            for client in clients:
                client.close()


def test_handshake_timeout_closes_a_silent_connection_only():
    with serve(handshake_timeout=0.3) as server, \
            ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address) as silent:
        frames = silent.frames_until_close()
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "timeout"), ("bye", "timeout")]
        alice.send({"type": "ping"})
        assert alice.next() == {"type": "pong"}  # welcomed before it: not timed out


def test_idle_timeout_closes_the_quiet_and_any_frame_keeps_a_connection():
    with serve(idle_timeout=0.5) as server, ChatClient(server.address, "busy") as busy, \
            ChatClient(server.address, "quiet") as quiet:
        assert busy.next()["type"] == "joined"
        outcome = {}
        reader = threading.Thread(
            target=lambda: outcome.update(frames=quiet.frames_until_close(timeout=10)))
        reader.start()
        pings, others = 0, []
        while reader.is_alive() and pings < 10_000:  # busy keeps talking meanwhile
            busy.send({"type": "ping"})
            busy.next(lambda m: m["type"] == "pong" or others.append(m))
            pings += 1
        reader.join()
        assert [(f["type"], f.get("code") or f.get("reason"))
                for f in outcome["frames"]] == [("error", "timeout"), ("bye", "timeout")]
        if not others:
            others.append(busy.next())
        assert others == [{"type": "left", "room": "lobby", "name": "quiet",
                           "reason": "timeout"}]
        busy.send({"type": "ping"})
        assert busy.next_of("pong") == {"type": "pong"}
        assert server.disconnects["timeout"] == 1


def test_presence_stops_above_presence_limit_but_the_actor_is_told():
    with serve(presence_limit=2) as server, ChatClient(server.address, "ann") as ann, \
            ChatClient(server.address, "bob") as bob:
        assert ann.next() == {"type": "joined", "room": "lobby", "name": "bob"}
        with ChatClient(server.address, "cy") as cy:  # the third lobby member
            assert cy.welcome["user_count"] == 3
            cy.send({"type": "nick", "name": "cyd"})
            assert cy.next() == {"type": "renamed", "old": "cy", "new": "cyd"}
            cy.send({"type": "leave", "room": "lobby"})
            assert cy.next() == {"type": "left", "room": "lobby", "name": "cyd"}
            cy.send({"type": "join", "room": "lobby"})
            assert cy.next() == {"type": "joined", "room": "lobby", "name": "cyd"}
        wait_until(lambda: server.core.user_count == 2, what="cy gone")
        for client in (ann, bob):  # heard none of cy's coming, renaming and going
            client.send({"type": "ping"})
            assert client.next() == {"type": "pong"}
            client.send({"type": "who"})
            assert client.next()["names"] == ["ann", "bob"]


def push_until(server, sender, readers, done, texts=200):
    """sender says 4,000-character texts until `done()`; readers must keep up.

    Bounded in count; returns how many messages were sent.
    """
    text = "x" * 4000
    sent = 0
    while not done() and sent < texts * 8:
        sender.send_raw(framing.encode({"type": "say", "text": text}) * 8)
        sent += 8
        for client in (sender, *readers):
            for _ in range(8):
                client.next_of("msg")
    return sent


def slow_client(server, name):
    """A client whose receive buffer is tiny and which does not read."""
    # Set before connecting, so the window stays small, yet above loopback's
    # 64 KiB segment size so reading it later is not throttled to a trickle.
    return ChatClient(server.address, name, receive_buffer=128 << 10)


@pytest.mark.parametrize("limit", ["hard", "soft"])
def test_a_client_that_never_reads_is_cut_off_too_slow_and_the_others_go_on(limit):
    settings = {"hard": dict(output_hard_limit=64 << 10),
                "soft": dict(output_soft_limit=32 << 10, output_soft_seconds=0.3)}[limit]
    with serve(**settings) as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        slow = slow_client(server, "slow")
        alice.next_of("joined"), bob.next_of("joined")
        if limit == "hard":
            push_until(server, alice, [bob], lambda: server.disconnects["too_slow"])
        else:
            slow_conn = connection_of(server, "slow")
            push_until(server, alice, [bob],
                       lambda: slow_conn.output.size > (32 << 10))
            # No more traffic: the soft limit's timer alone cuts it off.
        wait_until(lambda: server.disconnects["too_slow"], what="too_slow")
        frames = slow.frames_until_close()
        slow.close()
        assert_cut_too_slow(frames)
        alice.send({"type": "say", "text": "after"})
        after = bob.next_of("msg")
        assert after["text"] == "after" and after["id"] == alice.next_of("msg")["id"]
        bob.send({"type": "who"})
        assert bob.next_of("users")["names"] == ["alice", "bob"]


def test_readers_that_keep_reading_are_not_cut_by_many_flooding_senders():
    # Each turn reads up to 64 KiB from every sender; a reader must be written
    # more than write_per_turn then, or its queue grows with the sender count.
    senders_count, per_sender = 4, 3000
    with serve(output_hard_limit=256 << 10, output_soft_limit=64 << 10) as server:
        reader = ChatClient(server.address, "reader")
        senders = [ChatClient(server.address, f"s{i}") for i in range(senders_count)]
        try:
            flood = framing.encode({"type": "say", "text": "x" * 200}) * per_sender
            total = senders_count * per_sender

            def send_and_read_echoes(sender):
                sender.send_raw(flood)
                for _ in range(per_sender):
                    sender.next_of("msg", timeout=30)
            threads = [threading.Thread(target=send_and_read_echoes, args=(s,), daemon=True)
                       for s in senders]
            for thread in threads:
                thread.start()
            ids = [reader.next_of("msg", timeout=30)["id"] for _ in range(total)]
            assert ids == list(range(1, total + 1))
            for thread in threads:
                thread.join(30)
            assert server.disconnects["too_slow"] == 0
        finally:
            for client in (reader, *senders):
                client.close()


def test_a_reset_connection_frees_its_queued_output_at_once():
    # A generous hard limit, so the backlog stays queued until the reset.
    with serve(output_hard_limit=64 << 20) as server, \
            ChatClient(server.address, "alice") as alice:
        slow = slow_client(server, "slow")
        slow_conn = connection_of(server, "slow")
        watchdogs, protocol = server.chat.watchdogs, slow_conn.protocol
        assert protocol.watch_slot is not None
        push_until(server, alice, [], lambda: slow_conn.output.size > (512 << 10))
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        slow.close()
        alice.send({"type": "say", "text": "the server notices the reset"})
        wait_until(lambda: slow_conn.sock.fileno() == -1, what="the reset seen")
        wait_until(lambda: not slow_conn.output.chunks, what="its queue freed")
        # ... and its idle deadline, forgotten, no longer holds the connection.
        wait_until(lambda: protocol.watch_slot is None and all(
            protocol not in members for members in watchdogs._slots.values()),
            what="its idle deadline forgotten")


def test_frames_bigger_than_the_per_turn_write_budget_arrive_whole():
    with serve(write_per_turn=512) as server, ChatClient(server.address, "alice") as alice:
        texts = [str(i) * 4000 for i in range(10)]
        for text in texts:
            alice.send({"type": "say", "text": text})
        assert [alice.next()["text"] for _ in texts] == texts
        alice.send({"type": "history", "room": "lobby"})
        assert [m["text"] for m in alice.next()["messages"]] == texts


# ------------------------------------------------------------------ chunking

def test_frames_split_byte_by_byte_decode_the_same():
    with serve() as server, ChatClient(server.address) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = b"".join(framing.encode(message) for message in (
            {"type": "hello", "name": "alice", "ref": 1},
            {"type": "say", "text": "caf\u00e9 \U0001f600"},
            {"type": "ping", "data": [1, {"a": "b"}]}))
        for position in range(len(stream)):
            client.send_raw(stream[position:position + 1])
        assert client.next()["type"] == "welcome"
        assert client.next()["text"] == "caf\u00e9 \U0001f600"
        assert client.next() == {"type": "pong", "data": [1, {"a": "b"}]}


def test_many_frames_in_one_send_are_all_handled_in_order():
    with serve() as server, ChatClient(server.address) as client:
        requests = [{"type": "hello", "name": "alice"}] + \
                   [{"type": "say", "text": f"m{i}"} for i in range(200)] + [{"type": "who"}]
        client.send_raw(b"".join(map(framing.encode, requests)))
        frames = [client.next() for _ in requests]
        assert frames[0]["type"] == "welcome"
        assert [(f["id"], f["text"]) for f in frames[1:-1]] == \
            [(i + 1, f"m{i}") for i in range(200)]
        assert frames[-1]["type"] == "users"


def test_end_of_input_handles_what_came_before_flushes_and_closes():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        bob.send({"type": "say", "text": "last words"})
        bob.sock.shutdown(socket.SHUT_WR)
        frames = bob.frames_until_close()
        assert [f["type"] for f in frames] == ["msg", "bye"]
        assert frames[0]["text"] == "last words" and frames[1]["reason"] == "quit"
        alice.next_of("msg")
        assert alice.next() == {"type": "left", "room": "lobby", "name": "bob",
                                "reason": "disconnect"}
        assert server.disconnects["disconnect"] == 1


# --------------------------------------------- regressions of the tutorial server

def test_three_quick_sends_arrive_as_three_messages_never_merged():
    with serve() as server, ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        for text in ("one", "two", "three"):
            alice.send({"type": "say", "text": text})
        frames = [bob.next(), bob.next(), bob.next()]
        assert [(f["id"], f["text"]) for f in frames] == [(1, "one"), (2, "two"), (3, "three")]


def test_a_utf8_character_split_across_two_reads_decodes():
    with serve() as server, ChatClient(server.address, "alice") as alice:
        text = "\u20ac\U0001f600\u00e9"
        data = framing.encode({"type": "say", "text": text})
        cut = data.index("\U0001f600".encode()) + 2  # in the middle of the emoji
        alice.send_raw(data[:cut])
        conn = connection_of(server, "alice")
        wait_until(lambda: conn.protocol.decoder.buffered == cut, what="first half read by itself")
        alice.send_raw(data[cut:])
        assert alice.next()["text"] == text


@pytest.mark.parametrize("death", ["reset", "close"])
def test_a_client_dying_mid_broadcast_costs_no_one_that_message_or_the_next(death):
    with serve() as server, ChatClient(server.address, "sender") as sender:
        readers = [ChatClient(server.address, f"reader{i}") for i in range(2)]
        dying = ChatClient(server.address, "dying")
        try:
            sender.send_raw(b"".join(framing.encode({"type": "say", "text": f"m{i}"})
                                     for i in range(300)))
            dying.next_of("msg")  # the broadcast is under way
            if death == "reset":
                dying.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
            dying.close()
            sender.send({"type": "say", "text": "next"})
            for reader in readers:
                frames = []
                while not ({"next", "dying"} <= {f.get("text") or f.get("name")
                                                 for f in frames if f["type"] != "joined"}):
                    frames.append(reader.next())
                assert ids_of(frames) == list(range(1, 302))
                assert [f["name"] for f in frames if f["type"] == "left"] == ["dying"]
        finally:
            for reader in readers:
                reader.close()


# ------------------------------------------------------------- the defaults

def test_default_rate_limit_is_a_burst_of_20_then_10_per_second():
    with running_server() as server, ChatClient(server.address, "alice") as alice:
        # The hello took one token of the burst of 20; 30 says arrive at once.
        alice.send_raw(framing.encode({"type": "say", "text": "x"}) * 30)
        frames = [alice.next() for _ in range(30)]
        accepted = len(ids_of(frames))
        # 19 from the burst, plus 10/s refilled while they were handled.
        assert 19 <= accepted <= 24, frames
        assert [f["code"] for f in frames if f["type"] == "error"] == \
            ["rate_limited"] * (30 - accepted)


def test_default_twenty_bad_messages_close_the_connection():
    with running_server() as server, ChatClient(server.address, "alice") as alice:
        alice.send_raw(framing.frame(b"[]") * 25)
        frames = alice.frames_until_close()
        assert [f.get("code") for f in frames[:20]] == ["bad_message"] * 20
        assert frames[20:] == [{"type": "error", "code": "bad_message",
                                "message": frames[20]["message"]},
                               {"type": "bye", "reason": "abuse"}]


def test_default_max_frame_is_64_kib():
    with running_server() as server, ChatClient(server.address, "alice") as alice:
        payload = b'{"type":"ping","data":"' + b"x" * 65_500 + b'"}'
        alice.send_raw(framing.frame(payload, 65_536))
        assert alice.next() == {"type": "pong", "data": "x" * 65_500}
        alice.send_raw((65_537).to_bytes(4, "big"))
        frames = alice.frames_until_close()
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "frame_too_large"), ("bye", "frame_too_large")]


@pytest.mark.parametrize("store, retained", [("memory", 1), ("memory", 0), ("file", 0)])
def test_an_emptied_room_keeps_its_ids_going_up(store, retained, tmp_path):
    # In memory within retained_rooms the history is kept; beyond it the room
    # numbers above every dropped one; with a file it is reloaded from it.
    path = "memory" if store == "memory" else str(tmp_path / "chatd.db")
    with serve(retained_rooms=retained, store=path) as server, \
            ChatClient(server.address, "alice") as alice:
        ids = []
        for _ in range(2):
            alice.send({"type": "join", "room": "dev"})
            alice.send({"type": "say", "room": "dev", "text": "hi"})
            alice.send({"type": "leave", "room": "dev"})  # the room vanishes
            ids.append(alice.next_of("msg")["id"])
            alice.next_of("left")
        assert ids == [1, 2]


def test_private_pairs_never_reuse_an_id_beyond_max_conversations():
    with serve(max_conversations=1) as server, ChatClient(server.address, "ann") as ann, \
            ChatClient(server.address, "bob") as bob, ChatClient(server.address, "cy"):
        ids = []
        for to in ("bob", "bob", "cy", "bob"):  # ann-cy evicts ann-bob, the oldest
            ann.send({"type": "dm", "to": to, "text": "hi"})
            ids.append(ann.next_of("msg")["id"])
        # ann-bob came back above the ids of every dropped pair: 1, 2, then 3.
        assert ids == [1, 2, 1, 3]
        bob.send({"type": "history", "with": "ann"})
        assert [m["id"] for m in bob.next_of("history")["messages"]] == [3]


def test_at_shutdown_a_flushed_client_that_never_hangs_up_gets_the_linger_not_the_deadline():
    with serve(shutdown_timeout=60) as server, ChatClient(server.address, "stubborn") as c:
        server.request_shutdown()
        assert c.next() == {"type": "bye", "reason": "shutdown"}
        assert c.frames_until_close() == []  # the server's half-close
        # c never closes its end; the server lets go after LINGER_SECONDS (2 s).
        wait_until(lambda: not server.connections.open, timeout=10, what="the linger")


def test_the_shutdown_flush_deadline_closes_a_client_that_never_hangs_up():
    with serve(shutdown_timeout=0.3) as server, ChatClient(server.address, "stubborn") as c:
        server.request_shutdown()
        assert c.next() == {"type": "bye", "reason": "shutdown"}
        # stubborn never closes; the server closes it at the deadline.
        assert c.frames_until_close() == []
        assert server.disconnects == {"shutdown": 1}
