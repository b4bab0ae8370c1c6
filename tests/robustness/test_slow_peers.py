"""Peers that read slowly, never, or a byte at a time, half-close or crash:
each is dealt with (cut off with a reason, timed out, or served exactly)
while the well-behaved clients keep chatting undisturbed."""

import time

import framing
from chatters import Chatters, percentile
from crowd import Crowd
from probes import MIB, PeakRss, assert_healthy, cpu_seconds
from support import ChatClient, ServerProcess, kernel_send_buffer_max

TEXT_CHARS = 4_000   # the largest text chat/1 allows: the fastest way to fill a queue


def _line(index: int) -> str:
    """A 4,000-character text that says which line it is."""
    head = f"line {index} "
    return head + "x" * (TEXT_CHARS - len(head))


def _flood(crowd: Crowd, sender, room: str, count: int, until, window: int = 32,
           timeout: float = 30) -> list[str]:
    """Say up to `count` lines into `room`, `window` unanswered at most, until
    `until()`; return the lines the server accepted (echoed), in order."""
    sent, echoed, scanned = [], 0, 0
    deadline = time.monotonic() + timeout

    def count_echoes():
        nonlocal echoed, scanned
        echoed += sum(1 for frame in sender.frames[scanned:] if frame["type"] == "msg"
                      and frame.get("room") == room and frame["from"] == sender.name)
        scanned = len(sender.frames)
        return echoed

    while len(sent) < count and not until() and time.monotonic() < deadline:
        while len(sent) < count and len(sent) - count_echoes() < window:
            sent.append(_line(len(sent)))
            crowd.send(sender, {"type": "say", "room": room, "text": sent[-1]})
        crowd.pump(0.01)
    crowd.run_until(lambda: count_echoes() == len(sent), 10, "the sender's echoes")
    return sent


def _room_lines(peer, room: str) -> list[dict]:
    return [frame for frame in peer.frames if frame["type"] == "msg" and frame.get("room") == room]


def _assert_consecutive(messages: list[dict]) -> None:
    ids = [message["id"] for message in messages]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "gap or reorder in ids"


def _sender_and_paused_reader(crowd: Crowd, room: str, reader_name: str):
    """A sender and a reader (4 KiB receive window) both in `room`; the reader paused."""
    sender, = crowd.open(["sender"])
    reader, = crowd.open([reader_name], rcvbuf=4096)
    for peer in (sender, reader):
        crowd.send(peer, {"type": "join", "room": room})
    crowd.run_until(lambda: reader.has("users", room=room) and sender.has(
        "users", room=room), 5, f"both in the {room} room")
    crowd.pause(reader)
    return sender, reader


def test_a_client_that_never_reads_is_cut_off_at_the_limit_and_the_rest_chat_on():
    with ServerProcess("--rate-limit", "0") as server, \
            Chatters((server.host, server.port), interval=0.02) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        sender, stuck = _sender_and_paused_reader(crowd, "flood", "stuck")

        def cut():
            return any("too slow" in line for line in server.lines[-20:])

        with PeakRss(server.pid) as memory:
            # Flood (at most 50,000 lines) until the stuck client is cut, and no
            # longer: from the cut on it has LINGER_SECONDS (2 s) to read its last
            # words before the server aborts it, so it must start reading soon.
            sent = _flood(crowd, sender, "flood", 50_000, cut)
        cut_line = server.wait_for_log("too slow")
        assert "over 1048576 bytes queued" in cut_line, cut_line
        crowd.pause(stuck, False)
        crowd.run_until(lambda: stuck.eof, 10, "the stuck client's close")

        assert not stuck.bad_frames, "the cut broke the framing of what was sent"
        assert stuck.frames[-2:] == [
            {"type": "error", "code": "too_slow", "message": stuck.frames[-2]["message"]},
            {"type": "bye", "reason": "too_slow"}]
        got = _room_lines(stuck, "flood")
        _assert_consecutive(got)
        assert [m["text"] for m in got] == sent[:len(got)]
        assert len(got) < len(sent), "the stuck client was cut off only after it caught up"

        latencies = chatters.check()
        print(f"\nstuck client cut after {len(got)} of {len(sent)} lines; server RSS peak "
              f"+{memory.growth / MIB:.1f} MiB; chatters' p99 "
              f"{percentile(latencies, 0.99) * 1000:.1f} ms over {len(latencies)} lines")
        memory.assert_bounded()
        assert_healthy(server)


def test_a_tiny_receive_window_is_served_megabytes_exact_and_in_order():
    # The kernel's buffers hold the first few MiB; a megabyte beyond them
    # must wait in the server's queue and leave it in partial sends.
    volume = kernel_send_buffer_max() + MIB
    limit = str(2 * volume)   # served, not cut off as too slow
    with ServerProcess("--rate-limit", "0", "--output-hard-limit", limit,
                       "--output-soft-limit", limit) as server, \
            Crowd((server.host, server.port)) as crowd:
        sender, reader = _sender_and_paused_reader(crowd, "bulk", "reader")
        # Accepted (echoed to the sender) means queued for the paused reader too.
        sent = _flood(crowd, sender, "bulk", volume // TEXT_CHARS + 1, lambda: False)
        assert sum(len(text) for text in sent) >= volume
        crowd.pause(reader, False)
        crowd.run_until(lambda: len(_room_lines(reader, "bulk")) >= len(sent), 20,
                        "the reader catching up")
        got = _room_lines(reader, "bulk")
        assert not reader.bad_frames and not reader.eof
        _assert_consecutive(got)
        assert [m["text"] for m in got] == sent
        assert not any("too slow" in line for line in server.lines)
        assert_healthy(server)


def test_slowloris_clients_are_timed_out_while_newcomers_get_in_at_once():
    handshake, idle = 1.5, 2.5
    with ServerProcess("--handshake-timeout", str(handshake), "--idle-timeout", str(idle),
                       ) as server, PeakRss(server.pid) as memory, \
            Chatters((server.host, server.port)) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        hello = framing.encode({"type": "hello", "name": "slow"})
        say = framing.encode({"type": "say", "text": "hi"})
        # Half never finish hello; half are welcomed, then never finish a frame.
        strangers = crowd.open([None] * 100)
        members = crowd.open([f"loris{index}" for index in range(100)])
        started = time.monotonic()
        trickles = {peer: hello for peer in strangers} | {peer: say for peer in members}
        welcome_times = []
        sent_bytes = 0
        # A byte every half second each: bytes, not frames, must not keep them alive.
        while not all(peer.eof for peer in trickles) and time.monotonic() - started < 10:
            for peer, frame in trickles.items():
                if not peer.eof:
                    crowd.send_raw(peer, frame[sent_bytes % len(frame):][:1])
            sent_bytes += 1
            began = time.monotonic()
            with ChatClient((server.host, server.port), f"newcomer{sent_bytes}"):
                welcome_times.append(time.monotonic() - began)
            crowd.run_for(0.5)
        for peer in trickles:
            assert peer.eof, "a slowloris client is still connected"
            assert [f for f in peer.frames if f["type"] in ("error", "bye")][-2:] == [
                {"type": "error", "code": "timeout", "message": peer.frames[-2]["message"]},
                {"type": "bye", "reason": "timeout"}]
        strangers_out = max(p.eof_at for p in strangers) - started
        members_out = max(p.eof_at for p in members) - started
        # Each by its own timer, on time: strangers well before the idle timeout.
        assert strangers_out < handshake + 0.5 < idle
        assert members_out < idle + 0.5
        print(f"\nslowloris: strangers dropped by {strangers_out:.2f}s, members by "
              f"{members_out:.2f}s; slowest newcomer welcome {max(welcome_times) * 1000:.1f} ms")
        assert max(welcome_times) < 0.100, f"welcome took {max(welcome_times) * 1000:.0f} ms"
        chatters.check()
        memory.assert_bounded()
        assert_healthy(server)


def test_a_frame_then_a_half_close_is_delivered_then_closed_and_the_server_idles():
    with ServerProcess() as server, Chatters((server.host, server.port)) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        leaver, = crowd.open(["leaver"])
        crowd.send(leaver, {"type": "join", "room": "calm"})
        crowd.run_until(lambda: leaver.has("users", room="calm"), 5, "leaver in the room")
        crowd.send(leaver, {"type": "say", "room": "calm", "text": "last words"})
        crowd.half_close(leaver)
        closed_at = time.monotonic()
        crowd.run_until(lambda: leaver.eof, 5, "the server closing the half-closed peer")
        assert leaver.eof_at - closed_at < 1.0
        assert leaver.has("msg", text="last words")
        assert leaver.frames[-1] == {"type": "bye", "reason": "quit"}
        for chatter in chatters.peers:
            crowd.run_until(lambda: chatter.has("msg", text="last words"), 5,
                            "the last words reaching the room")
        chatters.check()
        # With nobody talking, a second of wall time must cost almost no CPU.
        before, began = cpu_seconds(server.pid), time.monotonic()
        crowd.run_for(1.0)
        used = (cpu_seconds(server.pid) - before) / (time.monotonic() - began)
        print(f"\nhalf-close: closed after {(leaver.eof_at - closed_at) * 1000:.1f} ms; "
              f"idle CPU {used:.1%}")
        assert used < 0.05, f"server CPU {used:.0%} while idle"
        assert_healthy(server)


def test_clients_reset_during_a_storm_cost_the_survivors_nothing():
    with ServerProcess("--rate-limit", "0") as server, PeakRss(server.pid) as memory, \
            Crowd((server.host, server.port)) as crowd:
        peers = crowd.open([f"user{index}" for index in range(50)])
        victims, survivors = peers[40:], peers[:40]
        senders = survivors[:5]
        for victim in victims[::2]:
            crowd.pause(victim)   # half of them die with output still queued
        total, sent = 1_000, 0
        victim_ports = []
        deadline = time.monotonic() + 30
        while sent < total and time.monotonic() < deadline:
            for sender in senders:
                crowd.send(sender, {"type": "say", "text": f"storm {sent}"})
                sent += 1
            if sent % 100 == 0 and victims:
                victim = victims.pop()
                victim_ports.append(victim.sock.getsockname()[1])
                crowd.reset(victim)
            crowd.pump(0)
        assert not victims, "not every victim was reset"
        # Order holds per connection, not across them: a ping read before a
        # sender's last says would be answered first. So the pings go out only
        # once every sender has its own last say back, that is once the server
        # has taken every say of the storm.
        last_texts = {sender.name: f"storm {sent - len(senders) + index}"
                      for index, sender in enumerate(senders)}
        crowd.run_until(lambda: all(sender.has("msg", text=last_texts[sender.name])
                                    for sender in senders), 20, "the senders' last echoes")
        for peer in survivors:
            crowd.send(peer, {"type": "ping", "ref": "after-storm"})
        crowd.run_until(lambda: all(p.has("pong", ref="after-storm") for p in survivors), 20,
                        "survivors' pongs")
        for peer in survivors:
            storm = [m for m in peer.frames if m["type"] == "msg"]
            assert len(storm) == total, f"{peer.name} got {len(storm)} of {total}"
            _assert_consecutive(storm)
            assert not peer.eof and not peer.bad_frames
        for port in victim_ports:
            server.wait_for_log(rf"closing 127\.0\.0\.1:{port} ")
        memory.assert_bounded()
        assert_healthy(server)
