"""The servers under load, each started as its own process on a free loopback port.

chatd runs with `--rate-limit 0` (the benchmark floods it on purpose) and
`--log-level warning` (no line per connection); the baselines run as they
are; Redis runs with persistence off.  When `taskset` exists and there are
two CPUs, the server is pinned to one and the generator to the other.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# How long a freshly started server may take to accept connections.
START_SECONDS = 15.0
# Connections the servers are told to allow on top of what a scenario opens.
SPARE_CONNECTIONS = 64
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

TARGETS = ("chatd", "chatd-memory", "asyncio", "threads", "redis")
DIALECTS = {"chatd": "chat1", "chatd-memory": "chat1", "asyncio": "chat1", "threads": "chat1",
            "redis": "resp"}


def available_targets() -> list[str]:
    return [name for name in TARGETS if name != "redis" or shutil.which("redis-server")]


def pinning() -> tuple[int, int] | None:
    """(server CPU, generator CPU), or None when the machine cannot pin."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        return None
    return cpus[0], cpus[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_for(target: str, port: int, max_connections: int, directory: str) -> list[str]:
    """How to start `target`; chatd's durable store goes to a file in `directory`."""
    if target in ("chatd", "chatd-memory"):
        store = "memory" if target == "chatd-memory" else os.path.join(directory, "chatd.db")
        return [sys.executable, "-m", "chatd", "--host", "127.0.0.1", "--port", str(port),
                "--rate-limit", "0", "--max-clients", str(max_connections),
                "--store", store, "--log-level", "warning"]
    if target in ("asyncio", "threads"):
        return [sys.executable, "-m", f"benchmarks.baselines.{target}_server",
                "--host", "127.0.0.1", "--port", str(port)]
    if target == "redis":
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                "--save", "", "--appendonly", "no", "--maxclients", str(max_connections),
                "--loglevel", "warning", "--logfile", ""]
    raise ValueError(f"unknown target {target!r}")


class TargetProcess:
    """A started server: its address, its pid, and what /proc says about it."""

    def __init__(self, target: str, max_connections: int, cpu: int | None):
        self.target = target
        self.port = free_port()
        self._directory = tempfile.TemporaryDirectory(prefix="chatd-bench-")
        self.command = command_for(target, self.port, max_connections + SPARE_CONNECTIONS,
                                   self._directory.name)
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
        # taskset execs the server, so the pid is the server's own.
        self.process = subprocess.Popen(prefix + self.command, cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        self._wait_listening()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited with {self.process.returncode}: "
                                   f"{' '.join(self.command)}")
            try:
                socket.create_connection(self.address, timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.target} did not listen within "
                                       f"{START_SECONDS:g}s") from None
                time.sleep(0.05)  # polling a process we do not control; no event to wait on

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._directory.cleanup()
