"""Stopping the server under load: SIGTERM flushes every reader everything
the server accepted, then `bye`, and exits 0 in time even with a client
that never reads; SIGKILL leaves clients a plain close, and chatcli comes
back by itself once a server listens on the port again."""

import time

from crowd import Crowd
from support import ChatClient, ServerProcess
from test_chatcli_e2e import Cli

SHUTDOWN_SECONDS = 3.0   # what the never-reading client can hold the exit up


def test_sigterm_under_load_flushes_every_accepted_message_then_bye_and_exits_zero():
    with ServerProcess("--rate-limit", "0", "--shutdown-timeout", str(SHUTDOWN_SECONDS)) \
            as server, Crowd((server.host, server.port)) as crowd:
        senders = crowd.open([f"sender{index}" for index in range(100)], timeout=20)
        readers = crowd.open([f"reader{index}" for index in range(5)])
        stuck, = crowd.open(["stuck"], rcvbuf=4096)
        crowd.pause(stuck)
        sent, began, signalled_at = 0, time.monotonic(), None
        # Each sender says about 3 lines a second until the server says bye.
        while not all(peer.eof for peer in senders + readers):
            elapsed = time.monotonic() - began
            assert elapsed < 15, "the server never closed the readers"
            if signalled_at is None and elapsed > 1.5:
                server.process.terminate()
                signalled_at = time.monotonic()
            while sent < elapsed * 3 * len(senders):   # round robin over the senders
                peer = senders[sent % len(senders)]
                if not peer.eof:
                    crowd.send(peer, {"type": "say", "text": f"line {sent}"})
                sent += 1
            crowd.pump(0.005)
        assert server.process.wait(10) == 0
        exited_after = time.monotonic() - signalled_at
        assert exited_after < 5.0, f"exit took {exited_after:.1f}s"

        everyone = senders + readers
        accepted = max(m["id"] for peer in everyone for m in peer.of_type("msg"))
        assert accepted > 100, "too little load to prove anything"
        for peer in everyone:
            assert not peer.bad_frames
            ids = [m["id"] for m in peer.of_type("msg")]
            assert ids == list(range(1, accepted + 1)), \
                f"{peer.name} got {len(ids)} of {accepted} accepted lines"
            assert peer.frames[-1] == {"type": "bye", "reason": "shutdown"}
        # Every accepted line reached its sender too: accepted means echoed.
        echoes = sum(1 for peer in senders for m in peer.of_type("msg") if m["from"] == peer.name)
        assert echoes == accepted
        assert not [line for line in server.lines if "Traceback" in line]


def test_sigkill_closes_every_client_and_chatcli_reconnects_to_the_restarted_server():
    with ServerProcess() as first, Crowd((first.host, first.port)) as crowd:
        port = first.port
        peers = crowd.open([f"user{index}" for index in range(20)])
        with Cli(port, "--name", "alice", "--room", "dev") as alice:
            alice.out.wait_for("you joined #dev")
            first.process.kill()
            assert first.process.wait(5) != 0
            crowd.run_until(lambda: all(peer.eof for peer in peers), 2,
                            "every client seeing the close")
            # Killed, the server said nothing more: no bye, only the close.
            assert not any(peer.has("bye") for peer in peers)
            alice.err.wait_for("reconnecting in")
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
