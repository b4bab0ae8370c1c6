"""The load benchmark works: tiny real runs against chatd and the baselines, and
its delivery check and histogram on crafted input.  No speed is asserted."""

import json
import subprocess
import sys

import framing
from benchmarks.loadgen.clients import (ROOM_STREAM, Chat1Client, RespClient, message_text,
                                        resp_command)
from benchmarks.loadgen.delivery import DeliveryCheck
from benchmarks.loadgen.histogram import LogHistogram
from support import REPO

# A run of a few connections for about a second per scenario and target.
SMALL = ["--receivers", "5", "--senders", "2", "--window", "4", "--rate", "200",
         "--warmup", "0.3", "--duration", "1", "--no-pin"]


def run_benchmark(tmp_path, *flags: str) -> tuple[dict, str]:
    report_file = tmp_path / "load.json"
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", *flags, "--json", str(report_file)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return json.loads(report_file.read_text()), finished.stdout


def assert_delivered_exactly(row: dict) -> None:
    assert "error" not in row, row
    assert (row["losses"], row["duplicates"], row["reorders"]) == (0, 0, 0), row
    assert row["bad_frames"] == 0 and row["closed_by_server"] == 0, row
    assert row["drained"], row


def test_fanout_and_rate_deliver_every_message_once_in_order(tmp_path):
    report, table = run_benchmark(tmp_path, "--scenario", "fanout,rate",
                                  "--target", "chatd,asyncio", "--procs", "2", *SMALL)
    rows = {(row["scenario"], row["target"]): row for row in report["results"]}
    assert set(rows) == {(s, t) for s in ("fanout", "rate") for t in ("chatd", "asyncio")}
    for row in rows.values():
        assert_delivered_exactly(row)
        assert row["connections"] == 7
        assert row["accepted_total"] > 0 and row["msgs_per_s"] > 0
        # Every receiver got every accepted message: 5 deliveries per message.
        assert row["deliveries_per_s"] > 0
        assert row["latency"]["count"] > 0 and row["latency"]["p99_ms"] > 0
        assert row["rss_loaded_bytes"] > 0
    assert report["chatd_flags"].startswith("--rate-limit 0")
    assert "chatd fanout deliveries/s:" in table and "asyncio" in table.splitlines()[2]


def test_conns_answers_every_ping_and_prices_connections(tmp_path):
    report, _ = run_benchmark(tmp_path, "--scenario", "conns", "--target", "chatd,threads",
                              "--conns", "60", "--ping-sample", "20", *SMALL)
    for row in report["results"]:
        assert_delivered_exactly(row)
        assert row["connections"] == 60
        assert row["pings"] == 20 and row["latency"]["count"] == 20
        assert row["rss_loaded_bytes"] >= row["rss_idle_bytes"] > 0


def test_unknown_target_is_refused():
    finished = subprocess.run([sys.executable, "-m", "benchmarks.load", "--target", "nginx"],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
    assert finished.returncode != 0 and "unknown target" in finished.stderr


def test_delivery_check_tells_losses_duplicates_and_reorders_apart():
    check = DeliveryCheck(1)
    check.add_run([1, 2, 3])
    for number in (5, 4, 4, 7):   # 4 late (reorder), 4 again (duplicate), 6 missing
        check.add(number)
    assert (check.reorders, check.duplicates, check.unique) == (1, 1, 6)
    assert check.missing == {6}
    assert 7 - check.unique == 1  # one loss out of seven accepted


def msg_stream(ids: list[int]) -> bytes:
    return b"".join(framing.encode({"type": "msg", "room": "lobby", "from": "s0",
                                    "text": message_text(0, number, 1.0, 64), "id": number,
                                    "ts": 1.5}) for number in ids)


def test_fast_scan_sees_a_swap_whatever_the_read_boundaries():
    stream = msg_stream([1, 2, 4, 3, 5, 6])
    for step in (1, 7, 64, len(stream)):
        client = Chat1Client(None, "r0", None, LogHistogram())
        for start in range(0, len(stream), step):
            client.feed(stream[start:start + step])
        check = client.checks[ROOM_STREAM]
        assert (client.delivered, check.unique, check.reorders, check.duplicates) == (6, 6, 1, 0)
        assert client.bad_frames == 0 and client.pending == b""


def test_sender_counts_its_own_echoes_as_acknowledgements():
    client = Chat1Client(None, "s0", 0, LogHistogram())
    other = framing.encode({"type": "msg", "room": "lobby", "from": "s01", "text": "x",
                            "id": 3, "ts": 1.0})
    client.feed(msg_stream([1, 2]) + other)
    assert (client.acked, client.delivered) == (2, 3)


def test_resp_scan_checks_each_sender_in_its_own_order():
    def push(sender: int, number: int) -> bytes:
        # What Redis sends a subscriber: an array of "message", the channel, the payload.
        return resp_command(b"message", b"lobby", message_text(sender, number, 1.0, 64).encode())

    stream = push(1, 1) + push(2, 1) + push(1, 3) + push(1, 2) + push(2, 2) + push(2, 2)
    for step in (1, 50, len(stream)):
        client = RespClient(None, "r0", None, LogHistogram())
        for start in range(0, len(stream), step):
            client.feed(stream[start:start + step])
        counts = {sender: (check.unique, check.reorders, check.duplicates)
                  for sender, check in client.checks.items()}
        assert counts == {b"0001": (3, 1, 0), b"0002": (2, 0, 1)}
        assert client.delivered == 6 and client.bad_frames == 0


def test_histogram_percentiles_within_two_percent():
    histogram = LogHistogram()
    for microseconds in range(1, 10_001):
        histogram.record(microseconds * 1e-6)
    assert abs(histogram.percentile(0.5) - 5e-3) / 5e-3 < 0.02
    assert abs(histogram.percentile(0.99) - 9.9e-3) / 9.9e-3 < 0.02
    assert histogram.summary()["max_ms"] == 10.0
