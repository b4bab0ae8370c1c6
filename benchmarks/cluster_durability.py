"""The cluster's durability window: which acknowledged says a Redis killed under load
keeps, by `appendfsync` policy and message rate (issue 16, CLUSTER.md "Durability").

Each run starts a redis-server with `appendonly yes` and the policy under
test on a unix socket in a temporary directory, and one chatd node joined
to it (`--cluster unix://...`, tests/redis_support.py and tests/support.py:
the tests' own helpers, so the benchmark runs Redis and chatd exactly as
tests/test_cluster_durability.py does).  One client says numbered texts
in one room at a steady rate; each say's echo (the `msg` carrying its
`ref`) is its acknowledgement and is timed as it arrives.  Once `--kill-after`
seconds' worth of says are acknowledged, redis-server gets SIGKILL and is
started again on the same directory (it loads its AOF); the client keeps
saying until its count is sent, and every say is answered (an echo, or
`unavailable` for one Redis never took).  Then the room's stream
(`chatd:log:<room>`) is read from Redis itself, and per run it reports:

  acked    says whose echo arrived before the kill;
  lost     of those, the ones the restarted Redis does not have;
  window   ms between the echo of the last surviving acknowledged say and
           the echo of the last one acknowledged before the kill (0: none lost).

Two kinds of crash (`--crash`):

  process  redis-server gets SIGKILL: the process ends, the machine goes on.
           What Redis wrote to the AOF with write(2) is in the kernel's page
           cache and survives, whatever the policy.
  machine  the same, then each incremental AOF file is cut back to the size
           its last fsync covered, as a power loss would leave it at worst:
           redis-server runs with benchmarks/fsync_log.c preloaded (built
           with `cc` into the run's directory), which notes that size after
           every fsync.  The kernel's own writeback may save more on a real
           machine; no virtual machine is crashed (loopback and unix sockets
           only).

    python -m benchmarks.cluster_durability [--crash process,machine] [--fsync everysec,always]
                                            [--rates 1000,10000] [--runs 5] [--kill-after 1.0]
                                            [--json FILE]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

if not __package__:  # run as `python benchmarks/cluster_durability.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' RedisServer (AOF, SIGKILL, restart on the same directory) and
# ServerProcess (a chatd subprocess and its log): one way to run them.
sys.path.insert(0, os.path.join(REPO, "tests"))

import framing  # noqa: E402
from redis_support import RedisServer  # noqa: E402
from support import ServerProcess  # noqa: E402

ROOM = "durable"
SAYER = "sayer"   # the client's name
CRASHES = ("process", "machine")
POLICIES = ("everysec", "always")
RATES = (1_000, 10_000)
# Seconds the client keeps saying after the kill (the restart and the
# node's reconnect happen within it), and how long answers may take after.
AFTER_KILL_SECONDS = 0.5
ANSWER_TIMEOUT = 10.0


class Sayer:
    """One chat/1 client in room ROOM saying "say <n>" with `ref` n (n = 0, 1, ...)
    at `rate` says per second, `count` in all, from a thread; another thread
    reads every frame and times each answer (time.monotonic(), seconds).

    `echoes` {ref: arrival}, `refused` {ref: error code}, `sent` (says
    written so far); `ended` is set once the server closed the connection.
    Raises ConnectionError if the hello or the join is refused.
    """

    def __init__(self, address: tuple[str, int], name: str, timeout: float = ANSWER_TIMEOUT):
        self.sock = socket.create_connection(address, timeout)
        self.decoder = framing.Decoder(schema=framing.EVENTS)
        self.echoes: dict[int, float] = {}
        self.refused: dict[int, str] = {}
        self.sent = 0
        self.ended = threading.Event()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._pending: list = []
        for request, wanted in (({"type": "hello", "name": name}, "welcome"),
                                ({"type": "join", "room": ROOM, "ref": "join"}, "users")):
            self.sock.sendall(framing.encode(request))
            frame = self._frame(lambda f: f["type"] in (wanted, "error"))
            if frame["type"] != wanted:
                raise ConnectionError(f"{request['type']} refused: {frame}")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer = None

    def _frame(self, wanted) -> dict:
        """The first frame `wanted` accepts, before the reader thread runs."""
        while True:
            while self._pending:
                frame = self._pending.pop(0)
                if wanted(frame):
                    return frame
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self._pending.extend(self.decoder.feed(data))

    def start(self, rate: float, count: int) -> None:
        """Begin saying: `count` says, the n-th due `n / rate` s after now."""
        self._reader.start()
        self._writer = threading.Thread(target=self._say, args=(rate, count), daemon=True)
        self._writer.start()

    def _say(self, rate: float, count: int) -> None:
        began = time.monotonic()
        while self.sent < count and not self._stop.is_set():
            due = min(count, int((time.monotonic() - began) * rate) + 1)
            if due > self.sent:
                # Everything due by now in one write: the rate holds at
                # 10,000/s whatever this thread's wake-ups cost.
                try:
                    self.sock.sendall(b"".join(
                        framing.encode({"type": "say", "room": ROOM, "text": f"say {n}", "ref": n})
                        for n in range(self.sent, due)))
                except OSError:
                    return
                with self._changed:
                    self.sent = due
                    self._changed.notify_all()
            else:  # pacing, not synchronisation: the next say's due time
                self._stop.wait(began + self.sent / rate - time.monotonic())

    def _read(self) -> None:
        for frame in self._pending:  # what came with the join's answer
            self._take(frame, time.monotonic())
        while True:
            try:
                data = self.sock.recv(1 << 18)
            except socket.timeout:  # a quiet server is not a closed one
                if self._stop.is_set():
                    return
                continue
            except OSError:
                data = b""
            arrived = time.monotonic()
            if not data:
                self.ended.set()
                with self._changed:
                    self._changed.notify_all()
                return
            with self._changed:
                for frame in self.decoder.feed(data):
                    self._take(frame, arrived)
                self._changed.notify_all()

    def _take(self, frame: dict, arrived: float) -> None:
        ref = frame.get("ref")
        if type(ref) is not int:
            return
        if frame["type"] == "msg":
            self.echoes[ref] = arrived
        elif frame["type"] == "error":
            self.refused[ref] = frame["code"]

    def wait(self, condition, timeout: float) -> bool:
        """Wait until `condition()` holds (checked as frames arrive); False after `timeout`."""
        with self._changed:
            return self._changed.wait_for(lambda: condition() or self.ended.is_set(),
                                          timeout) and condition()

    def answered(self) -> int:
        return len(self.echoes) + len(self.refused)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        if self._writer is not None:
            self._writer.join(ANSWER_TIMEOUT)


def stored_refs(redis: RedisServer, room: str = ROOM) -> set[int]:
    """The refs of this benchmark's says in `room`'s stream, read from Redis itself.

    An entry is "ev sid tag msgid payload" (chatd/cluster/scripts/common.lua,
    `emit`); msgid 0 is presence.  The say's text "say <n>" gives n.
    """
    refs = set()
    for _entry_id, fields in redis.command("XRANGE", "chatd:log:" + room, "-", "+"):
        _ev, _sid, _tag, msgid, payload = fields[1].decode().split(" ", 4)
        if msgid != "0":
            refs.add(int(json.loads(payload)["text"].removeprefix("say ")))
    return refs


class Outcome:
    """One kill under load: what the client saw (`echoes`, `refused`, `sent`,
    the `killed_at` instant on the same clock as the echoes, whether the
    server `closed` the connection) and what Redis kept (`stored` refs).
    `acked` are the says echoed before the kill; `lost` those of them Redis
    no longer has; `window_ms` per the module docstring."""

    def __init__(self, sayer: Sayer, killed_at: float, stored: set[int]):
        self.sent = sayer.sent
        self.echoes = dict(sayer.echoes)
        self.refused = dict(sayer.refused)
        self.killed_at = killed_at
        self.closed = sayer.ended.is_set()
        self.stored = stored
        self.acked = sorted(ref for ref, at in self.echoes.items() if at < killed_at)
        self.lost = [ref for ref in self.acked if ref not in stored]

    @property
    def unanswered(self) -> int:
        return self.sent - len(self.echoes) - len(self.refused)

    @property
    def window_ms(self) -> float:
        if not self.lost:
            return 0.0
        last = max(self.echoes[ref] for ref in self.acked)
        kept = [self.echoes[ref] for ref in self.acked if ref in self.stored]
        # Nothing kept at all: the window reaches back to the first echo.
        since = max(kept) if kept else min(self.echoes[ref] for ref in self.acked)
        return (last - since) * 1000

    def row(self) -> dict:
        return {"sent": self.sent, "acked": len(self.acked), "lost": len(self.lost),
                "window_ms": self.window_ms, "echoed": len(self.echoes),
                "refused": len(self.refused), "unanswered": self.unanswered,
                "closed": self.closed,
                "echoed_not_stored": sum(1 for ref in self.echoes if ref not in self.stored),
                "refused_but_stored": sum(1 for ref in self.refused if ref in self.stored)}


def kill_under_load(redis: RedisServer, address: tuple[str, int], rate: float, count: int,
                    kill_after_acks: int, after_kill=None) -> Outcome:
    """Say `count` says at `rate`/s as SAYER; once `kill_after_acks` are echoed,
    SIGKILL redis-server, call `after_kill()` if given (with Redis down), and
    start Redis again on its directory; wait until every say sent is answered
    (or ANSWER_TIMEOUT passes: `Outcome.unanswered` tells), then read what
    Redis kept.  Raises TimeoutError when the kill point is not reached within
    ANSWER_TIMEOUT plus the time the says take."""
    sayer = Sayer(address, SAYER)
    try:
        sayer.start(rate, count)
        if not sayer.wait(lambda: len(sayer.echoes) >= kill_after_acks,
                          ANSWER_TIMEOUT + count / rate):
            raise TimeoutError(f"only {len(sayer.echoes)} of {kill_after_acks} says echoed "
                               "before the kill")
        killed_at = time.monotonic()
        redis.stop()
        if after_kill is not None:
            after_kill()
        redis.start()
        sayer.wait(lambda: sayer.sent == count and sayer.answered() == count,
                   ANSWER_TIMEOUT + count / rate)
        return Outcome(sayer, killed_at, stored_refs(redis))
    finally:
        sayer.close()


def build_fsync_log(directory: str) -> str:
    """benchmarks/fsync_log.c built into `directory`; the shared object's path."""
    shared = os.path.join(directory, "fsync_log.so")
    try:
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shared,
                        os.path.join(REPO, "benchmarks", "fsync_log.c"), "-ldl"],
                       check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("--crash machine needs a C compiler (cc) for benchmarks/fsync_log.c")
    except subprocess.CalledProcessError as error:
        raise SystemExit("cc could not build benchmarks/fsync_log.c:\n" + error.stderr)
    return shared


def lose_page_cache(directory: str, fsync_log: str) -> int:
    """A power loss, at worst, once redis-server is dead: every incremental AOF
    file in `directory` cut back to the size its last fsync covered (0 if it
    never had one), per the shim's log.  Returns the bytes dropped."""
    synced = {}
    if os.path.exists(fsync_log):
        with open(fsync_log) as log:
            for line in log:
                path, size = line.rstrip("\n").rsplit(" ", 1)
                synced[path] = int(size)
    dropped = 0
    aof_directory = os.path.join(directory, "appendonlydir")
    for name in os.listdir(aof_directory):
        if name.endswith(".incr.aof"):
            path = os.path.realpath(os.path.join(aof_directory, name))
            keep, size = synced.get(path, 0), os.path.getsize(path)
            if size > keep:
                os.truncate(path, keep)
                dropped += size - keep
    return dropped


def run_once(crash: str, policy: str, rate: float, kill_after: float) -> dict:
    """A fresh Redis (AOF, `policy`) and node; one kill under load (`crash`:
    process or machine); the Outcome's row."""
    kill_after_acks = max(1, int(rate * kill_after))
    count = kill_after_acks + int(rate * AFTER_KILL_SECONDS)
    with tempfile.TemporaryDirectory(prefix="chatd-dur-") as directory:
        env, after_kill, dropped = None, None, [0]
        if crash == "machine":
            fsync_log = os.path.join(directory, "fsync.log")
            env = {"LD_PRELOAD": build_fsync_log(directory), "FSYNC_LOG": fsync_log}

            def after_kill():
                dropped[0] = lose_page_cache(directory, fsync_log)
        redis = RedisServer(directory, appendonly=True, appendfsync=policy, env=env)
        try:
            # --history: the room's stream (2 x history entries) holds every say.
            with ServerProcess("--cluster", redis.url, "--store", "memory", "--rate-limit", "0",
                               "--history", str(count + 100)) as node:
                node.wait_for_log("cluster: connected")
                outcome = kill_under_load(redis, (node.host, node.port), rate, count,
                                          kill_after_acks, after_kill=after_kill)
                fenced = any("lost its lease" in line for line in node.lines)
        finally:
            redis.stop()
    return {"crash": crash, "fsync": policy, "rate": rate, **outcome.row(),
            "dropped_bytes": dropped[0], "fenced": fenced}


def format_report(runs: list[dict]) -> str:
    lines = ["per run:",
             f"{'crash':<8} {'fsync':<9} {'rate/s':>7} {'sent':>6} {'acked':>6} {'lost':>5} "
             f"{'window ms':>9} {'dropped B':>9} {'refused':>7} {'unanswered':>10} "
             f"{'closed':>6} {'fenced':>6}"]
    for r in runs:
        lines.append(f"{r['crash']:<8} {r['fsync']:<9} {r['rate']:>7,.0f} {r['sent']:>6} "
                     f"{r['acked']:>6} {r['lost']:>5} {r['window_ms']:>9.1f} "
                     f"{r['dropped_bytes']:>9} {r['refused']:>7} {r['unanswered']:>10} "
                     f"{str(r['closed']):>6} {str(r['fenced']):>6}")
    lines += ["", "summary:",
              f"{'crash':<8} {'fsync':<9} {'rate/s':>7} {'runs':>4} {'acked':>7} {'lost':>5} "
              f"{'window ms median':>16} {'max':>7}"]
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["crash"], r["fsync"], r["rate"]), []).append(r)
    for (crash, policy, rate), group in groups.items():
        windows = [r["window_ms"] for r in group]
        lines.append(f"{crash:<8} {policy:<9} {rate:>7,.0f} {len(group):>4} "
                     f"{sum(r['acked'] for r in group):>7} {sum(r['lost'] for r in group):>5} "
                     f"{statistics.median(windows):>16.1f} {max(windows):>7.1f}")
    return "\n".join(lines)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_durability", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crash", default=",".join(CRASHES),
                        help="comma-separated: process, machine (default: both)")
    parser.add_argument("--fsync", default=",".join(POLICIES),
                        help="comma-separated appendfsync policies (default: everysec,always)")
    parser.add_argument("--rates", default=",".join(map(str, RATES)),
                        help="comma-separated says per second (default: 1000,10000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per policy and rate")
    parser.add_argument("--kill-after", type=float, default=1.0,
                        help="seconds' worth of acknowledged says before the kill")
    parser.add_argument("--json", metavar="FILE", help="write the runs as JSON")
    arguments = parser.parse_args(argv)
    arguments.crash = arguments.crash.split(",")
    if not set(arguments.crash) <= set(CRASHES):
        parser.error("--crash takes process and machine")
    arguments.fsync = arguments.fsync.split(",")
    if not set(arguments.fsync) <= {"always", "everysec", "no"}:
        parser.error("--fsync takes always, everysec and no")
    try:
        arguments.rates = [float(rate) for rate in arguments.rates.split(",")]
    except ValueError:
        parser.error("--rates takes numbers")
    if min(arguments.rates) <= 0 or arguments.runs < 1 or not 0 < arguments.kill_after <= 10:
        parser.error("rates and runs must be positive, --kill-after within (0, 10] s")
    return arguments


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    runs = []
    for crash in arguments.crash:
        for policy in arguments.fsync:
            for rate in arguments.rates:
                for index in range(arguments.runs):
                    print(f"{crash} crash, {policy} {rate:,.0f}/s run {index + 1}/"
                          f"{arguments.runs} ...", file=sys.stderr, flush=True)
                    runs.append(run_once(crash, policy, rate, arguments.kill_after))
    print(format_report(runs))
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump({"command": "python -m benchmarks.cluster_durability " + " ".join(
                           sys.argv[1:] if argv is None else argv),
                       "runs": runs}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
