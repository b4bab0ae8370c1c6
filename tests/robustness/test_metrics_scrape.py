"""A scrape of /metrics while chatd holds ten thousand welcomed connections:
what it costs the loop, and that every series still reads right."""

import socket
import statistics
import time

from prometheus_client.parser import text_string_to_metric_families

from crowd import Crowd
from support import ServerProcess
from test_connection_pressure import HELD, _raise_own_fd_limit

SCRAPES = 30


def _round_trip(address, path: str) -> tuple[float, bytes]:
    """Seconds from sending a GET to the server's close, and the answer."""
    with socket.create_connection(address, timeout=10) as sock:
        began = time.perf_counter()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: chatd\r\n\r\n".encode())
        answer = b""
        while data := sock.recv(65536):
            answer += data
        return time.perf_counter() - began, answer


def test_a_scrape_of_ten_thousand_connections_costs_the_loop_under_5_ms():
    _raise_own_fd_limit(HELD + 200)
    with socket.socket() as probe:  # a free port, held (not listening) until chatd has it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
        server = ServerProcess("--max-clients", str(HELD + 100), "--store", "memory",
                               "--metrics-port", str(metrics_port))
    metrics = ("127.0.0.1", metrics_port)
    with server, Crowd((server.host, server.port)) as crowd:
        peers = crowd.open([f"held{index}" for index in range(HELD)], timeout=30)
        assert all(peer.welcomed for peer in peers)
        scrape, other = [], []
        for _ in range(SCRAPES):
            took, answer = _round_trip(metrics, "/metrics")
            scrape.append(took)
            took, _ = _round_trip(metrics, "/nothing")  # the same HTTP, no render
            other.append(took)
        body = answer.partition(b"\r\n\r\n")[2].decode()
        families = {family.name: family for family in text_string_to_metric_families(body)}
        connections = {sample.labels["listener"]: sample.value
                       for sample in families["chatd_connections"].samples}
        assert connections["chat"] == HELD
        assert families["chatd_users"].samples[0].value == HELD
        for peer in peers:
            crowd.close(peer)
    scrape_ms, other_ms = statistics.median(scrape) * 1000, statistics.median(other) * 1000
    print(f"\n/metrics with {HELD} connections: round trip median {scrape_ms:.2f} ms "
          f"(max {max(scrape) * 1000:.2f}), a 404 {other_ms:.2f} ms: the scrape costs "
          f"about {scrape_ms - other_ms:.2f} ms of the loop; {len(body)} bytes")
