"""Pressure on connections: ten thousand at once, a full server, a server
out of file descriptors, endless churn and a busy room of hundreds, with
chat still answered quickly and nothing leaked."""

import random
import re
import resource
import time

from chatters import Chatters
from crowd import Crowd
from probes import MIB, PeakRss, assert_healthy, cpu_seconds, open_fds, rss_bytes
from support import ServerProcess, wait_until

HELD = 10_000


def _raise_own_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        assert hard >= wanted, f"this machine allows {hard} open files; the test needs {wanted}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def test_ten_thousand_connections_are_welcomed_and_still_answered():
    _raise_own_fd_limit(HELD + 200)
    with ServerProcess("--max-clients", str(HELD + 100)) as server, \
            Chatters((server.host, server.port)) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        fds_before, rss_before = open_fds(server.pid), rss_bytes(server.pid)
        began = time.monotonic()
        peers = crowd.open([f"held{index}" for index in range(HELD)], timeout=30)
        took = time.monotonic() - began
        rss_held = rss_bytes(server.pid)
        assert open_fds(server.pid) >= fds_before + HELD
        # An idle connection costs a few KiB; 8 KiB each leaves room for the allocator.
        assert rss_held - rss_before < HELD * 8 * 1024, \
            f"{(rss_held - rss_before) / HELD / 1024:.1f} KiB per idle connection"
        sample = random.Random(6).sample(peers, 100)
        for index, peer in enumerate(sample):
            crowd.send(peer, {"type": "ping", "ref": index})
        crowd.run_until(lambda: all(p.has("pong", ref=i) for i, p in enumerate(sample)), 10,
                        "pongs from a sample of the crowd")
        assert not any(peer.bad_frames or peer.eof for peer in peers)
        for peer in peers:
            crowd.close(peer)
        # Every connection of the crowd is gone again: no descriptor kept.
        wait_until(lambda: open_fds(server.pid) <= fds_before, 30, "the server's fds back")
        chatters.check()
        assert_healthy(server)
        print(f"\n{HELD} connections welcomed in {took:.1f}s; RSS {rss_before / MIB:.1f} -> "
              f"{rss_held / MIB:.1f} MiB ({(rss_held - rss_before) / HELD / 1024:.1f} KiB "
              f"per idle connection); fds {fds_before} after closing them all")


def test_max_clients_reached_answers_server_full_and_frees_up_on_leave():
    with ServerProcess("--max-clients", "8") as server, \
            Chatters((server.host, server.port)) as chatters, \
            Crowd((server.host, server.port)) as crowd:
        members = crowd.open([f"member{index}" for index in range(5)])
        refused, = crowd.open([None])
        crowd.run_until(lambda: refused.eof, 5, "the ninth connection closed")
        assert [frame["type"] for frame in refused.frames] == ["error", "bye"]
        assert refused.frames[0]["code"] == "server_full"
        assert refused.frames[1] == {"type": "bye", "reason": "server_full"}
        full = open_fds(server.pid)
        crowd.send(members[0], {"type": "quit"})
        crowd.run_until(lambda: members[0].eof, 5, "the member's bye")
        wait_until(lambda: open_fds(server.pid) < full, 5, "the member's socket released")
        began = time.monotonic()
        newcomer, = crowd.open(["newcomer"])
        assert time.monotonic() - began < 1.0
        assert newcomer.welcomed
        chatters.check()
        assert_healthy(server)


def test_out_of_file_descriptors_no_busy_loop_and_accepts_resume():
    with ServerProcess() as server:
        # The server raised its own limit at start; pin it to 64 from outside
        # so accept() really runs out (EMFILE), as on a misconfigured host.
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (64, 64))
        with Chatters((server.host, server.port)) as chatters, \
                Crowd((server.host, server.port)) as crowd:
            room = 64 - open_fds(server.pid)   # descriptors left for knockers
            knockers = [crowd.add(f"knocker{index}") for index in range(100)]
            crowd.run_until(lambda: sum(p.welcomed for p in knockers) == room, 5,
                            "the server to fill its descriptors")
            crowd.run_until(lambda: any("accept failed" in line for line in server.lines), 5,
                            "the server to run out of descriptors")
            inside = [p for p in knockers if p.welcomed]
            assert open_fds(server.pid) == 64
            # Two seconds with 100 - len(inside) connections waiting in the backlog.
            before, began = cpu_seconds(server.pid), time.monotonic()
            crowd.run_for(2.0)
            used = (cpu_seconds(server.pid) - before) / (time.monotonic() - began)
            print(f"\nout of descriptors: {len(inside)} knockers in, server CPU {used:.1%}")
            assert used < 0.10, f"server CPU {used:.0%} while out of descriptors"
            assert sum(p.welcomed for p in knockers) == len(inside)
            for peer in inside[:50]:
                crowd.close(peer)
            left_at = time.monotonic()
            crowd.run_until(lambda: sum(p.welcomed for p in knockers) > len(inside), 5,
                            "a waiting knocker welcomed")
            waited = time.monotonic() - left_at
            print(f"a waiting knocker in {waited * 1000:.0f} ms after 50 left")
            assert waited < 1.0
            crowd.run_until(lambda: all(p.welcomed for p in knockers), 5,
                            "every knocker in at last")
            chatters.check()
        assert_healthy(server)


def test_twenty_thousand_connect_disconnect_cycles_leak_nothing():
    with ServerProcess() as server, Chatters((server.host, server.port)) as chatters:
        cycles, batch = 20_000, 500

        def churn(count: int, offset: int) -> None:
            with Crowd((server.host, server.port)) as crowd:
                for start in range(offset, offset + count, batch):
                    # Three kinds of visitor: welcomed, never said hello, crashed.
                    names = [f"visitor{n}" if n % 3 else None for n in range(start, start + batch)]
                    peers = crowd.open(names, timeout=30)
                    for index, peer in enumerate(peers):
                        if index % 4 == 0:
                            crowd.reset(peer)
                        else:
                            crowd.close(peer)

        def connections_gone():
            return open_fds(server.pid) <= fds_before

        fds_before = open_fds(server.pid)
        churn(2_000, 0)   # the allocator's first growth is not a leak
        wait_until(connections_gone, 20, "warm-up connections closed")
        rss_before = rss_bytes(server.pid)
        began = time.monotonic()
        churn(cycles, 2_000)
        wait_until(connections_gone, 20, "churned connections closed")
        took = time.monotonic() - began
        fds_after, rss_after = open_fds(server.pid), rss_bytes(server.pid)
        chatters.check()
        assert_healthy(server)
        assert fds_after == fds_before
        assert rss_after < rss_before + 2 * MIB, \
            f"RSS {rss_before / MIB:.1f} -> {rss_after / MIB:.1f} MiB after {cycles} cycles"
        print(f"\n{cycles} cycles in {took:.1f}s; fds {fds_before} -> {fds_after}; "
              f"RSS {rss_before / MIB:.2f} -> {rss_after / MIB:.2f} MiB")


def test_500_clients_sending_5_per_second_lose_nothing_and_the_longest_turn_is_told():
    clients, rate, seconds, room_size = 500, 5.0, 4.0, 10
    with ServerProcess() as server, PeakRss(server.pid) as memory, \
            Crowd((server.host, server.port)) as crowd:
        peers = crowd.open([f"busy{index}" for index in range(clients)], timeout=30)
        for index, peer in enumerate(peers):
            crowd.send(peer, {"type": "join", "room": f"room{index // room_size}"})
        crowd.run_until(lambda: all(p.has("users") for p in peers), 10, "rooms joined")
        sent = [0] * clients
        began = time.monotonic()
        # Each client's sends are spread over the period, not all at once.
        offsets = [index / clients / rate for index in range(clients)]
        while (elapsed := time.monotonic() - began) < seconds:
            for index, peer in enumerate(peers):
                if sent[index] < int((elapsed - offsets[index]) * rate) + 1 and \
                        elapsed >= offsets[index]:
                    crowd.send(peer, {"type": "say", "room": f"room{index // room_size}",
                                      "text": f"{peer.name} {sent[index]}"})
                    sent[index] += 1
            crowd.pump(0.005)
        # Order holds per connection only: the pings go out once every client
        # has its own last say back, so no say is still on its way in.
        crowd.run_until(lambda: all(peer.has("msg", text=f"{peer.name} {sent[index] - 1}")
                                    for index, peer in enumerate(peers) if sent[index]),
                        20, "every client's last echo")
        for peer in peers:
            crowd.send(peer, {"type": "ping", "ref": "done"})
        crowd.run_until(lambda: all(p.has("pong", ref="done") for p in peers), 20,
                        "everyone's last pong")
        for index, peer in enumerate(peers):
            room = index // room_size
            expected = sum(sent[room * room_size:(room + 1) * room_size])
            got = [m["id"] for m in peer.frames if m["type"] == "msg"]
            assert got == list(range(1, expected + 1)), f"{peer.name} lost messages"
            assert not peer.of_type("error"), peer.of_type("error")[:3]
        memory.assert_bounded()
        assert server.stop() == 0
        line = server.wait_for_log(r"longest loop turn so far: [\d.]+ ms")
        longest = float(re.search(r"([\d.]+) ms", line).group(1))
        assert not [line for line in server.lines if "Traceback" in line]
        print(f"\n{sum(sent)} says in {seconds:.0f}s from {clients} clients; "
              f"longest loop turn {longest} ms")
