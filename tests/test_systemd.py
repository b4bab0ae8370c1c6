"""chatd under systemd, without systemd: a fake NOTIFY_SOCKET and a small exec wrapper.

The notify socket is a real AF_UNIX datagram socket bound by the test (a
path, and an abstract '@' name); chatd is a real subprocess. Every wait is
on a datagram, a log line or a frame, with a timeout.
"""

import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from support import REPO, WAIT, ChatClient, ServerProcess, TLSFiles
from test_metrics import get

ACTIVATE = str(Path(__file__).resolve().parent / "activate.py")


class NotifySocket:
    """The manager's end of sd_notify: datagrams of KEY=VALUE lines."""

    def __init__(self, abstract: bool):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._directory = None
        if abstract:
            self.name = f"@chatd-test-{os.getpid()}-{secrets.token_hex(6)}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self._directory = tempfile.mkdtemp(prefix="chatd-notify-", dir="/tmp")
            self.name = os.path.join(self._directory, "notify")
            self.sock.bind(self.name)
        self.received = []  # (monotonic time, {key: value})

    def next(self, key: str, timeout: float = WAIT) -> dict:
        """The next datagram carrying `key` (earlier ones are kept in `received`)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {key} datagram; got {self.received!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise TimeoutError(f"no {key} datagram; got {self.received!r}") from None
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.received.append((time.monotonic(), fields))
            if key in fields:
                return fields

    def nothing_for(self, seconds: float) -> bool:
        """True if no datagram comes within `seconds` (a bounded negative wait)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return True
        self.received.append((time.monotonic(), {"unexpected": data.decode()}))
        return False

    def close(self):
        self.sock.close()
        if self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def notify(request):
    with NotifySocket(abstract=request.param) as manager:
        yield manager


def test_ready_once_listening_then_stopping_on_sigterm(notify):
    with ServerProcess(env={"NOTIFY_SOCKET": notify.name}) as server:
        ready = notify.next("READY")
        assert notify.received[0][1] is ready, "READY must be the first notification"
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(server.pid)
        assert ready["STATUS"] == f"listening on 127.0.0.1:{server.port}"
        with ChatClient((server.host, server.port), "alice") as alice:  # listening at READY
            server.process.send_signal(signal.SIGTERM)
            stopping = notify.next("STOPPING")
            assert stopping["STOPPING"] == "1"
            assert alice.frames_until_close()[-1] == {"type": "bye", "reason": "shutdown"}
        assert server.process.wait(10) == 0
        assert [fields for _, fields in notify.received].count(stopping) == 1


def test_watchdog_pings_every_half_watchdog_usec_from_the_loop(notify):
    # 200 ms: a ping every 100 ms.
    with ServerProcess(env={"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "200000",
                            "WATCHDOG_PID": ""}) as server:
        notify.next("READY")
        pings = []
        for _ in range(11):
            notify.next("WATCHDOG")
            pings.append(notify.received[-1][0])
        gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
        # Never early (a timer fires at or after its time; allow the clocks'
        # slack), and on average near 100 ms on a loaded machine.
        assert min(gaps) > 0.08, gaps
        assert sum(gaps) / len(gaps) < 0.25, gaps
        server.wait_for_log(r"systemd: watchdog ping every 0\.100 s")
        server.process.send_signal(signal.SIGTERM)
        notify.next("STOPPING")
        assert server.process.wait(10) == 0


def test_no_watchdog_pings_when_watchdog_pid_is_another_process(notify):
    with ServerProcess(env={"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "100000",
                            "WATCHDOG_PID": "1"}) as server:
        notify.next("READY")
        assert notify.nothing_for(0.5), notify.received  # 10 ping periods
        assert server.stop() == 0


def activated(*flags, env=None):
    """chatd started through tests/activate.py; (server, {name: port}) passed to it."""
    server = ServerProcess(*flags, program=(sys.executable, ACTIVATE), env=env)
    line = server.wait_for_log(r"^activate: ")
    ports = {name: int(port) for name, port
             in re.findall(r"(\S+)=127\.0\.0\.1:(\d+)", line)}
    return server, ports


def test_socket_activation_serves_the_passed_socket_instead_of_binding():
    server, ports = activated()
    with server:
        assert server.port == ports["-"]  # not a port of its own (--port 0 was given)
        server.wait_for_log(r"systemd: serving the socket passed as fd 3\b")
        with ChatClient((server.host, server.port), "alice") as alice, \
                ChatClient((server.host, server.port), "bob") as bob:
            alice.send({"type": "say", "text": "hi"})
            assert bob.next_of("msg")["text"] == "hi"
        assert server.stop() == 0


def test_fds_3_to_5_named_chat_and_metrics_are_served_an_unknown_one_closed(notify):
    server, ports = activated(env={"ACTIVATE_NAMES": "irc:chat:metrics",
                                   "NOTIFY_SOCKET": notify.name})
    with server:
        assert server.port == ports["chat"]
        assert notify.next("READY")["STATUS"] == f"listening on 127.0.0.1:{ports['chat']}"
        server.wait_for_log(r"systemd: serving the socket passed as fd 4\b")
        server.wait_for_log(rf"metrics on 127\.0\.0\.1:{ports['metrics']}")
        status, _, body = get(("127.0.0.1", ports["metrics"]))
        assert status == 200 and b"chatd_users" in body
        server.wait_for_log(r"systemd: passed socket 'irc' .* closed")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ports["irc"]), timeout=WAIT).close()
        with ChatClient((server.host, server.port), "alice") as alice:
            assert alice.welcome["name"] == "alice"
        assert server.stop() == 0


def test_a_socket_named_tls_serves_chat_over_tls_beside_the_chat_socket(tmp_path):
    files = TLSFiles(tmp_path)
    server, ports = activated("--tls-cert", files.cert, "--tls-key", files.key,
                              env={"ACTIVATE_NAMES": "chat:tls"})
    with server:
        assert server.port == ports["chat"]
        server.wait_for_log(r"systemd: serving TLS on the socket passed as fd 4\b")
        server.wait_for_log(rf"TLS on 127\.0\.0\.1:{ports['tls']}\b")
        with ChatClient(("127.0.0.1", ports["tls"]), "secure", tls=files.client()) as secure, \
                ChatClient((server.host, server.port), "plain") as plain:
            secure.next_of("joined")
            plain.send({"type": "say", "text": "hi"})
            assert secure.next_of("msg")["text"] == "hi"
        assert server.stop() == 0


def test_a_socket_named_web_serves_the_web_client_and_its_websocket():
    server, ports = activated(env={"ACTIVATE_NAMES": "chat:web"})
    with server:
        server.wait_for_log(r"systemd: serving the web client on the socket passed as fd 4\b")
        address = ("127.0.0.1", ports["web"])
        status, headers, _ = get(address, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        with connect(f"ws://127.0.0.1:{ports['web']}/chat", open_timeout=WAIT,
                     origin=f"http://127.0.0.1:{ports['web']}") as web, \
                ChatClient((server.host, server.port), "plain") as plain:
            web.send(json.dumps({"type": "hello", "name": "browser"}))
            assert json.loads(web.recv(timeout=WAIT))["type"] == "welcome"
            assert plain.next_of("joined")["name"] == "browser"
        assert server.stop() == 0


def test_no_plaintext_serves_tls_alone_and_closes_a_passed_chat_socket(tmp_path):
    files = TLSFiles(tmp_path)
    # The passed `tls` socket is the TLS listener no_plaintext needs: no tls_port.
    server, ports = activated("--no-plaintext", "--tls-cert", files.cert, "--tls-key",
                              files.key, "--metrics-port", "0",
                              env={"ACTIVATE_NAMES": "chat:tls:metrics"})
    with server:
        # What chatd says it listens on is the TLS socket ("(TLS only)").
        assert server.port == ports["tls"]
        server.wait_for_log(r"listening on 127\.0\.0\.1:\d+ \(TLS only\)")
        server.wait_for_log(r"systemd: passed chat socket \(fd 3\) closed: no_plaintext")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ports["chat"]), timeout=WAIT).close()
        with ChatClient(("127.0.0.1", ports["tls"]), "secure", tls=files.client()) as secure:
            assert secure.welcome["name"] == "secure"
            status, _, body = get(("127.0.0.1", ports["metrics"]))
            assert status == 200
            assert b'chatd_connections_accepted_total{listener="chat"} 1.0' in body
        assert server.stop() == 0


def test_sockets_meant_for_another_pid_are_not_used():
    server, ports = activated(env={"ACTIVATE_PID_OFFSET": "1"})
    with server:
        assert server.port != ports["-"]  # chatd bound --port 0 itself
        assert not any("systemd:" in line for line in server.lines)
        with ChatClient((server.host, server.port), "alice") as alice:
            assert alice.welcome["name"] == "alice"
        assert server.stop() == 0


def test_through_systemd_socket_activate():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # systemd-socket-activate binds it again (SO_REUSEADDR)
    with tempfile.TemporaryDirectory(prefix="chatd-test-") as directory:
        process = subprocess.Popen(
            ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=chat",
             sys.executable, "-m", "chatd", "--store", os.path.join(directory, "chatd.db"),
             "--log-level", "info"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # It says "Listening on 127.0.0.1:PORT as 3." once bound; chatd starts
            # on the first connection.
            seen = []
            deadline = time.monotonic() + WAIT
            while not any("Listening on" in line for line in seen):
                remaining = deadline - time.monotonic()
                ready, _, _ = select.select([process.stderr], [], [], max(0.0, remaining))
                line = process.stderr.readline() if ready else ""
                assert line, f"systemd-socket-activate did not listen: {seen}"
                seen.append(line)
            client = ChatClient(("127.0.0.1", port), "alice")
            with client:
                assert client.welcome["name"] == "alice"
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            log = "".join(seen) + process.stderr.read()
            assert "systemd: serving the socket passed as fd 3" in log, log
            assert f"listening on 127.0.0.1:{port}" in log, log
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
