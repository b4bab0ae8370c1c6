"""GET /metrics: a real chatd scraped through a real socket, parsed with prometheus_client."""

import socket
import statistics
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

import chatd.http_metrics
import chatd.metrics
from chatd.app import Server
from chatd.config import Config, load_config
from chatd.metrics import Metrics
from chatd.output import OutputQueue
from support import (REPO, WAIT, ChatClient, ServerProcess, running_server, serve,
                     wait_until)
from test_ws_server import http_get, ws_connect

SERIES = {
    "chatd_connections": "gauge", "chatd_connections_max": "gauge",
    "chatd_connections_accepted": "counter", "chatd_connections_rejected": "counter",
    "chatd_received_bytes": "counter", "chatd_sent_bytes": "counter",
    "chatd_output_queued_bytes": "gauge", "chatd_disconnects": "counter",
    "chatd_requests": "counter", "chatd_errors_sent": "counter",
    "chatd_messages_accepted": "counter", "chatd_deliveries": "counter",
    "chatd_slow_consumers": "counter", "chatd_users": "gauge", "chatd_rooms": "gauge",
    "chatd_loop_turn_seconds": "histogram", "chatd_loop_longest_turn_seconds": "gauge",
    "chatd_password_hashes": "counter", "chatd_password_hash_failures": "counter",
}
STORE_SERIES = {
    "chatd_store_batches": "counter", "chatd_store_rows_committed": "counter",
    "chatd_store_slow_batches": "counter", "chatd_store_largest_batch_rows": "gauge",
    "chatd_store_longest_lag_seconds": "gauge", "chatd_store_in_flight_rows": "gauge",
}


def request(address, data: bytes, timeout: float = WAIT) -> bytes:
    """Send `data`, read the whole answer up to the server's close."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_close(sock, timeout)


def read_to_close(sock, timeout: float = WAIT) -> bytes:
    deadline = time.monotonic() + timeout
    answer = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            return answer
        answer += data


def split(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def get(address, path="/metrics", method="GET"):
    return split(request(address, f"{method} {path} HTTP/1.1\r\nHost: chatd\r\n\r\n".encode()))


def scrape(server) -> dict:
    """{sample name + sorted labels: value} and the families, from one GET /metrics."""
    status, headers, body = get(server.metrics_address)
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    families = {family.name: family for family in
                text_string_to_metric_families(body.decode())}
    return families


def value(families, family: str, sample: str | None = None, **labels) -> float:
    for item in families[family].samples:
        if item.name == (sample or family) and all(item.labels.get(k) == v
                                                   for k, v in labels.items()):
            return item.value
    raise KeyError((family, sample, labels))


def test_metrics_are_off_by_default_and_flags_set_them():
    assert Config().metrics_port == 0 and Config().metrics_host == "127.0.0.1"
    config = load_config(["--metrics-port", "9464", "--metrics-host", "::1"], environ={})
    assert (config.metrics_port, config.metrics_host) == (9464, "::1")
    assert load_config([], environ={"CHATD_METRICS_PORT": "9100"}).metrics_port == 9100
    with pytest.raises(ValueError):
        Config(metrics_port=70000)
    with serve() as server:
        assert server.metrics_address is None and server.metrics_listener is None


def test_every_series_present_with_its_type_and_histogram_cumulative():
    with running_server(metrics=True) as server:
        with ChatClient(server.address, "alice"):
            families = scrape(server)
    for name, kind in {**SERIES, **STORE_SERIES}.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert value(families, "chatd_connections", listener="chat") == 1
    assert value(families, "chatd_connections", listener="metrics") == 1
    assert value(families, "chatd_users") == 1
    assert value(families, "chatd_rooms") == 1
    assert value(families, "chatd_requests", "chatd_requests_total", type="hello") == 1
    buckets = [(float(item.labels["le"]), item.value)
               for item in families["chatd_loop_turn_seconds"].samples
               if item.name == "chatd_loop_turn_seconds_bucket"]
    assert buckets[-1][0] == float("inf")
    assert [bound for bound, _ in buckets] == sorted(bound for bound, _ in buckets)
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and counts[-1] > 0
    assert counts[-1] == value(families, "chatd_loop_turn_seconds",
                               "chatd_loop_turn_seconds_count")


def test_the_web_listener_has_its_own_accepts_and_refusals_and_websocket_counts():
    with running_server(metrics=True, web=True, store="memory", max_clients=1) as server:
        with ws_connect(server, "webby"):
            assert http_get(server, "/")[0].status == 503  # max_clients=1 is taken
        wait_until(lambda: not server.connections.open, what="the WebSocket closed")
        with pytest.raises(InvalidStatus), ws_connect(server, origin="http://evil.example"):
            pass
        families = scrape(server)
    assert value(families, "chatd_connections_accepted", "chatd_connections_accepted_total",
                 listener="web") == 3
    assert value(families, "chatd_connections_rejected", "chatd_connections_rejected_total",
                 listener="web", reason="over_capacity") == 1
    assert value(families, "chatd_connections_rejected", "chatd_connections_rejected_total",
                 listener="web", reason="accept_failed") == 0
    assert value(families, "chatd_connections_accepted", "chatd_connections_accepted_total",
                 listener="chat") == 0
    assert value(families, "chatd_ws_upgrades", "chatd_ws_upgrades_total") == 1
    assert value(families, "chatd_ws_refused", "chatd_ws_refused_total") == 1


def test_without_the_web_listener_no_web_series():
    with running_server(metrics=True, store="memory") as server:
        families = scrape(server)
    assert "chatd_ws_upgrades" not in families and "chatd_ws_refused" not in families
    assert not [sample for sample in families["chatd_connections_accepted"].samples
                if sample.labels["listener"] == "web"]


def test_memory_only_server_has_no_store_series():
    with running_server(metrics=True, store="memory") as server:
        families = scrape(server)
    assert set(SERIES) <= set(families)
    assert not set(STORE_SERIES) & set(families)


def test_counters_move_as_a_session_runs():
    with running_server(metrics=True, store="memory") as server:
        with ChatClient(server.address, "alice") as alice, \
                ChatClient(server.address, "bob") as bob, \
                ChatClient(server.address, "carol") as carol:
            for client in (alice, bob):
                client.next(lambda m: m["type"] == "joined" and m["name"] == "carol")
            before = scrape(server)
            for n in range(3):
                alice.send({"type": "say", "room": "lobby", "text": f"hello {n}"})
            for client in (alice, bob, carol):
                for n in range(3):
                    client.next_of("msg")
            bob.send({"type": "say", "room": "nowhere", "text": "x"})
            assert bob.next_of("error")["code"] == "no_such_room"
            after = scrape(server)
        members = 3

        def delta(family, sample=None, **labels):
            return (value(after, family, sample, **labels)
                    - value(before, family, sample, **labels))

        # The error frame to bob is one more delivery.
        assert delta("chatd_deliveries", "chatd_deliveries_total") == 3 * members + 1
        assert delta("chatd_messages_accepted", "chatd_messages_accepted_total") == 3
        assert delta("chatd_requests", "chatd_requests_total", type="say") == 4
        assert value(after, "chatd_errors_sent", "chatd_errors_sent_total",
                     code="no_such_room") == 1
        assert delta("chatd_received_bytes", "chatd_received_bytes_total",
                     listener="chat") > 0
        assert delta("chatd_sent_bytes", "chatd_sent_bytes_total", listener="chat") > 0
        assert value(after, "chatd_users") == 3
        assert delta("chatd_connections_accepted", "chatd_connections_accepted_total",
                     listener="metrics") == 1
        assert value(after, "chatd_loop_turn_seconds", "chatd_loop_turn_seconds_count") \
            > value(before, "chatd_loop_turn_seconds", "chatd_loop_turn_seconds_count")


def test_disconnects_and_head_answered():
    with running_server(metrics=True, store="memory") as server:
        with ChatClient(server.address, "alice") as alice:
            alice.send({"type": "quit"})
            alice.frames_until_close()
        status, headers, body = get(server.metrics_address, method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        families = scrape(server)
        assert value(families, "chatd_disconnects", "chatd_disconnects_total",
                     reason="quit") == 1


def test_a_request_split_byte_by_byte_is_answered():
    with running_server(metrics=True, store="memory") as server:
        with socket.create_connection(server.metrics_address, timeout=WAIT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in b"GET /metrics HTTP/1.1\r\nHost: chatd\r\n\r\n":
                sock.sendall(bytes([byte]))
            status, headers, body = split(read_to_close(sock))
        assert status == 200
        assert b"chatd_deliveries_total" in body


def test_wrong_path_method_and_oversized_head():
    with running_server(metrics=True, store="memory") as server:
        address = server.metrics_address
        assert get(address, "/")[0] == 404
        assert get(address, "/metrics/x")[0] == 404
        status, headers, _ = split(request(
            address, b"POST /metrics HTTP/1.1\r\nHost: c\r\nContent-Length: 2\r\n\r\nhi"))
        assert status == 405 and headers["allow"] == "GET, HEAD"
        # Over 8 KiB whole in one piece, and over 8 KiB still incomplete:
        # answered 431 and closed (read_to_close returns only at the close).
        whole = b"GET /metrics HTTP/1.1\r\nHost: c\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        assert split(request(address, whole))[0] == 431
        assert split(request(address, whole[:-4]))[0] == 431
        assert split(request(address, b"nonsense\r\n\r\n"))[0] == 400
        # Chat goes on.
        with ChatClient(server.address, "alice") as alice:
            alice.send({"type": "ping", "ref": 1})
            assert alice.next_of("pong")["ref"] == 1


def test_slow_scrapers_do_not_stall_chat_and_are_closed(monkeypatch):
    monkeypatch.setattr(chatd.http_metrics, "TIMEOUT", 0.5)
    with running_server(metrics=True, store="memory") as server:
        address = server.metrics_address
        # A scraper that never reads its answer, one that never finishes its
        # head (slowloris), one that sends nothing.
        silent_reader = socket.create_connection(address, timeout=WAIT)
        silent_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        silent_reader.sendall(b"GET /metrics HTTP/1.1\r\nHost: c\r\n\r\n")
        slowloris = socket.create_connection(address, timeout=WAIT)
        slowloris.sendall(b"GET /metrics HTTP/1.1\r\nHo")
        idle = socket.create_connection(address, timeout=WAIT)
        with silent_reader, slowloris, idle:
            with ChatClient(server.address, "alice") as alice:
                for ref in range(5):
                    began = time.monotonic()
                    alice.send({"type": "ping", "ref": ref})
                    assert alice.next_of("pong")["ref"] == ref
                    assert time.monotonic() - began < 1.0
            # Closed by the server: the head timeout, then the linger.
            assert read_to_close(slowloris, timeout=WAIT) == b""
            assert read_to_close(idle, timeout=WAIT) == b""
            assert split(read_to_close(silent_reader, timeout=WAIT))[0] == 200


def test_scrapers_beyond_capacity_get_503():
    with running_server(metrics=True, store="memory") as server:
        address = server.metrics_address
        held = [socket.create_connection(address, timeout=WAIT) for _ in range(16)]
        try:
            # Every one of those is open in the server before the next comes.
            with ChatClient(server.address, "alice") as alice:
                alice.send({"type": "ping", "ref": 1})
                alice.next_of("pong")
            deadline = time.monotonic() + WAIT
            while len(server.metrics_connections.open) < 16:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            status, _, _ = split(request(address, b""))
            assert status == 503
        finally:
            for sock in held:
                sock.close()


class _Stub:
    """A transport as the collector sees it (its output queue)."""

    __slots__ = ("output",)

    def __init__(self, size):
        self.output = OutputQueue()
        if size:
            self.output.append(b"x" * size)


def test_scrape_cost_with_10000_connections_of_state(capsys):
    """The scrape's cost grows with the open connections (their queued
    output is summed); measured on a server that is started, not serving, so
    nothing else runs meanwhile."""
    server = Server(Config(port=0, store="memory", log_level="warning"))
    server.start()
    try:
        for n in range(10_000):
            server.connections.open[_Stub(n % 7)] = None
            server.core.users[f"u{n}"] = None
        metrics = Metrics(server)
        metrics.render()
        times = []
        for _ in range(30):
            began = time.perf_counter()
            body = metrics.render()
            times.append(time.perf_counter() - began)
    finally:
        server.connections.open.clear()
        server.core.users.clear()
        server.listener.close()
        server.loop.close()
    median = statistics.median(times) * 1000
    with capsys.disabled():
        print(f"\nscrape of 10,000 connections' state: median {median:.2f} ms, "
              f"max {max(times) * 1000:.2f} ms, {len(body)} bytes")
    assert b"chatd_users 10000.0" in body
    assert b'chatd_output_queued_bytes{listener="chat"} 29994.0' in body
    assert median < 20  # the target is 5 ms; the margin is for a loaded test machine


def test_chatd_process_serves_metrics_on_the_flag_port_and_refuses_a_taken_one():
    # A port held by this test: chatd cannot have it, and says which.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run(
            [sys.executable, "-m", "chatd", "--port", "0", "--store", "memory",
             "--metrics-port", str(port)], cwd=REPO, capture_output=True, text=True,
            timeout=30)
        assert process.returncode == 1
        assert f"(metrics on 127.0.0.1:{port})" in process.stderr
    # A free port, kept bound (SO_REUSEADDR, not listening) while chatd
    # starts, so that no other socket is given it meanwhile; chatd's
    # SO_REUSEADDR bind and listen may share it.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with ServerProcess("--store", "memory", "--metrics-port", str(port)) as server:
            server.wait_for_log(rf"metrics on 127\.0\.0\.1:{port}\b")
            status, headers, body = get(("127.0.0.1", port))
            assert status == 200 and b"chatd_connections" in body
            assert server.stop() == 0


def test_a_big_answer_to_a_scraper_that_never_reads_is_queued_not_blocking(monkeypatch):
    """A 600 KB answer (as if the series were many) to a scraper that reads
    nothing: it goes to the transport's queue and the kernel's buffers (on
    loopback they take it all), chat is answered meanwhile, the scraper is
    closed after the linger anyway, and a scraper still connected at
    shutdown does not hold the server up."""
    big = b"# " + b"x" * 600_000 + b"\n"
    monkeypatch.setattr(chatd.metrics.Metrics, "render", lambda self: big)
    with running_server(metrics=True, store="memory") as server:
        address = server.metrics_address
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(WAIT)
        stalled.connect(address)
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: c\r\n\r\n")
        with stalled, ChatClient(server.address, "alice") as alice:
            # Read from this thread; a RuntimeError (the set changing) is "not yet".
            connections = server.metrics_connections
            wait_until(lambda: connections.bytes_sent + sum(
                transport.output.size for transport in list(connections.open)) > len(big),
                what="the big answer written or queued")
            for ref in range(5):
                began = time.monotonic()
                alice.send({"type": "ping", "ref": ref})
                assert alice.next_of("pong")["ref"] == ref
                assert time.monotonic() - began < 1.0
            # Closed by the server after the linger (2 s), answer unfinished.
            wait_until(lambda: not server.metrics_connections.open,
                       what="the stalled scraper closed")
        idle = socket.create_connection(address, timeout=WAIT)
        with idle:
            wait_until(lambda: len(server.metrics_connections.open) == 1,
                       what="the idle scraper accepted")
            began = time.monotonic()
    # running_server's exit asserts the server stopped; it did so at once.
    assert time.monotonic() - began < 2.0
