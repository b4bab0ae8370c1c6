"""kill -9 under load, again and again on one store file: the file stays
sound, a kill loses at most what was waiting for its commit (fewer than
MAX_UNCOMMITTED), and no id a client was ever shown is handed out again.

Every run starts chatd on the same file, has SENDERS clients say lines as
fast as their echoes come back (each in the lobby and in a room of its own,
one selectors loop, so they really overlap), and SIGKILLs the server once
they have received a number of frames drawn from a seeded random.
"Acknowledged" is what a sender saw echoed.  After each kill the file is opened read-only and
checked; the next run's first say in each room (before any load) is the
id the restarted server hands out there.
"""

import random
import sqlite3
import statistics
import time

from chatd.store.link import MAX_UNCOMMITTED
from chatd.store.file import CRASH_ID_JUMP
from crowd import Crowd
from support import ServerProcess

RUNS = 20
SENDERS = 4
SEED = 20261130
# Frames the senders receive before the kill, drawn per run from
# random.Random(SEED): the kill lands anywhere from early in the load to well
# into it.  A run's ids span far less than the default --retention (100,000),
# so nothing a run acknowledged is deleted by retention before it is checked.
KILL_AFTER = (1_000, 40_000)
# Says a sender has waiting for their echo at most: enough that the server,
# not the clients, sets the pace.
WINDOW = 256
LOBBY = "lobby"
# A run that has not reached its kill point by then fails (the load runs at
# over ten thousand says a second here).
LOAD_SECONDS = 15.0
# After the kill, how long the clients read what the kernel still holds.
DRAIN_SECONDS = 5.0


def _own_room(index: int) -> str:
    return f"Crash{index}"   # keys are casefolded: the file has "crash<index>"


class Senders:
    """The clients of one run and everything they saw echoed."""

    def __init__(self, crowd: Crowd, run: int, rng: random.Random):
        self.crowd = crowd
        self.run = run
        self.rng = rng
        self.peers = crowd.open([f"sender{index}" for index in range(SENDERS)])
        self.rooms = {peer: _own_room(index) for index, peer in enumerate(self.peers)}
        self.waiting = {peer: 0 for peer in self.peers}   # says not yet echoed
        self.said = {peer: 0 for peer in self.peers}
        self.scanned = {peer: 0 for peer in self.peers}
        # (room key, id) -> (sender, text) of every echo a sender saw of its own say.
        self.acked: dict[tuple[str, int], tuple[str, str]] = {}
        for peer, room in self.rooms.items():
            crowd.send(peer, {"type": "join", "room": room})
        crowd.run_until(lambda: all(p.has("users", room=self.rooms[p]) for p in self.peers),
                        10, "senders in their rooms")
        self.scan()

    def say(self, peer, room: str) -> str:
        text = f"run{self.run} {peer.name} {self.said[peer]} " + "x" * self.rng.randrange(100)
        self.crowd.send(peer, {"type": "say", "room": room, "text": text})
        self.said[peer] += 1
        self.waiting[peer] += 1
        return text

    def scan(self) -> None:
        """Take the frames that came in since the last scan."""
        for peer in self.peers:
            fresh = peer.frames[self.scanned[peer]:]
            self.scanned[peer] = len(peer.frames)
            for frame in fresh:
                kind = frame["type"]
                assert kind != "error", f"{peer.name} got {frame}"
                if kind == "msg" and frame["from"] == peer.name:
                    key = (frame["room"].lower(), frame["id"])
                    assert key not in self.acked, \
                        f"id {key} echoed twice: {self.acked[key]} and {frame['text']!r}"
                    self.acked[key] = (peer.name, frame["text"])
                    self.waiting[peer] -= 1
            assert not peer.bad_frames, peer.bad_frames

    def probe(self) -> dict[str, int]:
        """One say per room before any load: the id each room hands out first."""
        texts = {self.say(self.peers[0], LOBBY): LOBBY.lower()}
        for peer, room in self.rooms.items():
            texts[self.say(peer, room)] = room.lower()
        self.crowd.run_until(lambda: (self.scan(), not any(self.waiting.values()))[1],
                             10, "the probes' echoes")
        return {texts[text]: msg_id for (_, msg_id), (_, text) in self.acked.items()
                if text in texts}

    def load_until(self, frames: int, kill) -> None:
        """Keep every sender's window full, alternating lobby and own room,
        and call `kill` as soon as the senders have received `frames` frames
        in all (before looking at them: the kill lands while the server is
        busy, not after the client has caught up)."""
        deadline = time.monotonic() + LOAD_SECONDS
        while True:
            assert time.monotonic() < deadline, \
                f"only {sum(len(p.frames) for p in self.peers)} of {frames} frames " \
                f"in {LOAD_SECONDS}s"
            for peer in self.peers:
                while self.waiting[peer] < WINDOW:
                    self.say(peer, LOBBY if self.said[peer] % 2 else self.rooms[peer])
            self.crowd.pump(0.05)
            if sum(len(peer.frames) for peer in self.peers) >= frames:
                kill()
                return
            self.scan()

    def drain(self) -> None:
        """After the kill: read what still arrives until every connection ends."""
        self.crowd.run_until(lambda: all(peer.eof for peer in self.peers), DRAIN_SECONDS,
                             "every sender to see the server gone")
        self.scan()


def _on_file(path: str) -> tuple[list, dict]:
    """The file as a kill left it, opened read-only: integrity_check's answer,
    and (room key, id) -> (sender, text) of every message on it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        stored = {(key, msg_id): (sender, text) for key, msg_id, sender, text in
                  conn.execute("SELECT room_key, id, sender, text FROM messages")}
    finally:
        conn.close()
    return integrity, stored


def test_kill_9_under_load_loses_less_than_the_bound_and_never_reuses_an_id(tmp_path):
    path = str(tmp_path / "chatd.db")
    rng = random.Random(SEED)
    kill_points = [rng.randint(*KILL_AFTER) for _ in range(RUNS)]
    ever: dict[tuple[str, int], tuple[str, str]] = {}   # acknowledged in any run
    highest: dict[str, int] = {}                         # per room key, over all runs
    lost_per_kill, jumps, integrity_results = [], [], []
    file_highest = 0          # the highest id on file (any room) after the last kill
    above_file = set()        # first id after a kill minus file_highest
    began = time.monotonic()
    for run in range(RUNS + 1):   # the last start only checks the last kill
        with ServerProcess("--store", path, "--rate-limit", "0") as server, \
                Crowd((server.host, server.port)) as crowd:
            if run > 0:
                server.wait_for_log("did not shut down cleanly")
            senders = Senders(crowd, run, rng)
            first = senders.probe()
            for key, msg_id in first.items():
                # Above every id any client was ever shown in that room, so
                # in particular above every acknowledged id the kill lost.
                assert msg_id > highest.get(key, 0), \
                    f"run {run}: {key} hands out {msg_id}, not above {highest.get(key)}"
                if key in highest:
                    jumps.append(msg_id - highest[key])
                    above_file.add(msg_id - file_highest)
            if run == RUNS:
                assert server.stop() == 0
                server.wait_for_log("closed cleanly")
            else:
                senders.load_until(kill_points[run], server.process.kill)
                assert server.process.wait(10) == -9
                senders.drain()
        reused = ever.keys() & senders.acked.keys()
        assert not reused, f"run {run}: ids acknowledged again: {sorted(reused)[:5]}"
        ever.update(senders.acked)
        for key, msg_id in senders.acked:
            highest[key] = max(highest.get(key, 0), msg_id)
        integrity, stored = _on_file(path)
        integrity_results.append(integrity)
        assert integrity == ["ok"], f"run {run}: integrity_check says {integrity[:5]}"
        # What is on file under an acknowledged id is what was acknowledged.
        changed = {key: (value, stored[key]) for key, value in senders.acked.items()
                   if key in stored and stored[key] != value}
        assert not changed, f"run {run}: file differs from the echoes: {list(changed.items())[:3]}"
        lost = sum(1 for key in senders.acked if key not in stored)
        if run < RUNS:
            lost_per_kill.append(lost)
            file_highest = max(msg_id for _, msg_id in stored)
        else:
            assert lost == 0, f"{lost} acknowledged messages missing after a clean stop"
    took = time.monotonic() - began

    print(f"\nkill -9 x{RUNS} (seed {SEED}) in {took:.1f}s: {len(ever)} messages "
          f"acknowledged; lost per kill median {statistics.median(lost_per_kill):g}, "
          f"max {max(lost_per_kill)} (bound {MAX_UNCOMMITTED}); all {lost_per_kill}; "
          f"first id after a kill is "
          f"{min(jumps)} to {max(jumps)} above the room's highest acknowledged and "
          f"{sorted(above_file)} above the file's highest id (CRASH_ID_JUMP {CRASH_ID_JUMP}); "
          f"integrity_check ok {integrity_results.count(['ok'])}/{len(integrity_results)}")
    assert max(lost_per_kill) < MAX_UNCOMMITTED
