"""chatcli end to end: the real client as a subprocess against a real chatd.

Pipe mode, --send exit codes, a pseudo-terminal session read through a tiny
screen model, and reconnection (a cut connection the server has not noticed,
and a server restarted on the same port).  Every wait is on output or a
frame, with a timeout.
"""

import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from contextlib import contextmanager

from support import REPO, WAIT, ChatClient, CliProcess, Relay, ServerProcess, running_server


def run_cli(port: int, *options: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatcli", "--port", str(port), *options],
                          cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=WAIT * 2, env={**os.environ, "NO_COLOR": "1"})

# ------------------------------------------------------------------ pipe mode


def test_pipe_mode_two_clients_see_each_others_messages_in_order():
    with running_server() as server:
        port = server.address[1]
        with CliProcess(port, "--name", "alice") as alice, CliProcess(port, "--name", "bob") as bob:
            alice.err.wait_for("connected as alice")
            bob.err.wait_for("connected as bob")
            alice.type("hi bob")
            bob.out.wait_for("<alice> hi bob")
            bob.type("hi alice")
            alice.out.wait_for("<bob> hi alice")
            # More lines than the server's burst (20): paced, none lost.
            burst = [f"line {number}" for number in range(30)]
            alice.type(*burst, "/join dev", "in dev")
            assert alice.finish() == 0
            bob.out.wait_for("<alice> line 29")
            assert bob.finish() == 0
        expected = ["<alice> hi bob", "<bob> hi alice"] + [f"<alice> {t}" for t in burst]
        assert bob.chat() == expected
        assert alice.chat() == expected + ["<alice> in dev"]
        assert not any("rate_limited" in line for line in alice.err.lines)


def test_pipe_mode_reads_the_name_from_the_first_line_and_commands_work():
    with running_server() as server:
        result = run_cli(server.address[1], stdin="carol\n/nick carol2\n/who\n/frob\nhey\n")
    assert result.returncode == 1, result  # /frob was refused
    assert "you are now carol2" in result.stdout
    assert "1 in #lobby: carol2" in result.stdout
    assert re.search(r"^\d\d:\d\d <carol2> hey$", result.stdout, re.M)
    assert "! unknown command /frob; /help lists the commands" in result.stderr

# ---------------------------------------------------------------------- --send


def test_send_exits_zero_once_echoed_and_nonzero_with_the_error():
    with running_server() as server, ChatClient(server.address, "taken") as watcher:
        port = server.address[1]
        sent = run_cli(port, "--name", "bot", "--send", "/not a command")
        assert sent.returncode == 0, sent
        assert watcher.next_of("msg")["text"] == "/not a command"
        assert re.search(r"<bot> /not a command$", sent.stdout, re.M)

        taken = run_cli(port, "--name", "TAKEN", "--send", "x")
        assert taken.returncode == 1
        assert "name_taken" in taken.stderr

        no_room = run_cli(port, "--name", "bot2", "--room", "dev", "--send", "y" * 4001)
        assert no_room.returncode == 1
        assert "over the limit of 4000" in no_room.stderr
        server_port = port
    refused = run_cli(server_port, "--name", "bot", "--send", "x")
    assert refused.returncode == 1
    assert "cannot connect" in refused.stderr

# ---------------------------------------------------------------- the terminal


class Screen:
    """Just enough of a VT100 to check what chatcli draws: CR, LF, erase to the
    end of the line, cursor forward, clear screen; colours are ignored."""

    CONTROL = re.compile(rb"\x1b\[([0-9;]*)([A-Za-z])|([\r\n])|([^\x1b\r\n]+)")

    def __init__(self, columns: int):
        self.columns = columns
        self.rows: list[str] = [""]
        self.column = 0

    def feed(self, data: bytes) -> None:
        for match in self.CONTROL.finditer(data):
            parameter, command, control, text = match.groups()
            if text:
                for char in text.decode("utf-8", "replace"):
                    self._put(char)
            elif control == b"\r":
                self.column = 0
            elif control == b"\n":
                self.rows.append("")
            elif command == b"K":
                self.rows[-1] = self.rows[-1][:self.column]
            elif command == b"C":
                self.column += int(parameter or 1)
            elif command == b"J":
                self.rows = [""]

    def _put(self, char: str) -> None:
        row = self.rows[-1].ljust(self.column)
        self.rows[-1] = row[:self.column] + char + row[self.column + 1:]
        self.column += 1


class Pty:
    """chatcli on a pseudo-terminal; the test types and watches the screen."""

    def __init__(self, port: int, *options: str, columns: int = 80):
        self.master, slave = os.openpty()
        termios.tcsetwinsize(slave, (24, columns))
        self.attributes_before = termios.tcgetattr(slave)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatcli", "--port", str(port), *options], cwd=REPO,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env={**os.environ, "NO_COLOR": "1", "TERM": "xterm"})
        self.slave = slave
        self.screen = Screen(columns)
        self.raw = bytearray()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, predicate, timeout: float = WAIT) -> None:
        """Read the pty until `predicate(screen)` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.screen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "screen:\n" + "\n".join(self.screen.rows)
            if select.select([self.master], [], [], remaining)[0]:
                data = os.read(self.master, 65536)
                self.raw += data
                self.screen.feed(data)

    def wait_for_row(self, pattern: str) -> None:
        self.wait_for(lambda screen: any(re.search(pattern, row) for row in screen.rows))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        os.close(self.master)
        os.close(self.slave)


def test_terminal_keeps_the_half_typed_line_under_incoming_messages():
    with running_server() as server, ChatClient(server.address, "bob") as bob:
        terminal = Pty(server.address[1])
        try:
            terminal.wait_for_row(r"^username: $")
            terminal.type("Bob\r")  # taken: the server's reason, and asked again
            terminal.wait_for_row(r"name_taken: 'Bob' is taken")
            terminal.type("alice\r")
            terminal.wait_for_row(r"connected as alice")
            assert bob.next_of("joined")["name"] == "alice"
            # Half a line, with an edit: the cursor moved left and back.
            terminal.type("half li\x1b[D\x1b[Dx\x1b[C\x1b[C")
            terminal.wait_for(lambda screen: screen.rows[-1] == "#lobby> half xli")
            bob.send({"type": "say", "text": "incoming while you type"})
            terminal.wait_for_row(r"<bob> incoming while you type$")
            screen = terminal.screen
            assert re.fullmatch(r"\d\d:\d\d <bob> incoming while you type", screen.rows[-2])
            assert screen.rows[-1] == "#lobby> half xli"
            assert screen.column == len("#lobby> half xli")
            # NO_COLOR: not one colour escape, even on a terminal.
            assert not re.search(rb"\x1b\[[0-9;]*m", terminal.raw)
            terminal.type("ne\r")
            said = bob.next(lambda m: m["type"] == "msg" and m["from"] == "alice")
            assert said["text"] == "half xline"
            terminal.type("\x03")  # Ctrl-C: quit cleanly
            assert terminal.process.wait(WAIT) == 0
            assert bob.next_of("left") == {"type": "left", "room": "lobby", "name": "alice",
                                           "reason": "quit"}
            assert termios.tcgetattr(terminal.slave) == terminal.attributes_before
        finally:
            terminal.close()


def test_terminal_resize_redraws_the_line_to_fit():
    with running_server() as server:
        terminal = Pty(server.address[1], "--name", "alice")
        try:
            terminal.wait_for_row(r"connected as alice")
            line = "".join(chr(ord("a") + i % 26) for i in range(60))
            terminal.type(line)
            terminal.wait_for(lambda screen: screen.rows[-1] == "#lobby> " + line)
            termios.tcsetwinsize(terminal.slave, (24, 30))
            terminal.process.send_signal(signal.SIGWINCH)
            # 30 columns: the prompt, the end of the line, the last column free.
            visible = "#lobby> " + line[-(30 - len("#lobby> ") - 1):]
            terminal.wait_for(lambda screen: screen.rows[-1] == visible)
            assert terminal.screen.column == 29
        finally:
            terminal.close()


def test_terminal_is_restored_when_the_client_is_killed_with_sigterm():
    with running_server() as server:
        terminal = Pty(server.address[1])
        try:
            terminal.wait_for_row(r"^username: $")
            terminal.process.send_signal(signal.SIGTERM)
            assert terminal.process.wait(WAIT) == 128 + signal.SIGTERM
            assert termios.tcgetattr(terminal.slave) == terminal.attributes_before
        finally:
            terminal.close()

# ------------------------------------------------------------------ reconnect


def test_reconnect_reclaims_the_name_and_shows_exactly_the_missed_messages():
    with running_server() as server, ChatClient(server.address, "bob") as bob:
        proxy = Relay(server.address)
        try:
            with CliProcess(proxy.port, "--name", "alice", "--room", "dev") as alice:
                alice.out.wait_for("you joined #dev")
                bob.send({"type": "join", "room": "dev"})
                bob.send({"type": "say", "room": "dev", "text": "seen live"})
                alice.out.wait_for("<bob> seen live")
                proxy.cut(proxy.link_of("alice"))
                # The server still holds alice's old connection: these reach
                # the proxy's dead end, never alice.
                for text in ("missed 1", "missed 2"):
                    bob.send({"type": "say", "room": "dev", "text": text})
                alice.err.wait_for(r"reconnected as alice; rejoining #lobby, #dev")
                alice.out.wait_for("<bob> missed 2")
                bob.send({"type": "say", "room": "dev", "text": "after"})
                alice.out.wait_for("<bob> after")
                assert alice.chat() == ["<bob> seen live", "<bob> missed 1",
                                        "<bob> missed 2", "<bob> after"]
                assert any("connection lost" in line for line in alice.err.lines)
                assert alice.finish() == 0
        finally:
            proxy.close()


@contextmanager
def alice_left_by_a_restart(*flags: str):
    """chatcli's alice in #dev says a line, then her chatd (`flags`) shuts
    down; yields (alice, the port a new chatd should take)."""
    with ServerProcess(*flags) as first:
        port = first.port
        with CliProcess(port, "--name", "alice", "--room", "dev") as alice:
            alice.out.wait_for("you joined #dev")
            alice.type("before the restart")
            alice.out.wait_for("<alice> before the restart")
            assert first.stop() == 0
            alice.err.wait_for("server closed the connection: shutdown")
            yield alice, port


def test_reconnect_after_the_server_restarts_on_the_same_port():
    with alice_left_by_a_restart() as (alice, port):
        # Several failed attempts, each announced with its delay.
        alice.err.wait_for(r"retrying in \d+\.\d\d s \(retry 3\)")
        with ServerProcess("--port", str(port)) as second, \
                ChatClient((second.host, second.port), "bob") as bob:
            alice.err.wait_for(r"reconnected as alice; rejoining #lobby, #dev")
            bob.send({"type": "join", "room": "dev"})
            if "alice" not in bob.next_of("users")["names"]:
                bob.next(lambda m: m["type"] == "joined" and m["name"] == "alice")
            # A new server with a store of its own: a new epoch, ids start
            # again at 1, and its first message is news, not one alice
            # has seen, whether it comes during her catch-up or after.
            bob.send({"type": "say", "room": "dev", "text": "said on the new server"})
            assert bob.next_of("msg")["id"] == 1
            alice.out.wait_for("<bob> said on the new server")
            alice.type("back again")
            assert bob.next(lambda m: m["type"] == "msg" and m["from"] == "alice")["text"] \
                == "back again"
            assert alice.finish() == 0
        assert alice.chat() == ["<alice> before the restart", "<bob> said on the new server",
                                "<alice> back again"]
        assert any("message ids started over (a new epoch)" in line for line in alice.err.lines)


def test_a_restart_on_the_same_store_keeps_the_epoch_and_the_client_fills_the_gap(tmp_path):
    store = str(tmp_path / "chatd.db")
    with alice_left_by_a_restart("--store", store) as (alice, port):
        with ServerProcess("--store", store, "--port", str(port)) as second, \
                ChatClient((second.host, second.port), "bob") as bob:
            # Said before alice is back: only `history since` her last id
            # can show it to her, once.
            bob.send({"type": "join", "room": "dev"})
            bob.next_of("users")
            bob.send({"type": "say", "room": "dev", "text": "said while you were away"})
            assert bob.next_of("msg")["id"] == 2  # the ids went on
            alice.err.wait_for(r"reconnected as alice; rejoining #lobby, #dev")
            alice.out.wait_for("<bob> said while you were away")
            alice.type("back again")
            alice.out.wait_for("<alice> back again")
            assert alice.finish() == 0
        assert alice.chat() == ["<alice> before the restart", "<bob> said while you were away",
                                "<alice> back again"]
        assert not any("started over" in line for line in alice.err.lines)
