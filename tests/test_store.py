"""The durable store through a real chatd process and real files: restarts, refused files,
the epoch, retention, and what a kill -9 can cost."""

import hashlib
import resource
import sqlite3
import subprocess
import sys

import pytest

from chatd.store.file import APPLICATION_ID, CRASH_ID_JUMP
from support import REPO, ChatClient, ServerProcess

EXIT_BAD_STORE = 78


def say_all(client: ChatClient, room: str, texts: list[str]) -> list[int]:
    """Say each text in `room`; the ids of their echoes, in order."""
    ids = []
    for text in texts:
        client.send({"type": "say", "room": room, "text": text})
        ids.append(client.next(lambda m: m["type"] == "msg" and m["text"] == text)["id"])
    return ids


def history(client: ChatClient, room: str, **asked) -> list[tuple[int, str]]:
    client.send({"type": "history", "room": room, **asked})
    return [(m["id"], m["text"]) for m in client.next_of("history")["messages"]]


def join(client: ChatClient, room: str) -> None:
    client.send({"type": "join", "room": room})
    client.next(lambda m: m["type"] == "users" and m["room"] == room)


def test_history_ids_and_epoch_survive_a_clean_restart(tmp_path):
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store) as server:
        with ChatClient((server.host, server.port), "alice") as alice:
            epoch = alice.welcome["epoch"]
            say_all(alice, "lobby", ["l1", "l2"])
            join(alice, "dev")
            say_all(alice, "dev", ["d1", "d2", "d3"])
            before = {room: history(alice, room) for room in ("lobby", "dev")}
        assert server.stop() == 0
        server.wait_for_log("closed cleanly")
    with ServerProcess("--store", store) as server:
        assert not any("did not shut down cleanly" in line for line in server.lines)
        with ChatClient((server.host, server.port), "bob") as bob:
            assert bob.welcome["epoch"] == epoch
            join(bob, "DEV")
            assert {room: history(bob, room) for room in ("lobby", "dev")} == before
            assert history(bob, "dev", since=1) == before["dev"][1:]  # exact across it
            assert say_all(bob, "dev", ["d4"]) == [4]  # ids go on
            assert say_all(bob, "lobby", ["l3"]) == [3]


def test_a_memory_store_starts_a_new_epoch_every_time():
    epochs = []
    for _ in range(2):
        with ServerProcess("--store", "memory") as server, \
                ChatClient((server.host, server.port), "alice") as alice:
            epochs.append(alice.welcome["epoch"])
            assert 0 < len(epochs[-1]) <= 64
    assert epochs[0] != epochs[1]


def _foreign_sqlite(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")


def _newer_chatd(path):
    subprocess.run([sys.executable, "-c", "import sqlite3, sys\n"
                    "conn = sqlite3.connect(sys.argv[1])\n"
                    "conn.execute('PRAGMA application_id = 1667785076')\n"
                    "conn.execute('PRAGMA user_version = 99')\n"
                    "conn.execute('CREATE TABLE meta (key TEXT, value TEXT)')\n"
                    "conn.commit()", path], check=True)


@pytest.mark.parametrize("make, complaint", [
    (lambda path: path.write_bytes(b"hello, not a database\n" * 100), "not a chatd store"),
    (lambda path: _foreign_sqlite(str(path)), "another program's SQLite file"),
    (lambda path: _newer_chatd(str(path)), "written by a newer chatd"),
], ids=["text", "foreign-sqlite", "newer-schema"])
def test_a_file_that_is_not_our_store_is_refused_untouched(tmp_path, make, complaint):
    path = tmp_path / "chatd.db"
    make(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = subprocess.run([sys.executable, "-m", "chatd", "--port", "0", "--store", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == EXIT_BAD_STORE, result.stderr
    assert complaint in result.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_retention_keeps_the_newest_messages_of_a_room_on_file(tmp_path):
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store, "--retention", "5", "--history", "3",
                       "--rate-limit", "0") as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        say_all(alice, "lobby", [f"m{i}" for i in range(1, 13)])
        # Older than memory's 3: answered from the file, which keeps the newest 5.
        assert [i for i, _ in history(alice, "lobby", since=0, limit=3)] == [8, 9, 10]
        assert server.stop() == 0
    with sqlite3.connect(store) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM messages ORDER BY id")]
    assert ids == [8, 9, 10, 11, 12]


def test_after_a_kill_ids_jump_past_anything_that_may_have_been_seen(tmp_path):
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store) as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        seen = say_all(alice, "lobby", ["a", "b"])
        server.process.kill()
        server.process.wait(10)
    with ServerProcess("--store", store) as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        server.wait_for_log("did not shut down cleanly")
        [after] = say_all(alice, "lobby", ["c"])
        assert after > max(seen) and after > CRASH_ID_JUMP
        # What was committed before the kill is still there, below the jump.
        assert [i for i, _ in history(alice, "lobby")][-1] == after


def test_a_disk_that_refuses_writes_gets_unavailable_then_recovers_losing_nothing(tmp_path):
    # RLIMIT_FSIZE set on the running server makes every write of its store
    # fail (EFBIG: SQLite's "database or disk is full"; Python ignores
    # SIGXFSZ), like a full disk, without root tricks; raising it again is
    # the disk getting space back.
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store, "--rate-limit", "0") as server, \
            ChatClient((server.host, server.port), "alice") as alice, \
            ChatClient((server.host, server.port), "bob") as bob:
        acknowledged = say_all(alice, "lobby", ["before"])
        soft, hard = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (1, hard))
        refused = 0
        for attempt in range(200):  # the first commit after the limit fails
            alice.send({"type": "say", "text": f"during {attempt}", "ref": attempt})
            answer = alice.next(lambda m: m.get("ref") == attempt)
            if answer["type"] == "error":
                assert answer["code"] == "unavailable"
                refused += 1
                break
            acknowledged.append(answer["id"])
        assert refused, "no say was refused while the disk refused every write"
        server.wait_for_log("store: cannot write")
        # Reads and presence go on meanwhile.
        bob.send({"type": "who", "ref": "w"})
        assert bob.next(lambda m: m.get("ref") == "w")["names"] == ["alice", "bob"]
        assert [i for i, _ in history(bob, "lobby")][-len(acknowledged):] == acknowledged
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (soft, hard))
        server.wait_for_log("store: writing again")
        acknowledged += say_all(alice, "lobby", ["after"])
        assert server.stop() == 0
        assert sum("store: cannot write" in line for line in server.lines) == 1  # once
    with sqlite3.connect(store) as conn:
        stored = [row[0] for row in conn.execute(
            "SELECT id FROM messages WHERE room_key = 'lobby' ORDER BY id")]
    assert stored == acknowledged


def test_after_a_kill_a_quiet_room_keeps_its_history_through_the_jump(tmp_path):
    # Retention counts messages: the ids of a room that jumped after a crash
    # say nothing about how many it has (found by the kill -9 suite: a quiet
    # room's first message after a kill deleted all of its history).
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store, "--retention", "20", "--rate-limit", "0") as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        say_all(alice, "lobby", [f"l{i}" for i in range(30)])
        join(alice, "quiet")
        before = say_all(alice, "quiet", ["q1", "q2", "q3"])
        server.stop()
    with ServerProcess("--store", store, "--retention", "20") as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        join(alice, "quiet")
        server.process.kill()
        server.process.wait(10)
    with ServerProcess("--store", store, "--retention", "20") as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        join(alice, "quiet")
        after = say_all(alice, "quiet", ["q4"])
        assert [i for i, _ in history(alice, "quiet")] == before + after
        assert [i for i, _ in history(alice, "lobby")] == list(range(11, 31))  # 20 kept


def test_a_store_file_from_before_accounts_is_completed_and_served(tmp_path):
    """A schema-1 file as chatd wrote it before accounts and retention counts:
    its history is served, accounts work, retention counts what it has."""
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript(f"""
        PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL,
                            last_id INTEGER NOT NULL);
        CREATE TABLE messages (
            room_key TEXT NOT NULL, id INTEGER NOT NULL, room TEXT NOT NULL,
            ts REAL NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
            PRIMARY KEY (room_key, id)) WITHOUT ROWID;
        INSERT INTO meta VALUES ('epoch', 'e1'), ('id_floor', '0'), ('clean_shutdown', '1');
        INSERT INTO rooms VALUES ('lobby', 'lobby', 2);
        INSERT INTO messages VALUES ('lobby', 1, 'lobby', 1.0, 'ann', 'first'),
                                    ('lobby', 2, 'lobby', 2.0, 'ann', 'second');
    """)
    conn.close()
    with ServerProcess("--store", path, "--retention", "2") as server:
        with ChatClient((server.host, server.port), "bob") as bob:
            assert bob.welcome["epoch"] == "e1"
            bob.send({"type": "history", "room": "lobby", "ref": "h"})
            assert [m["text"] for m in bob.next(lambda m: m.get("ref") == "h")["messages"]] \
                == ["first", "second"]
            bob.send({"type": "register", "password": "correct horse", "ref": "r"})
            assert bob.next(lambda m: m.get("ref") == "r")["type"] == "registered"
            bob.send({"type": "say", "text": "third", "ref": "s"})
            assert bob.next(lambda m: m.get("ref") == "s")["id"] == 3
        assert server.stop() == 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT kept FROM rooms WHERE key = 'lobby'").fetchone() == (2,)
    assert conn.execute("SELECT name FROM accounts").fetchall() == [("bob",)]
    conn.close()


def test_a_second_chatd_on_a_store_file_in_use_is_refused(tmp_path):
    path = str(tmp_path / "chatd.db")
    with ServerProcess("--store", path) as first:
        second = subprocess.run([sys.executable, "-m", "chatd", "--port", "0", "--store",
                                 path], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert second.returncode == 78
        assert "another chatd serves this store file" in second.stderr
        with ChatClient((first.host, first.port), "ann") as ann:  # the first goes on
            ann.send({"type": "say", "text": "still mine", "ref": 1})
            assert ann.next(lambda m: m.get("ref") == 1)["id"] == 1
        assert first.stop() == 0
    with ServerProcess("--store", path) as again:  # its lock went with it
        assert again.stop() == 0


def test_a_store_file_reached_through_a_symlink_is_the_same_file(tmp_path):
    (tmp_path / "a").mkdir()
    real = tmp_path / "a" / "chat.db"
    link = tmp_path / "link.db"
    with ServerProcess("--store", str(real)) as first:
        link.symlink_to(real)
        second = subprocess.run([sys.executable, "-m", "chatd", "--port", "0", "--store",
                                 str(link)], cwd=REPO, capture_output=True, text=True,
                                timeout=30)
        assert second.returncode == 78 and "another chatd serves" in second.stderr
        assert first.stop() == 0
