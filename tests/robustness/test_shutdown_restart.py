"""Stopping the server under load: SIGTERM flushes every reader everything
the server accepted, then `bye`, and exits 0 in time even with a client
that never reads; SIGKILL leaves clients a plain close, and chatcli comes
back by itself once a server listens on the port again."""

import time

from crowd import Crowd
from support import ChatClient, CliProcess, ServerProcess, kernel_send_buffer_max

SHUTDOWN_SECONDS = 3.0   # what the never-reading client can hold the exit up


def test_sigterm_under_load_flushes_every_accepted_message_then_bye_and_exits_zero():
    # Room for the readers' backlog: they must be flushed, not cut off.
    limit = str(64 << 20)
    with ServerProcess("--rate-limit", "0", "--shutdown-timeout", str(SHUTDOWN_SECONDS),
                       "--output-hard-limit", limit, "--output-soft-limit", limit) as server, \
            Crowd((server.host, server.port)) as crowd:
        senders = crowd.open([f"sender{index}" for index in range(100)], timeout=20)
        # Readers with a small window that stop reading while a bulk sender
        # pushes more than the kernel can buffer: at SIGTERM the server
        # still holds a backlog for them, which it must flush before bye.
        readers = crowd.open([f"reader{index}" for index in range(5)], rcvbuf=4096)
        bulk, = crowd.open(["bulk"])
        for peer in readers + [bulk]:
            crowd.send(peer, {"type": "join", "room": "bulk"})
        crowd.run_until(lambda: all(p.has("users", room="bulk") for p in readers + [bulk]), 5,
                        "readers in the bulk room")
        for reader in readers:
            crowd.pause(reader)
        stuck, = crowd.open(["stuck"], rcvbuf=4096)
        crowd.pause(stuck)
        bulk_lines = (kernel_send_buffer_max() + (1 << 20)) // 4_000 + 1
        sent, bulk_sent, began, signalled_at = 0, 0, time.monotonic(), None
        # Each sender says about 3 lines a second until the server says bye.
        while not all(peer.eof for peer in senders + readers):
            elapsed = time.monotonic() - began
            assert elapsed < 20, "the server never closed the readers"
            echoed = sum(1 for m in bulk.of_type("msg") if m.get("room") == "bulk")
            while bulk_sent < bulk_lines and bulk_sent - echoed < 32:
                crowd.send(bulk, {"type": "say", "room": "bulk",
                                  "text": f"{bulk_sent} ".ljust(4_000, "b")})
                bulk_sent += 1
            if signalled_at is None and elapsed > 1.5 and echoed == bulk_lines:
                server.process.terminate()
                signalled_at = time.monotonic()
            if signalled_at is not None and readers[0].paused and any(
                    "SIGTERM" in line for line in server.lines):
                for reader in readers:
                    crowd.pause(reader, False)
            while sent < elapsed * 3 * len(senders):   # round robin over the senders
                peer = senders[sent % len(senders)]
                if not peer.eof:
                    crowd.send(peer, {"type": "say", "text": f"line {sent}"})
                sent += 1
            crowd.pump(0.005)
        assert server.process.wait(10) == 0
        exited_after = time.monotonic() - signalled_at
        print(f"\nSIGTERM: exit 0 after {exited_after:.2f}s")
        assert exited_after < 5.0, f"exit took {exited_after:.1f}s"
        for reader in readers:
            got = [m["text"] for m in reader.of_type("msg") if m.get("room") == "bulk"]
            assert got == [f"{index} ".ljust(4_000, "b") for index in range(bulk_lines)], \
                f"{reader.name} got {len(got)} of {bulk_lines} bulk lines"

        everyone = senders + readers
        accepted = max(m["id"] for peer in everyone for m in peer.of_type("msg")
                       if m.get("room") == "lobby")
        assert accepted > 100, "too little load to prove anything"
        for peer in everyone:
            assert not peer.bad_frames
            ids = [m["id"] for m in peer.of_type("msg") if m.get("room") == "lobby"]
            assert ids == list(range(1, accepted + 1)), \
                f"{peer.name} got {len(ids)} of {accepted} accepted lines"
            assert peer.frames[-1] == {"type": "bye", "reason": "shutdown"}
        # Every accepted line reached its sender too: accepted means echoed.
        echoes = sum(1 for peer in senders for m in peer.of_type("msg")
                     if m["from"] == peer.name and m.get("room") == "lobby")
        assert echoes == accepted
        assert not [line for line in server.lines if "Traceback" in line]


def test_sigkill_closes_every_client_and_chatcli_reconnects_to_the_restarted_server():
    with ServerProcess() as first, Crowd((first.host, first.port)) as crowd:
        port = first.port
        peers = crowd.open([f"user{index}" for index in range(20)])
        with CliProcess(port, "--name", "alice", "--room", "dev") as alice:
            alice.out.wait_for("you joined #dev")
            first.process.kill()
            assert first.process.wait(5) != 0
            crowd.run_until(lambda: all(peer.eof for peer in peers), 2,
                            "every client seeing the close")
            # Killed, the server said nothing more: no bye, only the close.
            assert not any(peer.has("bye") for peer in peers)
            alice.err.wait_for(r"connection lost.*retrying in")
            with ServerProcess("--port", str(port)) as second, \
                    ChatClient((second.host, second.port), "bob") as bob:
                alice.err.wait_for(r"reconnected as alice; rejoining #lobby, #dev", timeout=15)
                bob.send({"type": "join", "room": "dev"})
                bob.next_of("users")
                bob.send({"type": "say", "room": "dev", "text": "after the crash"})
                alice.out.wait_for("<bob> after the crash")
                alice.type("alice is back")
                assert bob.next(lambda m: m["type"] == "msg" and m["from"] == "alice")["text"] \
                    == "alice is back"
                assert alice.finish() == 0
