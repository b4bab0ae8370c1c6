"""chatd as people run it: a subprocess, its log, its signals and its fd limit.

Every test starts `python -m chatd` (or the `chatd` console script) on
127.0.0.1 with `--port 0` and waits on log lines and frames, never on sleep.
"""

import resource
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import framing
from chatd.listeners import ACCEPT_BACKOFF_SECONDS
from support import WAIT, ChatClient, ServerProcess, ids_of, wait_until

CONSOLE_SCRIPT = Path(sys.executable).parent / "chatd"


def address(server: ServerProcess):
    return (server.host, server.port)


@pytest.mark.parametrize("program", [(sys.executable, "-m", "chatd"), (str(CONSOLE_SCRIPT),)],
                         ids=["python -m chatd", "chatd script"])
def test_both_entry_points_serve_a_client_and_log_each_connection(program):
    with ServerProcess(program=program) as server:
        line = server.wait_for_log(r"listening on ")
        assert line.rstrip().endswith(f"listening on 127.0.0.1:{server.port}")
        assert server.port != 0
        with ChatClient(address(server), "alice") as alice:
            local_port = alice.sock.getsockname()[1]
            server.wait_for_log(rf"open 127\.0\.0\.1:{local_port}\b")
            alice.send({"type": "quit"})
            assert alice.frames_until_close() == [{"type": "bye", "reason": "quit"}]
        server.wait_for_log(rf"closing 127\.0\.0\.1:{local_port} \(quit\)")
        assert server.stop() == 0
        server.wait_for_log(r"disconnects by reason: quit=1$")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_delivers_every_accepted_msg_then_bye_shutdown_and_exits_zero(signum):
    with ServerProcess("--rate-limit", "0") as server:
        senders = [ChatClient(address(server), f"sender{i}") for i in range(2)]
        readers = [ChatClient(address(server), f"reader{i}") for i in range(3)]
        talking = [threading.Thread(target=say_until_bye, args=(sender,))
                   for sender in senders]
        try:
            for thread in talking:
                thread.start()
            first = readers[0].next_of("msg")  # traffic is flowing when the signal lands
            server.process.send_signal(signum)
            endings = [reader.frames_until_close(timeout=10) for reader in readers]
            endings[0].insert(0, first)
        finally:
            for thread in talking:
                thread.join(10)
            for client in senders + readers:
                client.close()
        assert server.process.wait(10) == 0
        accepted = ids_of(endings[0])
        assert accepted == list(range(1, len(accepted) + 1))
        assert 0 < len(accepted) < 2 * SAY_BATCHES * SAY_BATCH  # it landed mid-traffic
        for frames in endings:
            assert ids_of(frames) == accepted  # everyone got every accepted msg
            assert frames[-1] == {"type": "bye", "reason": "shutdown"}
        server.wait_for_log(rf"{signum.name}: closing 5 connections")
        server.wait_for_log(r"disconnects by reason: shutdown=5$")


SAY_BATCHES, SAY_BATCH = 200, 50


def say_until_bye(client: ChatClient) -> None:
    """Say batches of messages, each after the last one's echo, until the bye."""
    name = client.welcome["name"]
    batch = b"".join(framing.encode({"type": "say", "text": f"m{i}"})
                     for i in range(SAY_BATCH))
    last = f"m{SAY_BATCH - 1}"
    for _ in range(SAY_BATCHES):
        try:
            client.send_raw(batch)
            reply = client.next(lambda m: m["type"] == "bye" or (
                m["type"] == "msg" and m["from"] == name and m["text"] == last))
        except (OSError, EOFError):
            return
        if reply["type"] == "bye":
            return


def test_a_second_signal_exits_at_once_without_waiting_for_the_flush_deadline():
    with ServerProcess("--shutdown-timeout", "60") as server, \
            ChatClient(address(server), "stubborn") as stubborn:
        server.process.send_signal(signal.SIGTERM)
        assert stubborn.next() == {"type": "bye", "reason": "shutdown"}
        # stubborn never hangs up, so the first signal alone would wait 60 s.
        assert server.process.poll() is None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0
        server.wait_for_log(r"second signal")


def limit_open_files(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


def test_the_open_files_limit_is_raised_to_max_clients_plus_reserve():
    hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    max_clients = hard // 2
    with ServerProcess("--max-clients", str(max_clients),
                       preexec_fn=limit_open_files(64, hard)) as server:
        assert open_files_limit(server.pid) == max_clients + 32
        with ChatClient(address(server), "alice") as alice:
            assert alice.welcome["limits"]["max_clients"] == max_clients


def test_a_low_hard_limit_lowers_max_clients_and_emfile_backs_off_then_recovers():
    with ServerProcess("--max-clients", "1000",
                       preexec_fn=limit_open_files(64, 64)) as server:
        server.wait_for_log(r"RLIMIT_NOFILE hard limit is 64: max_clients lowered to 32")
        with ChatClient(address(server), "alice") as alice:
            assert alice.welcome["limits"]["max_clients"] == 32
            crowd = []
            try:
                # More than the server has descriptors for: most wait in the backlog.
                for _ in range(60):
                    crowd.append(ChatClient(address(server)))
                server.wait_for_log(r"accept failed \(Too many open files\); pausing")
                alice.send({"type": "ping", "ref": 1})
                assert alice.next_of("pong") == {"type": "pong", "ref": 1}  # still serving
                # Backing off, not spinning: five more failed retries take at least
                # four back-off pauses (a spinning loop logs them in microseconds).
                retries, began = backoffs(server), time.monotonic()
                wait_until(lambda: backoffs(server) >= retries + 5, what="five retries")
                assert time.monotonic() - began >= 4 * ACCEPT_BACKOFF_SECONDS
            finally:
                for client in crowd:
                    client.close()
            # Descriptors free again: a newcomer is served once the crowd's
            # connections, some still in the backlog, have been accepted and closed.
            assert welcomed_soon(address(server), "bob")["type"] == "welcome"


def welcomed_soon(server_address, name: str) -> dict:
    """Connect and say hello until welcomed (not server_full); bounded by WAIT."""
    deadline = time.monotonic() + WAIT
    while True:
        with ChatClient(server_address) as client:
            client.send({"type": "hello", "name": name})
            reply = client.next(lambda m: m["type"] in ("welcome", "error"))
        if reply["type"] == "welcome" or time.monotonic() > deadline:
            return reply


def backoffs(server: ServerProcess) -> int:
    return sum("accept failed" in line for line in list(server.lines))


def test_a_signal_while_accepts_are_paused_still_shuts_down_cleanly():
    with ServerProcess(preexec_fn=limit_open_files(64, 64)) as server:
        with ChatClient(address(server), "alice") as alice:
            crowd = []
            try:
                for _ in range(60):
                    crowd.append(ChatClient(address(server)))
                server.wait_for_log(r"accept failed \(Too many open files\); pausing")
                # The listener is out of the selector for most of each back-off.
                server.process.send_signal(signal.SIGTERM)
                server.wait_for_log(r"SIGTERM: closing")
            finally:
                for client in crowd:
                    client.close()
            assert alice.next_of("bye") == {"type": "bye", "reason": "shutdown"}
        assert server.process.wait(10) == 0


def test_it_serves_on_ipv6_loopback():
    with ServerProcess("--host", "::1") as server:
        assert server.host == "::1"
        with ChatClient(address(server), "alice") as alice:
            assert alice.welcome["name"] == "alice"
        assert server.stop() == 0
