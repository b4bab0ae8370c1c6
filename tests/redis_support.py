"""A real redis-server for the cluster tests: started on a unix socket in a
temporary directory (no TCP port: nothing else on the machine can reach or
collide with it), stopped, killed or restarted by the test."""

import os
import signal
import socket
import subprocess
import tempfile
import threading

import hiredis
import pytest

from chatd.cluster.resp import encode_command
from support import WAIT


class RedisServer:
    """`redis-server --port 0 --unixsocket PATH`, without persistence unless asked
    (`appendonly`: AOF, fsynced as `appendfsync` says: "always", before each
    reply, so a restart loses nothing acknowledged; "everysec", once a second
    in the background; "no", when the kernel likes).

    `env`: more environment for redis-server (benchmarks/cluster_durability.py
    preloads its fsync log with it).  `url` is what `chatd --cluster` takes.
    `command(*args)` sends one command on a fresh blocking connection and
    returns its RESP2 reply (for the tests' own looks at Redis, never for chatd).
    """

    def __init__(self, directory: str, appendonly: bool = False, appendfsync: str = "always",
                 env: dict | None = None):
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self.directory = directory
        self.path = os.path.join(directory, "redis.sock")
        self.url = "unix://" + self.path
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.env = {**os.environ, **(env or {})}
        self.process = None
        self.start()

    def start(self) -> None:
        """Start (again) on the same socket path; return once it answers PING."""
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.process = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.path,
             "--unixsocketperm", "700", "--dir", self.directory, "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
             "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env)
        # Redis logs this line once it accepts connections; a reader thread
        # would be needed only if the test waited longer than the pipe holds.
        timer = threading.Timer(WAIT, self.process.kill)
        timer.start()
        try:
            for line in self.process.stdout:
                if "ready to accept connections" in line.lower():
                    break
            else:
                raise AssertionError("redis-server did not start")
        finally:
            timer.cancel()
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()

    @staticmethod
    def _drain(stream) -> None:
        for _ in stream:
            pass

    def command(self, *args):
        """One command, its reply (a ReplyError is returned, not raised)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(WAIT)
            sock.connect(self.path)
            sock.sendall(encode_command(args))
            reader = hiredis.Reader()
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("redis closed the connection")
                reader.feed(data)
                reply = reader.gets()
                if reply is not False:
                    return reply

    def stop(self) -> None:
        """SIGKILL: whatever was not persisted is lost (a Redis that lost its data)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def redis():
    """A redis-server for one test, in a short temporary directory (a unix
    socket path must fit 107 bytes), killed at the end."""
    with tempfile.TemporaryDirectory(prefix="chatd-redis-") as directory:
        server = RedisServer(directory)
        try:
            yield server
        finally:
            server.stop()
