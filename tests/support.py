"""Test support: a chatd to talk to (in-process or a subprocess) and a
blocking chat/1 client that waits on frames with a timeout, never on sleep."""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import framing
from chatd.config import Config
from chatd.app import Server
from chatd.listeners import bind

REPO = Path(__file__).resolve().parent.parent
# How long a test waits for a frame it expects before failing.
WAIT = 5.0


@contextmanager
def running_server(metrics: bool = False, web: bool = False, **settings):
    """A chatd serving in a thread of this process on 127.0.0.1, port 0.

    Its store is the default kind, a SQLite file, in a temporary directory
    unless `store` is given.  With `metrics`, it also serves /metrics on
    127.0.0.1 at a free port (`server.metrics_address`); with `web`, the web
    client and WebSocket at a free port (`server.web_address`).
    """
    settings.setdefault("port", 0)
    settings.setdefault("log_level", "warning")
    with tempfile.TemporaryDirectory(prefix="chatd-test-") as directory:
        settings.setdefault("store", os.path.join(directory, "chatd.db"))
        metrics_socket = bind("127.0.0.1", 0) if metrics else None
        # With tls_cert, TLS is also served on a free port (`server.tls_address`).
        tls_socket = bind("127.0.0.1", 0) if settings.get("tls_cert") else None
        ws_socket = bind("127.0.0.1", 0) if web else None
        server = Server(Config(**settings), metrics_socket=metrics_socket,
                        tls_socket=tls_socket, ws_socket=ws_socket)
        host, port = server.start()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.request_shutdown()
            thread.join(10)
            assert not thread.is_alive(), "server did not stop"


class ServerProcess:
    """chatd as a subprocess, stderr collected by a thread so the pipe never fills."""

    def __init__(self, *flags: str, env=None, program=(sys.executable, "-m", "chatd"),
                 preexec_fn=None):
        """`program` is how chatd is started; `preexec_fn` runs in the child first.

        Without a `--store` flag the store is a SQLite file in a temporary
        directory, removed with this object.
        """
        if "--store" not in flags:
            self._store_directory = tempfile.TemporaryDirectory(prefix="chatd-test-")
            flags = ("--store", os.path.join(self._store_directory.name, "chatd.db"), *flags)
        self.process = subprocess.Popen(
            [*program, "--host", "127.0.0.1", "--port", "0", "--log-level", "info", *flags],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()
        line = self.wait_for_log(r"listening on (\S+):(\d+)")
        match = re.search(r"listening on (\S+):(\d+)", line)
        self.host, self.port = match.group(1), int(match.group(2))
        self.pid = self.process.pid

    def _collect(self):
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = WAIT) -> str:
        """The first stderr line matching `pattern`; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._alive_reader()):
                    raise AssertionError(f"no log line {pattern!r}; got:\n" + "".join(self.lines))
                self._changed.wait(min(remaining, 0.2))

    def _alive_reader(self) -> bool:
        return self.process.stderr is not None and not self.process.stderr.closed

    def stop(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class ChatClient:
    """A blocking chat/1 client for tests: send messages, wait for frames."""

    def __init__(self, address, name: str | None = None, connect_timeout: float = WAIT,
                 receive_buffer: int | None = None, tls=None, source: str | None = None,
                 **hello):
        """`receive_buffer` sets SO_RCVBUF before connecting (a slow reader's window);
        `tls`, an ssl.SSLContext: speak TLS (handshake at connect, "localhost");
        `source`: the local address to connect from (127.0.0.2 and up: another
        client address on loopback); `hello`: more members of the hello (password)."""
        self.sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        if source is not None:
            self.sock.bind((source, 0))
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(connect_timeout)
        self.sock.connect(address[:2])
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.decoder = framing.Decoder(schema=framing.EVENTS)
        self.received: list = []   # frames read but not yet taken
        self.closed = False
        self.welcome = None
        if name is not None:
            self.welcome = self.hello(name, **hello)

    def send(self, message: dict) -> None:
        self.sock.sendall(framing.encode(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hello(self, name: str, **extra) -> dict:
        self.send({"type": "hello", "name": name, **extra})
        reply = self.next(lambda m: m["type"] in ("welcome", "error"))
        assert reply["type"] == "welcome", reply
        return reply

    def _read_more(self, deadline: float) -> bool:
        """Read once; False on end of stream."""
        if self.closed:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame in time; have " + repr(self.received[-5:]))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no frame in time; have " + repr(self.received[-5:])) from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        for item in self.decoder.feed(data):
            assert type(item) is dict, f"server sent a bad frame: {item!r}"
            self.received.append(item)
        return True

    def next(self, predicate=lambda m: True, timeout: float = WAIT) -> dict:
        """The first frame matching `predicate`; earlier ones are discarded."""
        deadline = time.monotonic() + timeout
        while True:
            while self.received:
                message = self.received.pop(0)
                if predicate(message):
                    return message
            if not self._read_more(deadline):
                raise EOFError("connection closed while waiting for a frame")

    def next_of(self, kind: str, timeout: float = WAIT) -> dict:
        return self.next(lambda m: m["type"] == kind, timeout)

    def frames_until_close(self, timeout: float = WAIT) -> list:
        """Every frame up to the server's close."""
        deadline = time.monotonic() + timeout
        while self._read_more(deadline):
            pass
        frames, self.received = self.received, []
        return frames

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_until(condition, timeout: float = WAIT, what: str = "condition"):
    """Poll `condition()` until it is truthy and return its value; fail after `timeout`.

    For state with no frame or log line to wait on (an in-process server's
    counters).  A RuntimeError from reading a dict the server thread is
    changing counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except RuntimeError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.005)


class Output:
    """Lines a stream produced, collected by a thread; wait on a pattern."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._collect, args=(stream,), daemon=True).start()

    def _collect(self, stream):
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = WAIT, count: int = 1) -> list[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {pattern!r} (x{count}) in:\n" + "\n".join(self.lines)
                self._changed.wait(remaining)


class CliProcess:
    """`python -m chatcli` in pipe mode, stdin a pipe we write to."""

    def __init__(self, port: int, *options: str):
        env = {**os.environ, "NO_COLOR": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatcli", "--port", str(port), *options],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.out = Output(self.process.stdout)
        self.err = Output(self.process.stderr)

    def type(self, *lines: str) -> None:
        self.process.stdin.write("".join(line + "\n" for line in lines))
        self.process.stdin.flush()

    def finish(self) -> int:
        """End of input: the client waits for its echoes, quits, exits."""
        self.process.stdin.close()
        return self.process.wait(WAIT)

    def chat(self) -> list[str]:
        """The chat lines seen, without the HH:MM."""
        return [line[6:] for line in self.out.lines if re.match(r"\d\d:\d\d <", line)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


# ------------------------------------------------- helpers of several modules


def serve(**settings):
    """`running_server` with the rate limit off unless `rate_limit` is given:
    these tests send far faster than a person types, and test the limit on purpose."""
    settings.setdefault("rate_limit", 0)
    return running_server(**settings)


def ids_of(frames, kind: str = "msg") -> list[int]:
    """The `id` of each frame of type `kind` in `frames` (any iterable of
    decoded frames), in order: msg ids unless told."""
    return [frame["id"] for frame in frames if frame["type"] == kind]


def raw_frame(payload: bytes) -> bytes:
    """`payload` behind chat/1's 4-byte big-endian length header, unchecked:
    the way to send bytes the codec would refuse to frame."""
    return len(payload).to_bytes(4, "big") + payload


class TLSFiles:
    """A trustme CA and a certificate for localhost/127.0.0.1 it signed, as PEM
    files in `directory`: `cert`, `key`, `ca` (paths as str), `client()` a
    context trusting the CA."""

    def __init__(self, directory, ca=None, name: str = "server"):
        import trustme
        self.ca = ca or trustme.CA()
        issued = self.ca.issue_cert("localhost", "127.0.0.1")
        directory = Path(directory)
        self.cert = str(directory / f"{name}-cert.pem")
        self.key = str(directory / f"{name}-key.pem")
        self.ca_file = str(directory / f"{name}-ca.pem")
        issued.private_key_pem.write_to_path(self.key)
        with open(self.cert, "wb") as chain:
            for blob in issued.cert_chain_pems:
                chain.write(blob.bytes())
        self.ca.cert_pem.write_to_path(self.ca_file)

    def settings(self) -> dict:
        """The chatd settings serving this certificate."""
        return {"tls_cert": self.cert, "tls_key": self.key}

    def client(self):
        """An ssl context that trusts this CA (and verifies host names)."""
        import ssl
        context = ssl.create_default_context(cafile=self.ca_file)
        return context


def kernel_send_buffer_max() -> int:
    """The most, in bytes, a TCP socket's send buffer can grow to (the maximum
    of Linux's tcp_wmem): what the kernel may hold beyond chatd's own queue."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
        return int(limits.read().split()[2])


class Link:
    """One relayed connection: the client's socket, chatd's, and whether the
    relay still forwards between them."""

    def __init__(self, name: str, client: socket.socket, server: socket.socket):
        self.name, self.client, self.server = name, client, server
        self.forwarding = True


class Relay:
    """A loopback TCP relay from chatcli to chatd that the test steers.

    It reads each new connection's first frame (chatcli's hello) to learn
    the client's name, then forwards both ways.  `hold()` keeps new
    connections waiting (accepted, not yet forwarded) until `release()`;
    `turn_away(n)` closes each client's next n connections right after their
    hello; `black_hole(link)` keeps a link open but drops all it carries.
    `events` records (name, what, monotonic time): accepted, turned away.
    """

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.links: list[Link] = []
        self.events: list[tuple[str, str, float]] = []
        self.changed = threading.Condition()
        self._open = threading.Event()
        self._open.set()
        self._turn_away: dict[str, int] = {}
        self._turn_away_default = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            accepted_at = time.monotonic()
            threading.Thread(target=self._serve, args=(client, accepted_at), daemon=True).start()

    def _serve(self, client, accepted_at):
        self._open.wait()
        hello = self._first_frame(client)
        if hello is None:
            client.close()
            return
        name = framing.parse_payload(hello[framing.HEADER_SIZE:])["name"]
        with self.changed:
            self.events.append((name, "accepted", accepted_at))
            left = self._turn_away.get(name, self._turn_away_default)
            if left > 0:
                self._turn_away[name] = left - 1
                client.close()
                self.events.append((name, "turned away", time.monotonic()))
                self.changed.notify_all()
                return
        server = socket.create_connection(self.upstream)
        server.sendall(hello)
        link = Link(name, client, server)
        with self.changed:
            self.links.append(link)
            self.changed.notify_all()
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(link, source, target), daemon=True).start()

    @staticmethod
    def _first_frame(sock) -> bytes | None:
        data = b""
        while len(data) < framing.HEADER_SIZE or \
                len(data) < framing.HEADER_SIZE + int.from_bytes(data[:4], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data  # chatcli sends nothing after hello before the answer

    @staticmethod
    def _pump(link, source, target):
        try:
            while data := source.recv(65536):
                if link.forwarding:
                    target.sendall(data)
        except OSError:
            pass  # one side was cut

    def link_of(self, name: str, timeout: float = WAIT) -> Link:
        """The newest link of client `name`, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                links = [link for link in self.links if link.name == name]
                if links:
                    return links[-1]
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no link of {name}"
                self.changed.wait(remaining)

    def hold(self):
        self._open.clear()

    def release(self):
        self._open.set()

    def turn_away(self, times: int):
        """Close every client's next `times` connections right after its hello."""
        with self.changed:
            self._turn_away_default = times

    @staticmethod
    def cut(link: Link) -> float:
        """Reset the client's side of `link`; chatd's side stays open and
        silent (a drop the server has not noticed).  Returns when."""
        link.forwarding = False
        link.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
        # shutdown wakes the pump blocked in recv, which close alone would not.
        link.client.shutdown(socket.SHUT_RDWR)
        link.client.close()
        return time.monotonic()

    @staticmethod
    def black_hole(link: Link) -> float:
        """Keep both sides of `link` open but let nothing through, either way."""
        link.forwarding = False
        return time.monotonic()

    def close(self):
        self.listener.close()
        self._open.set()
        for link in self.links:
            link.client.close()
            link.server.close()


def assert_cut_too_slow(frames: list) -> None:
    """A slow consumer's last frames: `error` and `bye` too_slow, after a prefix of
    the room's messages that is still framed (ids 1, 2, ... with none missing)."""
    assert [(f["type"], f.get("code") or f.get("reason")) for f in frames[-2:]] == [
        ("error", "too_slow"), ("bye", "too_slow")]
    received = ids_of(frames)
    assert received == list(range(1, len(received) + 1))
