"""chatd's start-up on a big store: seconds to listening and RSS, with N messages on file.

Builds a store file of `--messages` messages spread evenly over `--rooms`
rooms (`lobby` among them), then starts `python -m chatd --store FILE
--port 0` `--starts` times and measures, each time: seconds from the
process's start to its "listening on" log line, its RSS once listening
(VmRSS; and VmHWM, the peak so far), and the first requests of a client
(hello -> welcome, join of a room on file -> users, history of its
newest 1,000 messages -> the first page).  A start with `--store memory` is the reference: what
the interpreter and chatd cost without a file.  Prints a table and the
issue's targets (ready in under 1 s, under 50 MiB).

    python -m benchmarks.store_startup [--messages 1000000] [--rooms 1000] [--starts 3]
                                       [--text-size 64] [--json FILE]

The file is made the way chatd makes it (`chatd.store.file.open_file`),
then the rows go in with one transaction, as if a chatd had written them
and shut down cleanly.  The page cache is warm (the file was just written).
"""

import argparse
import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

if not __package__:  # run as `python benchmarks/store_startup.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import framing  # noqa: E402
from chatd.store.file import open_file  # noqa: E402
from framing import LOBBY  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The targets for 1,000,000 messages in 1,000 rooms.
TARGET_SECONDS = 1.0
TARGET_RSS_MIB = 50.0
# How long a start may take before the benchmark gives up on it.
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 10.0
ROWS_PER_CHUNK = 50_000
_LISTENING = re.compile(rb"listening on (\S+):(\d+)\r?\n")


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.store_startup", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages on file")
    parser.add_argument("--rooms", type=int, default=1_000,
                        help="rooms they are spread over (lobby included)")
    parser.add_argument("--text-size", type=int, default=64, help="characters of text each")
    parser.add_argument("--starts", type=int, default=3, help="starts on the file")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    arguments = parser.parse_args(argv)
    if min(arguments.messages, arguments.rooms, arguments.text_size, arguments.starts) < 1:
        parser.error("counts and sizes must be positive")
    return arguments


def room_names(rooms: int) -> list[str]:
    return [LOBBY] + [f"room{index:04d}" for index in range(1, rooms)]


def build(path: str, messages: int, rooms: int, text_size: int) -> float:
    """Write the store file; return the seconds it took."""
    began = time.monotonic()
    # The schema, application id and meta rows, as chatd makes them; its lock
    # let go at once (the chatd started on the file takes it).
    os.close(open_file(path).lock)
    names = room_names(rooms)
    per_room, extra = divmod(messages, rooms)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    ts = time.time() - messages * 0.001  # one message a millisecond, ending now

    def rows():
        # In primary-key order (room key, id): each insert appends to the B-tree.
        number = 0
        for index, name in enumerate(names):
            for msg_id in range(1, per_room + (index < extra) + 1):
                number += 1
                head = f"message {msg_id} in {name}: "
                yield (name.casefold(), msg_id, name, round(ts + number * 0.001, 3),
                       f"user{number % 97}", (head + "x" * text_size)[:text_size])

    produced = rows()
    while True:
        chunk = [row for _, row in zip(range(ROWS_PER_CHUNK), produced)]
        if not chunk:
            break
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", chunk)
    # Each room's last id and the count it keeps on file (ids 1..n: the same).
    conn.executemany("INSERT INTO rooms VALUES (?, ?, ?, ?)",
                     [(name.casefold(), name, per_room + (index < extra),
                       per_room + (index < extra))
                      for index, name in enumerate(names) if per_room + (index < extra)])
    # As after a clean shutdown: the next start does not jump ids.
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'clean_shutdown'")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - began


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


class Probe:
    """A chat/1 client: one request at a time, each answered by the frame with its ref."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=REQUEST_TIMEOUT)
        self.decoder = framing.Decoder()
        self.ref = 0

    def ask(self, message: dict) -> tuple[float, dict]:
        """Send `message`; return (seconds to its answer, the answer)."""
        self.ref += 1
        began = time.monotonic()
        self.sock.sendall(framing.encode({**message, "ref": self.ref}))
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError(f"chatd closed the connection after {message['type']}")
            for answer in self.decoder.feed(data):
                if isinstance(answer, Exception):
                    raise RuntimeError(f"bad frame from chatd: {answer}")
                if answer.get("ref") == self.ref:
                    if answer["type"] == "error":
                        raise RuntimeError(f"{message['type']}: {answer}")
                    return time.monotonic() - began, answer

    def close(self) -> None:
        self.sock.close()


def start_once(store: str, room: str) -> dict:
    """Start chatd on `store`, measure it up to listening and its first requests, stop it."""
    command = [sys.executable, "-m", "chatd", "--store", store, "--host", "127.0.0.1",
               "--port", "0", "--log-level", "info"]
    began = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        address, said = wait_listening(process, began)
        ready = time.monotonic() - began
        rss, peak = status_kib(process.pid, "VmRSS"), status_kib(process.pid, "VmHWM")
        probe = Probe(address)
        try:
            welcome_s, _ = probe.ask({"type": "hello", "name": "probe"})
            join_s, _ = probe.ask({"type": "join", "room": room})
            history_s, history = probe.ask({"type": "history", "room": room, "limit": 1000})
        finally:
            probe.close()
        rss_after = status_kib(process.pid, "VmRSS")
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
        log = said + rest.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"chatd exited with {process.returncode}: {log[-500:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {"store": "memory" if store == "memory" else "file", "ready_s": ready,
            "rss_mib": rss / 1024, "peak_rss_mib": peak / 1024,
            "rss_after_requests_mib": rss_after / 1024, "welcome_ms": welcome_s * 1000,
            "join_ms": join_s * 1000, "history_ms": history_s * 1000,
            "history_messages": len(history.get("messages", []))}


def wait_listening(process, began: float) -> tuple[tuple[str, int], str]:
    """Read chatd's stderr up to "listening on HOST:PORT"; return the address and the log."""
    fd = process.stderr.fileno()
    log = b""
    while (found := _LISTENING.search(log)) is None:
        remaining = began + START_TIMEOUT - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"chatd did not listen within {START_TIMEOUT:g} s")
        if select.select([fd], [], [], remaining)[0]:
            data = os.read(fd, 65536)
            if not data:
                raise RuntimeError(f"chatd exited before listening: {log.decode()[-500:]}")
            log += data
    return (found.group(1).decode(), int(found.group(2))), log.decode(errors="replace")


def format_report(report: dict) -> str:
    settings = report["settings"]
    lines = [
        f"store file: {settings['messages']:,} messages in {settings['rooms']:,} rooms, "
        f"{settings['text_size']} characters of text each: {report['file_mib']:,.1f} MiB "
        f"({report['file_bytes'] / settings['messages']:,.0f} bytes a message), built in "
        f"{report['build_s']:.1f} s",
        "",
    ]
    header = ("start", "store", "ready s", "RSS MiB", "peak RSS MiB", "RSS after MiB",
              "welcome ms", "join ms", "history ms")
    rows = [header]
    for index, start in enumerate(report["starts"], 1):
        rows.append((str(index) if start["store"] == "file" else "-", start["store"],
                     f"{start['ready_s']:.3f}", f"{start['rss_mib']:.1f}",
                     f"{start['peak_rss_mib']:.1f}", f"{start['rss_after_requests_mib']:.1f}",
                     f"{start['welcome_ms']:.1f}", f"{start['join_ms']:.1f}",
                     f"{start['history_ms']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)))
    on_file = [start for start in report["starts"] if start["store"] == "file"]
    slowest = max(start["ready_s"] for start in on_file)
    biggest = max(start["rss_mib"] for start in on_file)
    lines += [
        "",
        f"ready: from the process's start to its \"listening on\" line; RSS: VmRSS once "
        f"listening (peak: VmHWM by then; after: once the requests were answered). "
        f"Requests: hello -> welcome, join of {report['room']} (on file, not yet loaded) "
        f"-> users, history of its newest 1,000 -> the first history page "
        f"({on_file[0]['history_messages']:,} messages; max_frame cuts the rest).",
        f"Targets: ready in under {TARGET_SECONDS:g} s: "
        f"{'met' if slowest < TARGET_SECONDS else 'NOT met'} (slowest {slowest:.3f} s); "
        f"under {TARGET_RSS_MIB:g} MiB once listening: "
        f"{'met' if biggest < TARGET_RSS_MIB else 'NOT met'} (largest {biggest:.1f} MiB)"
        + ("" if (settings["messages"], settings["rooms"]) == (1_000_000, 1_000) else
           " -- the targets are for 1,000,000 messages in 1,000 rooms") + ".",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="chatd-startup-") as directory:
        path = os.path.join(directory, "chatd.db")
        print(f"building {arguments.messages:,} messages in {arguments.rooms:,} rooms ...",
              file=sys.stderr, flush=True)
        build_s = build(path, arguments.messages, arguments.rooms, arguments.text_size)
        file_bytes = os.path.getsize(path)
        names = room_names(arguments.rooms)
        room = names[len(names) // 2] if len(names) > 1 else LOBBY
        starts = []
        for _ in range(arguments.starts):
            starts.append(start_once(path, room))
        starts.append(start_once("memory", room))
    report = {"command": "python -m benchmarks.store_startup " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "settings": {"messages": arguments.messages, "rooms": arguments.rooms,
                           "text_size": arguments.text_size},
              "build_s": build_s, "file_bytes": file_bytes, "file_mib": file_bytes / 2**20,
              "room": room, "starts": starts,
              "targets": {"ready_s": TARGET_SECONDS, "rss_mib": TARGET_RSS_MIB}}
    print(format_report(report))
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(report, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
