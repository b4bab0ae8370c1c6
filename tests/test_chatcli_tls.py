"""chatcli over TLS: the real client as a subprocess against an in-process chatd
serving TLS with a trustme certificate."""

import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from support import REPO, WAIT, CliProcess, TLSFiles, running_server


@pytest.fixture
def files(tmp_path):
    return TLSFiles(tmp_path)


def run_cli(port: int, *options: str, stdin: str = "", env=None):
    return subprocess.run([sys.executable, "-m", "chatcli", "--port", str(port), *options],
                          cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=WAIT * 2, env={**os.environ, "NO_COLOR": "1", **(env or {})})


def test_send_and_pipe_mode_over_tls_with_cafile(files):
    with running_server(**files.settings()) as server:
        port = server.tls_address[1]
        result = run_cli(port, "--host", "localhost", "--cafile", files.ca_file,
                         "--name", "ann", "--send", "over tls")
        assert result.returncode == 0, result
        with CliProcess(port, "--host", "localhost", "--tls", "--cafile", files.ca_file,
                        "--name", "bob") as bob:
            bob.err.wait_for("connected as bob")
            bob.type("hello from a pipe")
            assert bob.finish() == 0
        assert bob.chat() == ["<bob> hello from a pipe"]
        # The environment says the same.
        result = run_cli(port, "--host", "localhost", "--name", "cyd", "--send", "env",
                         env={"CHATCLI_TLS": "1", "CHATCLI_CAFILE": files.ca_file})
        assert result.returncode == 0, result


def test_an_unknown_ca_exits_1_with_one_line(files, tmp_path):
    other = TLSFiles(tmp_path / "..", name="other")  # another CA altogether
    with running_server(**files.settings()) as server:
        result = run_cli(server.tls_address[1], "--host", "localhost", "--cafile",
                         other.ca_file, "--name", "ann", "--send", "hi")
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_tls_against_the_plaintext_port_fails_in_one_line(files):
    with running_server(**files.settings()) as server:
        result = run_cli(server.address[1], "--host", "localhost", "--cafile", files.ca_file,
                         "--name", "ann", "--send", "hi")
    assert result.returncode == 1, result
    assert "TLS" in result.stderr and "Traceback" not in result.stderr


class TLSTerminator:
    """A TLS server (the trustme certificate) relaying one client's plaintext to
    chatd's plaintext port, noting how the client's TLS stream ended:
    `ending` is "close_notify" or "no close_notify" once `ended` is set."""

    def __init__(self, files, upstream):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(files.cert, files.key)
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ending = None
        self.ended = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        raw, _ = self.listener.accept()
        client = self.context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        server = socket.create_connection(self.upstream)
        ends = [client, server]
        deadline = time.monotonic() + WAIT * 2
        try:
            while self.ending is None and time.monotonic() < deadline:
                if not client.pending():
                    select.select(ends, [], [], 0.5)
                for sock, other in ((client, server), (server, client)):
                    if sock not in ends:
                        continue
                    sock.setblocking(False)
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, ssl.SSLWantReadError):
                        continue
                    except (ssl.SSLEOFError, ConnectionResetError):
                        self.ending = "no close_notify"
                        break
                    if not data and sock is client:
                        self.ending = "close_notify"  # a clean TLS close reads as b""
                        break
                    if not data:
                        ends.remove(server)  # chatd has closed; wait for the client's end
                        continue
                    other.setblocking(True)
                    other.sendall(data)
        finally:
            client.close(), server.close(), self.listener.close()
            self.ended.set()


def test_chatcli_sends_close_notify_when_it_quits_over_tls(files):
    with running_server(**files.settings()) as server:
        terminator = TLSTerminator(files, server.address)
        result = run_cli(terminator.port, "--host", "localhost", "--cafile", files.ca_file,
                         "--name", "ann", "--send", "goodbye")
        assert result.returncode == 0, result
        assert terminator.ended.wait(WAIT)
        assert terminator.ending == "close_notify"
