"""chatcli against the failure reports of issue 15, each replayed end to end.

The real client runs as a subprocess; between it and a real chatd sits a
`Relay` the test steers (cut a connection, hold new ones, black-hole a
link, turn a reconnect away after reading its hello).  Every wait is on
output, a frame or a relay event, with a timeout; time is only measured.
"""

import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import time

import pytest

from chatcli.connect import ATTEMPT_DELAY, Dialer, interleave
from support import REPO, WAIT, ChatClient, CliProcess, Relay, serve


def run_cli(port: int, *options, stdin: str = "", timeout: float = WAIT * 2):
    return subprocess.run([sys.executable, "-m", "chatcli", "--port", str(port), *options],
                          cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


def say_and_confirm(client: ChatClient, room: str, texts):
    """Say each of `texts` in `room` and return once the last one is echoed
    (the server has then taken them all)."""
    for text in texts:
        client.send({"type": "say", "room": room, "text": text})
    last = texts[-1]
    client.next(lambda m: m["type"] == "msg" and m.get("room", "").lower() == room.lower()
                and m["from"] == client.welcome["name"] and m["text"] == last)


def frames_up_to_pong(client: ChatClient) -> list:
    """Every frame the server sent `client` before it answered a ping sent now."""
    client.send({"type": "ping", "data": "fence"})
    frames = []
    while True:
        frame = client.next()
        if frame["type"] == "pong" and frame.get("data") == "fence":
            return frames
        frames.append(frame)

# ------------------------------------------------- 1. catch-up past one page


def missed_while_away(relay: Relay, alice: CliProcess, bob: ChatClient, texts) -> None:
    """Cut alice off, have bob say `texts` in #dev, then let alice back in."""
    relay.hold()  # her reconnect waits until everything is said
    relay.cut(relay.link_of("alice"))
    alice.err.wait_for("connection lost")
    say_and_confirm(bob, "dev", texts)
    relay.release()


def away_for(texts: list[str], **settings) -> "CliProcess":
    """alice, in #dev through a relay, misses `texts` said by bob while she is
    cut off, reconnects, and sees one live line after; her finished process."""
    with serve(**settings) as server, ChatClient(server.address, "bob") as bob:
        relay = Relay(server.address)
        try:
            with CliProcess(relay.port, "--name", "alice", "--room", "dev") as alice:
                alice.out.wait_for("you joined #dev")
                bob.send({"type": "join", "room": "dev"})
                say_and_confirm(bob, "dev", ["seen live"])
                alice.out.wait_for("<bob> seen live")
                missed_while_away(relay, alice, bob, texts)
                alice.out.wait_for(f"<bob> {texts[-1]}$")
                say_and_confirm(bob, "dev", ["after"])
                alice.out.wait_for("<bob> after")
                assert alice.finish() == 0
            return alice
        finally:
            relay.close()


def test_a_catch_up_of_150_messages_shows_each_once_in_order():
    missed = [f"missed {number}" for number in range(1, 151)]
    alice = away_for(missed)
    assert alice.chat() == ["<bob> seen live", *(f"<bob> {t}" for t in missed), "<bob> after"]
    assert not any("no longer" in line for line in alice.err.lines)


def test_a_catch_up_past_the_servers_retention_says_how_many_are_gone():
    # A memory store keeps only the ring of 50 (a file would keep them all).
    missed = [f"missed {number}" for number in range(1, 151)]
    alice = away_for(missed, history=50, store="memory")
    # The server keeps 50: missed 101..150.  The 100 before are gone, and
    # one line says so, before what is shown.
    assert alice.chat() == ["<bob> seen live", *(f"<bob> {t}" for t in missed[100:]),
                            "<bob> after"]
    gone = [line for line in alice.err.lines if "no longer" in line]
    assert gone == ["* #dev: 100 messages said while you were away are no longer "
                    "on the server"]

# ------------------------------------------------- 2. /history over long messages


def long_texts(count: int) -> list[str]:
    return [f"{number:02d} " + "x" * 3997 for number in range(1, count + 1)]


def test_history_20_of_4000_characters_prints_all_20_oldest_first_and_exits():
    with serve() as server, ChatClient(server.address, "writer") as writer:
        texts = long_texts(20)
        say_and_confirm(writer, "lobby", texts)
        # The premise: one answer cannot carry them all.
        writer.send({"type": "history", "room": "lobby", "limit": 20})
        page = writer.next_of("history")
        assert len(page["messages"]) == 16 and page["more"] is True
        result = run_cli(server.address[1], "--name", "x", stdin="/history 20\n")
    assert result.returncode == 0, result.stderr
    shown = re.findall(r"^\d\d:\d\d <writer> (.*)$", result.stdout, re.M)
    assert shown == texts


def test_history_from_a_server_with_frames_over_64_kib_is_read_not_refused():
    # --max-frame 256 KiB: all 20 fit in one answer of about 80 KB, which is
    # more than chatcli's decoder took before the welcome told it the limit.
    with serve(max_frame=262_144) as server, ChatClient(server.address, "writer") as writer:
        texts = long_texts(20)
        say_and_confirm(writer, "lobby", texts)
        result = run_cli(server.address[1], "--name", "x", stdin="/history 20\n")
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^\d\d:\d\d <writer> (.*)$", result.stdout, re.M) == texts
    assert "bad frame" not in result.stderr

# ------------------------------------------------- 3. a reconnect storm


CLIENTS = 20
ROUNDS = 3           # reconnects turned away per client, after the first drop
FIRST_WINDOW = 0.25  # chatcli's first backoff ceiling, doubled per failure


def test_twenty_clients_spread_their_reconnects_over_each_backoff_window():
    with serve() as server:
        relay = Relay(server.address)
        names = [f"c{number:02d}" for number in range(CLIENTS)]
        clients = [CliProcess(relay.port, "--name", name) for name in names]
        try:
            for client in clients:
                client.err.wait_for("connected as", timeout=30)
            relay.turn_away(ROUNDS)
            # The server "restarts": every connection drops at once.
            cut_at = {link.name: relay.cut(link) for link in list(relay.links)}
            for client in clients:
                client.err.wait_for("reconnected as", timeout=30)
            with relay.changed:
                events = list(relay.events)
        finally:
            for client in clients:
                client.__exit__()
            relay.close()
    for round_number in range(ROUNDS):
        window = FIRST_WINDOW * 2 ** round_number
        delays = []
        for name in names:
            # When the client was let down last, and when it came back.
            downs = [cut_at[name]] + [t for n, what, t in events
                                      if n == name and what == "turned away"]
            backs = [t for n, what, t in events if n == name and what == "accepted"][1:]
            delays.append(backs[round_number] - downs[round_number])
        # Full jitter: each delay anywhere in [0, window]; 20 of them cover
        # most of it (the chance that 20 uniform draws span less than half
        # the window is 21 / 2**20).  Fixed delays span a few milliseconds.
        slack = 0.15  # noticing the drop, connecting, a loaded machine
        assert min(delays) >= 0 and max(delays) <= window + slack, (window, delays)
        assert max(delays) - min(delays) >= window / 2, (window, sorted(delays))
        assert statistics.pstdev(delays) >= window / 8, (window, sorted(delays))

# ------------------------------------------------- smaller: --send


@pytest.mark.parametrize("text, says", [
    ("y" * 4001, "over the limit of 4000"),
    ("", "empty"),
    (b"caf\xff", "not valid UTF-8"),
])
def test_send_refuses_what_it_can_check_before_connecting(text, says):
    with serve() as server, ChatClient(server.address, "watcher") as watcher:
        port = server.address[1]
        arguments = [sys.executable, "-m", "chatcli", "--port", str(port),
                     "--name", "bot", "--send", text]
        if isinstance(text, bytes):  # argv as the shell gives it: any bytes
            arguments = [os.fsencode(argument) if isinstance(argument, str) else argument
                         for argument in arguments]
        result = subprocess.run(arguments, cwd=REPO, capture_output=True, timeout=WAIT * 2,
                                env={**os.environ, "NO_COLOR": "1"})
        stderr = result.stderr.decode()
        assert result.returncode == 1, stderr
        assert says in stderr and "Traceback" not in stderr
        assert "connected" not in stderr
        # Nobody joined the lobby: the client never said hello.
        assert [f for f in frames_up_to_pong(watcher) if f["type"] == "joined"] == []

# ------------------------------------------------- smaller: keepalive


def test_a_black_holed_connection_is_noticed_within_one_and_a_half_keepalives():
    keepalive = 2.0
    with serve() as server, ChatClient(server.address, "bob") as bob:
        relay = Relay(server.address)
        try:
            with CliProcess(relay.port, "--name", "alice", "--keepalive", str(keepalive)) as alice:
                alice.err.wait_for("connected as alice")
                say_and_confirm(bob, "lobby", ["before"])
                alice.out.wait_for("<bob> before")
                # Everything alice sends or is sent from now on vanishes, and
                # nothing tells either end: no FIN, no reset.
                since = relay.black_hole(relay.link_of("alice"))
                say_and_confirm(bob, "lobby", ["into the hole"])
                line = alice.err.wait_for("connection lost", timeout=keepalive * 3)[0]
                noticed_after = time.monotonic() - since
                assert "no answer from the server" in line
                assert noticed_after <= keepalive * 1.5 + 0.5, noticed_after
                alice.err.wait_for("reconnected as alice")
                alice.out.wait_for("<bob> into the hole")
                assert alice.finish() == 0
            assert alice.chat() == ["<bob> before", "<bob> into the hole"]
        finally:
            relay.close()

# ------------------------------------------------- connecting


def test_ipv6_addresses_are_reached():
    with serve(host="::1") as server, ChatClient(server.address, "bob") as bob:
        result = run_cli(server.address[1], "--host", "::1", "--name", "alice",
                         "--send", "over v6")
        assert result.returncode == 0, result.stderr
        assert bob.next_of("msg")["text"] == "over v6"


def test_a_failed_connect_is_one_line_naming_every_address_tried():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    # Nothing listens on the port any more.
    result = run_cli(port, "--host", "localhost", "--name", "alice", "--send", "x")
    assert result.returncode == 1
    addresses = sorted({info[4][0] for info in socket.getaddrinfo(
        "localhost", port, type=socket.SOCK_STREAM)})
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"! cannot connect to localhost:{port}: "), line
    for address in addresses:
        shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        assert f"{shown} (connection refused)" in line, line
    assert line.endswith("; giving up")


def test_an_unknown_host_name_is_one_line():
    result = run_cli(1, "--host", "no-such-host.invalid", "--name", "alice", "--send", "x")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("! cannot connect to no-such-host.invalid:1: cannot resolve"), line


def v4(port: int) -> tuple:
    """A getaddrinfo entry for 127.0.0.1:port."""
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))


def v6(port: int) -> tuple:
    """A getaddrinfo entry for [::1]:port."""
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port, 0, 0))


def free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class BlackHole:
    """A listener whose accept queue is full and never drained: the kernel
    drops further SYNs, so a connect to it neither succeeds nor fails."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    def close(self):
        for sock in (self.listener, *self.fillers):
            sock.close()


def dial(addresses, **options):
    """Run a Dialer to the end on its own selector: (socket or None, its
    error, seconds taken, the selector's registrations left)."""
    selector = selectors.DefaultSelector()
    done = []
    started = time.monotonic()
    dialer = Dialer(addresses, selector, started, done.append, host="test", **options)
    while not dialer.done:
        dialer.poll(time.monotonic())
        if dialer.done:
            break
        timeout = max(0.0, dialer.next_deadline() - time.monotonic())
        for key, mask in selector.select(timeout):
            key.data(mask)
    left = len(selector.get_map())
    selector.close()
    return done[0], dialer.error, time.monotonic() - started, left


def test_every_address_a_name_has_is_tried_until_one_answers():
    # A name with an IPv6 and an IPv4 address, the server on IPv4 only
    # (chatd's default): taking getaddrinfo's first entry alone fails.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sock, error, _, left = dial([v6(port), v4(port)])
        with sock:
            assert sock.getpeername() == ("127.0.0.1", port) and error is None
            assert left == 0


def test_an_address_that_never_answers_does_not_hold_up_the_next():
    hole = BlackHole()
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
            port = server.getsockname()[1]
            sock, error, took, left = dial([v4(hole.port), v6(port)])
            with sock:
                assert sock.getpeername()[:2] == ("::1", port)
            # The second attempt starts after the first has had its 250 ms,
            # and wins; the first is closed, not left dangling.
            assert ATTEMPT_DELAY * 0.9 <= took < 3.0, took
            assert left == 0
    finally:
        hole.close()


def test_when_no_address_answers_the_error_names_each_and_why():
    port = free_port()
    sock, error, _, left = dial([v6(port), v4(port)])
    assert sock is None and left == 0
    assert error == (f"tried [::1]:{port} (connection refused), "
                     f"127.0.0.1:{port} (connection refused)")


def test_a_connect_that_hangs_gives_up_at_the_timeout():
    hole = BlackHole()
    try:
        sock, error, took, left = dial([v4(hole.port)], timeout=0.5)
        assert sock is None and left == 0
        assert error == f"tried 127.0.0.1:{hole.port} (timed out)"
        assert 0.5 <= took < 2.0, took
    finally:
        hole.close()


def test_addresses_alternate_families_from_the_first_and_repeats_go():
    a6, b6, a4, b4 = v6(1), v6(2), v4(1), v4(2)
    assert interleave([a6, b6, a4, a6, b4]) == [a6, a4, b6, b4]
    assert interleave([a4, a6, b6]) == [a4, a6, b6]
    assert interleave([]) == []
