"""`chatd account` against a store file, and against a chatd serving it (subprocesses)."""

import fcntl
import os
import pty
import subprocess
import sys
import termios
import time

from support import REPO, WAIT, ChatClient, ServerProcess

PASSWORD, NEW_PASSWORD = "first password", "second password"


def account(store: str, *arguments: str, password: str | None = None):
    """Run `chatd account --store STORE ARGUMENTS`, the password on stdin (not a tty)."""
    return subprocess.run([sys.executable, "-m", "chatd", "account", "--store", store,
                           *arguments], cwd=REPO, input=(password or "") + "\n",
                          capture_output=True, text=True, timeout=WAIT * 2)


def evicted(client) -> tuple[str, str]:
    """The last two frames of a session the server ended: (error code, bye reason)."""
    frames = client.frames_until_close()
    assert [f["type"] for f in frames[-2:]] == ["error", "bye"], frames
    return frames[-2]["code"], frames[-1]["reason"]


def evicted_by_login(client) -> str:
    frames = client.frames_until_close()
    assert frames[-1]["type"] == "bye", frames
    return frames[-1]["reason"]


def refused(result, message: str) -> None:
    assert result.returncode == 1, result
    assert message in result.stderr, result.stderr


def test_the_command_on_a_file_then_a_server_starts_on_it(tmp_path):
    store = str(tmp_path / "chatd.db")
    refused(account(store, "list"), "no store file")
    added = account(store, "add", "Alice", password=PASSWORD)
    assert added.returncode == 0 and PASSWORD not in added.stdout + added.stderr
    refused(account(store, "add", "alice", password=PASSWORD), "is an account already")
    refused(account(store, "add", "bob", password="short"), "8 to 1,024 characters")
    refused(account(store, "add", "no spaces", password=PASSWORD), "not a chat/1 name")
    refused(account(store, "passwd", "carol", password=PASSWORD), "no account 'carol'")
    refused(account(store, "delete", "carol"), "no account 'carol'")
    listing = subprocess.run([sys.executable, "-m", "chatd", "account", "list", "--store",
                              store], cwd=REPO, capture_output=True, text=True,
                             timeout=WAIT * 2)  # the option after the command, too
    assert listing.returncode == 0
    assert listing.stdout.startswith("Alice\t") and "scrypt n=32768 r=8 p=1" in listing.stdout
    with open(store, "rb") as file:
        assert PASSWORD.encode() not in file.read()
    # The command leaves the file as a clean shutdown did: no crash jump at start.
    with ServerProcess("--store", store) as server:
        assert not any("did not shut down cleanly" in line for line in server.lines)
        with ChatClient((server.host, server.port), "alice", password=PASSWORD) as alice:
            assert alice.welcome["account"] is True and alice.welcome["name"] == "Alice"
        assert server.stop() == 0


def test_the_command_against_a_running_server(tmp_path):
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store) as server:
        address = (server.host, server.port)
        # A guest holds the name: once the server has read the new account it
        # is told so and closed, and the account can log in.
        guest = ChatClient(address, "alice")
        assert account(store, "add", "alice", password=PASSWORD).returncode == 0
        assert evicted(guest) == ("name_registered", "replaced")
        alice = ChatClient(address, "alice", password=PASSWORD)
        assert alice.welcome["account"] is True
        # A new password, then another account made the same way: the server
        # has read the file after both once the second guest is closed.
        assert account(store, "passwd", "alice", password=NEW_PASSWORD).returncode == 0
        bob_guest = ChatClient(address, "bob")
        assert account(store, "add", "bob", password=PASSWORD).returncode == 0
        assert evicted(bob_guest) == ("name_registered", "replaced")
        with ChatClient(address) as other:
            other.send({"type": "hello", "name": "alice", "password": PASSWORD})
            assert other.next_of("error")["code"] == "auth_failed"
        # The logged-in session stayed; it still chats.
        alice.send({"type": "ping", "data": "still here"})
        assert alice.next_of("pong")["data"] == "still here"
        # The new password logs in (and replaces that session, as any second login).
        renewed = ChatClient(address, "alice", password=NEW_PASSWORD)
        assert evicted_by_login(alice) == "replaced"
        alice = renewed
        assert account(store, "list").stdout.splitlines()[0].startswith("alice\t")
        # Deleted while logged in: not_registered, then bye; the name is free.
        assert account(store, "delete", "alice").returncode == 0
        assert evicted(alice) == ("not_registered", "replaced")
        with ChatClient(address, "alice") as guest_again:
            assert "account" not in guest_again.welcome
        with ChatClient(address, "bob", password=PASSWORD) as bob:
            assert bob.welcome["account"] is True
        assert server.stop() == 0
    assert [line.split("\t")[0] for line in account(store, "list").stdout.splitlines()] \
        == ["bob"]


def test_a_memory_store_has_no_file_to_change(tmp_path):
    result = subprocess.run([sys.executable, "-m", "chatd", "account", "list"], cwd=REPO,
                            env={**os.environ, "CHATD_STORE": "memory"}, capture_output=True,
                            text=True, timeout=WAIT * 2)
    refused(result, "'memory'")


def test_on_a_terminal_the_password_is_asked_twice_without_echo(tmp_path):
    store = str(tmp_path / "chatd.db")
    master, slave = pty.openpty()

    def take_the_terminal():  # after setsid: the pty becomes the controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [sys.executable, "-m", "chatd", "account", "--store", store, "add", "alice"],
        cwd=REPO, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=take_the_terminal)
    os.close(slave)
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + WAIT * 2
        while text not in seen:
            assert time.monotonic() < deadline, seen
            try:
                seen += os.read(master, 1024)
            except OSError:  # EIO: the child closed the terminal
                break

    try:
        read_until(b"new password: ")
        os.write(master, PASSWORD.encode() + b"\n")
        read_until(b"again: ")
        os.write(master, PASSWORD.encode() + b"\n")
        read_until(b"added")
        assert process.wait(WAIT * 2) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert PASSWORD.encode() not in seen  # not echoed
    assert account(store, "list").stdout.startswith("alice\t")
