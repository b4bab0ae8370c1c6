"""What a cluster keeps of its acknowledged says when Redis is killed under
load (issue 16; CLUSTER.md "Durability"; docs/cluster.md, Failures).

Redis runs with `appendonly yes` and `appendfsync always`: it fsyncs the AOF
before it answers or publishes, so a say's echo (its acknowledgement) means
the say is on disk.  One node, one client saying at a steady rate; Redis gets
SIGKILL after some echoes and starts again on its AOF.  The drive and the
check are benchmarks/cluster_durability.py's, which measures the same for
`everysec` and higher rates.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager

from benchmarks.cluster_durability import (ROOM, SAYER, build_fsync_log,
                                            kill_under_load, lose_page_cache)
from redis_support import RedisServer
from support import REPO, ChatClient, wait_until
from test_cluster import connects, joined, start_node

RATE = 300     # says per second
COUNT = 600    # two seconds of says
KILL_AFTER = 100


@contextmanager
def crashable_redis():
    """A Redis with `appendonly yes` and `appendfsync always` (a test may lower
    it) whose machine can crash: (redis, crash), `crash()` kills it, cuts its
    AOF back to what its last fsync covered (it must lose something) and
    starts it again."""
    with tempfile.TemporaryDirectory(prefix="chatd-redis-") as directory:
        fsync_log = os.path.join(directory, "fsync.log")
        redis = RedisServer(directory, appendonly=True, appendfsync="always",
                            env={"LD_PRELOAD": build_fsync_log(directory),
                                 "FSYNC_LOG": fsync_log})

        def crash():
            redis.stop()
            assert lose_page_cache(directory, fsync_log) > 0
            redis.start()
        try:
            yield redis, crash
        finally:
            redis.stop()


def test_a_redis_killed_under_load_keeps_every_acknowledged_say():
    with tempfile.TemporaryDirectory(prefix="chatd-redis-") as directory:
        durable = RedisServer(directory, appendonly=True, appendfsync="always")
        try:
            with start_node(durable) as node:
                outcome = kill_under_load(durable, (node.host, node.port), RATE, COUNT,
                                          KILL_AFTER)
                # Every say acknowledged before the kill is still in Redis.
                assert len(outcome.acked) >= KILL_AFTER and outcome.lost == []
                # The kill fell mid-load, and the says went on after the restart.
                assert len(outcome.acked) < COUNT
                assert any(at > outcome.killed_at for at in outcome.echoes.values())
                # Every say was answered once: an echo, or unavailable for one
                # Redis never took; Redis kept exactly the echoed ones.
                assert outcome.sent == COUNT and outcome.unanswered == 0
                assert set(outcome.refused.values()) <= {"unavailable"}
                assert outcome.stored == set(outcome.echoes)
                # Redis came back with its data: the node reconnected, kept its
                # lease and its clients (no fencing).
                assert not outcome.closed
                wait_until(lambda: connects(node) == 2, what="the node reconnected")
                assert not any("lost its lease" in line for line in node.lines)
                with ChatClient((node.host, node.port), "reader") as reader:
                    joined(reader, ROOM)
                    reader.send({"type": "history", "room": ROOM, "limit": 1000, "ref": "h"})
                    history = reader.next(lambda m: m.get("ref") == "h")
                assert not history.get("more")
                said = [m for m in history["messages"] if m["from"] == SAYER]
                assert [m["text"] for m in said] == [f"say {ref}" for ref in
                                                     sorted(outcome.echoes)]
                ids = [m["id"] for m in said]
                assert ids == sorted(set(ids))
        finally:
            durable.stop()


def test_a_machine_crash_keeps_only_what_redis_fsynced():
    """The benchmark's power loss: with `appendfsync no` Redis never fsyncs its
    AOF, so cutting it back to its last fsync loses the write; with `always`
    the write was fsynced before Redis answered, so it stays."""
    for policy, kept in (("always", b"v"), ("no", None)):
        with tempfile.TemporaryDirectory(prefix="chatd-redis-") as directory:
            fsync_log = os.path.join(directory, "fsync.log")
            redis = RedisServer(directory, appendonly=True, appendfsync=policy,
                                env={"LD_PRELOAD": build_fsync_log(directory),
                                     "FSYNC_LOG": fsync_log})
            try:
                assert redis.command("SET", "k", "v") == b"OK"
                redis.stop()
                dropped = lose_page_cache(directory, fsync_log)
                assert (dropped > 0) == (kept is None)
                redis.start()
                assert redis.command("GET", "k") == kept
            finally:
                redis.stop()


def test_the_durability_benchmark_prints_its_table(tmp_path):
    report = tmp_path / "durability.json"
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster_durability", "--crash", "process,machine",
         "--fsync", "always", "--rates", "300", "--runs", "1", "--kill-after", "0.3",
         "--json", str(report)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert "summary:" in finished.stdout
    runs = json.loads(report.read_text())["runs"]
    assert [(r["crash"], r["fsync"], r["rate"]) for r in runs] == \
        [("process", "always", 300), ("machine", "always", 300)]
    for r in runs:
        assert r["acked"] >= 90 and r["lost"] == 0 and r["window_ms"] == 0
        assert r["unanswered"] == 0 and not r["fenced"]


def test_a_redis_that_lost_its_last_writes_hands_out_no_id_twice():
    """everysec and a crash of Redis' machine: Redis comes back with its epoch
    and the node's lease, but without the last says, which the members had
    seen.  The node notices at its catch-up (the room's events went back):
    the next say is echoed and delivered, with an id above every id seen."""
    with crashable_redis() as (redis, crash):
        with start_node(redis) as node, \
                ChatClient((node.host, node.port), "ann") as ann, \
                ChatClient((node.host, node.port), "bob") as bob:
            joined(ann, ROOM)
            joined(bob, ROOM)
            # From here on Redis fsyncs only in the background: what follows
            # is acknowledged and seen, and not on disk yet.
            assert redis.command("CONFIG", "SET", "appendfsync", "no") == b"OK"
            seen = []
            for n in range(5):
                ann.send({"type": "say", "room": ROOM, "text": f"lost {n}", "ref": n})
                ann.next(lambda m: m.get("ref") == n)
                seen.append(bob.next_of("msg")["id"])
            crash()
            assert redis.command("GET", f"chatd:seq:{ROOM}") in (None, b"0")
            node.wait_for_log("Redis restarted without its last writes")
            ann.send({"type": "say", "room": ROOM, "text": "after", "ref": "a"})
            echo = ann.next(lambda m: m.get("ref") == "a")
            assert echo["type"] == "msg" and echo["id"] > max(seen)
            assert bob.next_of("msg") == {k: v for k, v in echo.items() if k != "ref"}


def test_numbers_another_node_gave_again_after_the_loss_reach_every_node():
    """Two nodes, and node b back first after such a loss: its member joins the
    room and says there, taking the room's event numbers node a had already
    delivered (lost with Redis' last writes).  Node a, back later, learns
    they were given again and delivers both; the say's id is above every id
    seen."""
    with crashable_redis() as (redis, crash):
        with start_node(redis, "--cluster-lease", "30") as a, \
                start_node(redis, "--cluster-lease", "30") as b, \
                ChatClient((a.host, a.port), "ann") as ann, \
                ChatClient((b.host, b.port), "bob") as bob:
            joined(ann, ROOM)
            assert redis.command("CONFIG", "SET", "appendfsync", "no") == b"OK"
            seen = []
            for n in range(3):
                ann.send({"type": "say", "room": ROOM, "text": f"lost {n}", "ref": n})
                seen.append(ann.next(lambda m: m.get("ref") == n)["id"])
            a.process.send_signal(signal.SIGSTOP)
            try:
                crash()
                wait_until(lambda: connects(b) == 2, what="node b back")
                joined(bob, ROOM)
                bob.send({"type": "say", "room": ROOM, "text": "first back", "ref": "b"})
                echo = bob.next(lambda m: m.get("ref") == "b")
                assert echo["type"] == "msg" and echo["id"] > max(seen)
            finally:
                a.process.send_signal(signal.SIGCONT)
            assert ann.next_of("joined")["name"] == "bob"
            heard = ann.next_of("msg")
            assert (heard["text"], heard["id"]) == ("first back", echo["id"])
            a.wait_for_log(f"room {ROOM}'s events after \\d+ were lost; the numbers "
                           "given again are taken as new")


def test_a_session_redis_lost_with_its_last_writes_is_closed():
    """A hello (and a join) made just before Redis' machine crashed: after the
    restart Redis has neither, so the node closes that session (`bye`
    shutdown; the client comes back with a new hello) rather than keep a
    user whose name anyone may take."""
    with crashable_redis() as (redis, crash):
        with start_node(redis) as node, \
                ChatClient((node.host, node.port), "ann") as ann:
            joined(ann, ROOM)
            assert redis.command("CONFIG", "SET", "appendfsync", "no") == b"OK"
            with ChatClient((node.host, node.port), "cat") as cat:
                joined(ann, "later")  # ann's join is lost too
                crash()
                assert cat.frames_until_close()[-1] == {"type": "bye",
                                                        "reason": "shutdown"}
            assert ann.next_of("left") == {"type": "left", "room": "later",
                                           "name": "ann"}
            ann.send({"type": "say", "room": ROOM, "text": "still here", "ref": 1})
            assert ann.next(lambda m: m.get("ref") == 1)["type"] == "msg"
