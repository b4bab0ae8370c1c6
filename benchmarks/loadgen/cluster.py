"""The chatd-cluster target: one redis-server on a unix socket and NODES chatd nodes
joined to it with `--cluster unix://...` (docs/cluster.md).

The generator deals members over the nodes' addresses in turn (receiver i
and sender i to node i mod NODES), so every message crosses Redis to reach
the members on the other node.  Redis runs without persistence (`--save ""
--appendonly no`): what is measured is the cluster's messaging, not a disk.
When pinned, the nodes and Redis share the server CPU (the generator has the
other): on two cores this measures the cluster's overhead, not a speed-up.
"""

import os
import socket
import subprocess
import tempfile

from .targets import TargetProcess, end_process, process_cpu_seconds, wait_listening

NODES = 2


class RedisProcess:
    """`redis-server --port 0 --unixsocket PATH` in its own temporary directory;
    `url` is what `chatd --cluster` takes."""

    def __init__(self, max_connections: int, cpu: int | None):
        self._directory = tempfile.TemporaryDirectory(prefix="chatd-bench-redis-")
        self.path = os.path.join(self._directory.name, "redis.sock")
        self.url = "unix://" + self.path
        command = ["redis-server", "--port", "0", "--unixsocket", self.path,
                   "--unixsocketperm", "700", "--dir", self._directory.name,
                   "--save", "", "--appendonly", "no", "--maxclients", str(max_connections),
                   "--loglevel", "warning", "--logfile", ""]
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
        # taskset execs redis-server, so the pid is Redis' own.
        self.process = subprocess.Popen(prefix + command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        self._wait_listening()

    def _wait_listening(self) -> None:
        def connect() -> socket.socket:
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.settimeout(1)
                probe.connect(self.path)
            except OSError:
                probe.close()
                raise
            return probe

        def exited() -> str:
            self._directory.cleanup()
            return f"redis-server exited with {self.process.returncode}"

        wait_listening(self.process, connect, exited, self.stop, "redis-server")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        end_process(self.process)
        self._directory.cleanup()


class ClusterTarget:
    """Redis and NODES chatd nodes, read as one server: `addresses` (one per node),
    CPU seconds and RSS summed over the nodes, `redis` for Redis' own CPU.

    `log_summary`, once stopped: the longest loop turn of any node and the
    nodes' mean deliveries per send (each node logs its own at info).
    """

    target = "chatd-cluster"
    tls_files = None

    def __init__(self, max_connections: int, cpu: int | None, log_level: str = "warning"):
        # Each node holds its share of the members plus its link to Redis.
        self.redis = RedisProcess(max_connections + 64, cpu)
        self.nodes: list[TargetProcess] = []
        self.log_summary: dict | None = None
        try:
            for _ in range(NODES):
                self.nodes.append(TargetProcess(self.target, max_connections, cpu, log_level,
                                                cluster=self.redis.url))
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    def rss_bytes(self) -> int:
        return sum(node.rss_bytes() for node in self.nodes)

    def cpu_seconds(self) -> float:
        return sum(node.cpu_seconds() for node in self.nodes)

    def other_threads_cpu_seconds(self) -> float:
        return sum(node.other_threads_cpu_seconds() for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()
        summaries = [node.log_summary for node in self.nodes if node.log_summary]
        if summaries:
            turns = [s["longest_turn_ms"] for s in summaries if s["longest_turn_ms"] is not None]
            ratios = [s["deliveries_per_send"] for s in summaries
                      if s["deliveries_per_send"] is not None]
            self.log_summary = {"longest_turn_ms": max(turns) if turns else None,
                                "deliveries_per_send": sum(ratios) / len(ratios)
                                if ratios else None,
                                "store": None}
