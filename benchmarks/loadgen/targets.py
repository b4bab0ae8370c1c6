"""The servers under load, each started as its own process on a free loopback port.

chatd runs with `--rate-limit 0` (the benchmark floods it on purpose) and
its stderr to a file that is read once it has exited (see LOG_LEVELS); the
baselines run as they are; Redis runs with persistence off.  When `taskset`
exists and there are two CPUs, the server is pinned to one and the generator
to the other.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .tls import certificate

REPO = Path(__file__).resolve().parents[2]
# How long a freshly started server may take to accept connections.
START_SECONDS = 15.0
# Connections the servers are told to allow on top of what a scenario opens.
SPARE_CONNECTIONS = 64
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

TARGETS = ("chatd", "chatd-memory", "chatd-ws", "chatd-tls", "chatd-cluster", "asyncio",
           "threads", "redis", "redis-tls")
# chatd-ws: chatd-memory's chat/1 over WebSocket on its web port (--ws-port).
# chatd-cluster: two chatd nodes and one Redis (benchmarks/loadgen/cluster.py).
DIALECTS = {"chatd": "chat1", "chatd-memory": "chat1", "chatd-ws": "ws", "chatd-tls": "chat1",
            "chatd-cluster": "chat1", "asyncio": "chat1", "threads": "chat1", "redis": "resp",
            "redis-tls": "resp"}
# Targets that need redis-server on PATH.
NEEDS_REDIS = ("redis", "redis-tls", "chatd-cluster")
# Each TLS target and the same server over plaintext, which it is compared with.
TLS_TARGETS = {"chatd-tls": "chatd-memory", "redis-tls": "redis"}


# The durable store's writer figures exist only in the line chatd logs at
# info as it exits (chatd/app.py `_close_everything`): messages, batches
# (commits), the largest batch and the longest wait for a commit.  At info
# chatd also logs a line per connection opened and per connection closed, and
# nothing per message.  In fanout and rate (R + S connections, 110 by default)
# those lines fall in the set-up and the tear-down, outside the measured
# window, so the hot path is what it is at warning.  conns opens up to 10,000
# connections and commits nothing, so it stays at warning (no line per
# connection), as in the earlier reports.  Both chatd targets run at the same
# level, so the durable store and memory-only compare like for like.
LOG_LEVELS = {"fanout": "info", "rate": "info", "conns": "warning"}
_STORE_LINE = re.compile(r"store: (\d+) messages in (\d+) batches \(largest (\d+), "
                         r"longest wait ([\d.]+) ms\); closed cleanly")
_STORE_FAILED = "store: could not commit everything"
_LONGEST_TURN = re.compile(r"longest loop turn so far: ([\d.]+) ms; (\d+) sends for (\d+) "
                           r"deliveries")


def chatd_log_level(scenario: str) -> str:
    return LOG_LEVELS.get(scenario, "warning")


def read_chatd_log(text: str, durable: bool) -> dict:
    """What chatd's log says at exit: its longest loop turn, deliveries per send and the
    store's writer figures.

    The writer's figures cover the whole run (warm-up and drain included);
    `store` is None for memory-only, and holds `error` when the line is
    missing (chatd could not commit everything, or did not exit by itself).
    """
    summary: dict = {"longest_turn_ms": None, "deliveries_per_send": None, "store": None}
    turn = _LONGEST_TURN.search(text)
    if turn:
        summary["longest_turn_ms"] = float(turn.group(1))
        sends, deliveries = int(turn.group(2)), int(turn.group(3))
        summary["deliveries_per_send"] = deliveries / sends if sends else None
    if not durable:
        return summary
    line = _STORE_LINE.search(text)
    if line is None:
        reason = ("it could not commit everything before exiting" if _STORE_FAILED in text
                  else "no writer summary in its log")
        summary["store"] = {"error": reason}
        return summary
    messages, batches, largest = (int(line.group(i)) for i in (1, 2, 3))
    summary["store"] = {"messages": messages, "batches": batches,
                        "mean_batch": messages / batches if batches else None,
                        "largest_batch": largest, "longest_wait_ms": float(line.group(4))}
    return summary


def available_targets() -> list[str]:
    return [name for name in TARGETS
            if name not in NEEDS_REDIS or shutil.which("redis-server")]


def pinning() -> tuple[int, int] | None:
    """(server CPU, generator CPU), or None when the machine cannot pin."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        return None
    return cpus[0], cpus[1]


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid`, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def wait_listening(process: subprocess.Popen, connect, exited, stop, what: str) -> None:
    """Return once `connect()` gives a connection (closed at once): the server
    `process` listens.  If the process exits first, raise RuntimeError with
    `exited()`'s message; after START_SECONDS, call `stop()` and raise."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(exited())
        try:
            connect().close()
            return
        except OSError:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError(f"{what} did not listen within "
                                   f"{START_SECONDS:g}s") from None
            time.sleep(0.05)  # polling a process we do not control; no event to wait on


def end_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there 10 s later; reaped either way."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_for(target: str, port: int, max_connections: int, directory: str,
                log_level: str = "warning", tls_files: tuple | None = None,
                cluster: str | None = None) -> list[str]:
    """How to start `target`; chatd's durable store goes to a file in `directory`.

    A TLS target serves TLS only, on `port`, with `tls_files` (certificate
    chain, key, CA) as PEM paths; chatd-tls is chatd-memory over TLS.
    chatd-cluster is one node, joined to the Redis at `cluster` (a
    `--cluster` URL; history lives in Redis, so no store file).
    """
    if target.startswith("chatd"):
        store = "memory" if target != "chatd" else os.path.join(directory, "chatd.db")
        # chatd-ws: the load goes to the web port; chat/1's TCP port is any free one.
        # chatd-tls: to the TLS port, with no plaintext port at all.
        ports = ["--port", str(port)]
        if target == "chatd-ws":
            ports = ["--port", "0", "--ws-port", str(port)]
        elif target == "chatd-tls":
            cert, key, _ = tls_files
            ports = ["--no-plaintext", "--tls-port", str(port), "--tls-cert", cert,
                     "--tls-key", key]
        return [sys.executable, "-m", "chatd", "--host", "127.0.0.1", *ports,
                "--rate-limit", "0", "--max-clients", str(max_connections),
                "--store", store, "--log-level", log_level,
                *(["--cluster", cluster] if target == "chatd-cluster" else [])]
    if target in ("asyncio", "threads"):
        return [sys.executable, "-m", f"benchmarks.baselines.{target}_server",
                "--host", "127.0.0.1", "--port", str(port)]
    if target in ("redis", "redis-tls"):
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                   "--save", "", "--appendonly", "no", "--maxclients", str(max_connections),
                   "--loglevel", "warning", "--logfile", ""]
        if target == "redis-tls":  # needs a Redis built with TLS (BUILD_TLS=yes)
            cert, key, ca_file = tls_files
            command[3:5] = ["--port", "0", "--tls-port", str(port)]
            command += ["--tls-cert-file", cert, "--tls-key-file", key,
                        "--tls-ca-cert-file", ca_file, "--tls-auth-clients", "no"]
        return command
    raise ValueError(f"unknown target {target!r}")


class TargetProcess:
    """A started server: its address, its pid, and what /proc says about it.

    chatd's stderr goes to a file in the server's temporary directory (its
    last line explains an early exit); once chatd has stopped, `log_summary`
    holds what `read_chatd_log` found there, if it logged at info.
    """

    # The Redis a cluster target shares (benchmarks/loadgen/cluster.py); none here.
    redis = None

    def __init__(self, target: str, max_connections: int, cpu: int | None,
                 log_level: str = "warning", cluster: str | None = None):
        self.target = target
        self.port = free_port()
        self._directory = tempfile.TemporaryDirectory(prefix="chatd-bench-")
        # A TLS target's certificate chain, key and CA (the generator trusts the CA).
        self.tls_files = certificate(self._directory.name) if target in TLS_TARGETS else None
        self.command = command_for(target, self.port, max_connections + SPARE_CONNECTIONS,
                                   self._directory.name, log_level, self.tls_files, cluster)
        # Read only at info: below it chatd logs neither figure.
        self._read_log = log_level in ("debug", "info")
        self.log_summary: dict | None = None
        self._log_path = None
        stderr = subprocess.DEVNULL
        if target.startswith("chatd"):
            self._log_path = os.path.join(self._directory.name, "chatd.log")
            stderr = open(self._log_path, "wb")
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
        # taskset execs the server, so the pid is the server's own.
        try:
            self.process = subprocess.Popen(prefix + self.command, cwd=REPO,
                                            stdout=subprocess.DEVNULL, stderr=stderr)
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()  # the child has its own copy
        self.pid = self.process.pid
        self._wait_listening()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the generator connects: members are dealt over these in turn."""
        return [self.address]

    def _wait_listening(self) -> None:
        def exited() -> str:
            said = self._log_text().strip().splitlines()[-1:]
            self._directory.cleanup()
            return (f"{self.target} exited with {self.process.returncode}: "
                    f"{' '.join(self.command)}" + (f" ({said[0]})" if said else ""))

        wait_listening(self.process, lambda: socket.create_connection(self.address, timeout=1),
                       exited, self.stop, self.target)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def other_threads_cpu_seconds(self) -> float:
        """CPU seconds of every thread but the main one (chatd's: the store's worker)."""
        total = 0.0
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            if int(tid) == self.pid:
                continue
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:  # the thread has just ended
                continue
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        return total

    def stop(self) -> None:
        end_process(self.process)
        if self._log_path is not None and self._read_log and self.log_summary is None:
            self.log_summary = read_chatd_log(self._log_text(), self.target == "chatd")
        self._directory.cleanup()

    def _log_text(self) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""
