"""The store's file: its schema, its lock, and its opening at start.

The file (schema version SCHEMA_VERSION, `PRAGMA application_id`
APPLICATION_ID so that another program's database is never taken for ours):

    meta(key, value)                   epoch, id_floor, clean_shutdown
    rooms(key, name, last_id, kept)    every room that ever had a message
    messages(room_key, id, room, ts, sender, text)
    accounts(key, name, n, r, p, salt, hash, created)
                                       registered names: scrypt hash, its
                                       parameters and salt (never a password)
    private_messages(low, high, id, ts, sender, recipient, text)
                                       dms between two accounts (keys in order)

`open_file` takes the file's lock, validates and prepares it on the main
thread before the loop runs; after that only the writer thread touches it
(sqlite.py).  `prepare` is also where `chatd account` begins.

Crash safety of ids (chat/1, Epoch: ids never go back within an epoch):
messages are acknowledged before they are committed, so a crash can lose
the last uncommitted ones after clients saw their ids.  A start that finds
`clean_shutdown` unset raises `id_floor` to CRASH_ID_JUMP above the highest
id on file; every room then numbers above the floor.  The jump is safe
because the loop never lets more than CRASH_ID_JUMP messages wait
uncommitted (store/link.py, MAX_UNCOMMITTED).
"""

import fcntl
import os
import secrets
import sqlite3

SCHEMA_VERSION = 1
APPLICATION_ID = 0x63686174  # "chat"
# How far every room's numbering jumps after a crash: more than the
# messages that may have been delivered but not committed.  Generous, since
# a jump costs nothing (ids are 64-bit: 9 * 10**12 crashes to go).
CRASH_ID_JUMP = 1_000_000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL, last_id INTEGER NOT NULL,
                    kept INTEGER NOT NULL);
CREATE TABLE messages (
    room_key TEXT NOT NULL, id INTEGER NOT NULL, room TEXT NOT NULL, ts REAL NOT NULL,
    sender TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (room_key, id)) WITHOUT ROWID;
-- Registered names: key is the casefolded name, and the scrypt parameters are kept
-- with each hash so they can be raised later.
CREATE TABLE accounts (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL, r INTEGER NOT NULL,
    p INTEGER NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL, created REAL NOT NULL);
-- Private messages between two accounts, keyed by the account names in order.
CREATE TABLE private_messages (
    low TEXT NOT NULL, high TEXT NOT NULL, id INTEGER NOT NULL, ts REAL NOT NULL,
    sender TEXT NOT NULL, recipient TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (low, high, id)) WITHOUT ROWID;
"""


class StoreError(Exception):
    """The file cannot be used as chatd's store; chatd refuses to start (exit 78)."""


class Opening:
    """What `open_file` learnt: the epoch, the id floor, and whether the last run
    crashed; `lock`, the descriptor of the file's lock (held until closed)."""

    def __init__(self, epoch: str, id_floor: int, crashed: bool, lock: int):
        self.epoch = epoch
        self.id_floor = id_floor
        self.crashed = crashed
        self.lock = lock


def _lock(path: str) -> int:
    """Hold `<real path>-lock` (flock, exclusive): one chatd serves a store file.  A
    second would number the same rooms on its own and mark a clean shutdown
    under the first's feet.  `chatd account` does not take it (it changes
    accounts beside a running server by design).  StoreError if another
    chatd holds it; the lock goes with the process, whatever its end."""
    # The file's real path: a symlink or another spelling is the same file.
    lock = os.path.realpath(path) + "-lock"
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"{lock}: cannot open: {exc.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreError(f"{path}: another chatd serves this store file (it holds "
                         f"{lock}); one file serves one chatd") from None
    return descriptor


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _complete_schema(conn: sqlite3.Connection) -> None:
    """Bring a schema-1 file written before accounts and retention counts
    (chatd of 30 Nov 2026, before 14:06) up to today's schema 1, inside the
    caller's transaction: the tables added since are made, and each room's
    count of messages on file is counted.  A file that has them is left as
    it is."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(rooms)")}
    if "kept" not in columns:
        conn.execute("ALTER TABLE rooms ADD COLUMN kept INTEGER NOT NULL DEFAULT 0")
        conn.execute("UPDATE rooms SET kept = (SELECT count(*) FROM messages "
                     "WHERE messages.room_key = rooms.key)")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1))


def prepare(path: str) -> sqlite3.Connection:
    """A connection to the store at `path` in WAL mode, inside BEGIN IMMEDIATE (the
    caller commits), the schema created if the file is new; StoreError if the
    file is refused.  `open_file` (the server's start) and `chatd account`
    (also while a server runs: WAL lets both at it) begin here.

    A file that is not a chatd store (another program's database, not
    SQLite at all) or one from a newer chatd is refused without a byte of
    it changed.
    """
    fresh = not os.path.exists(path) or os.path.getsize(path) == 0
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        if not fresh:
            try:
                application_id = conn.execute("PRAGMA application_id").fetchone()[0]
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{path}: not a chatd store ({exc})") from None
            if application_id != APPLICATION_ID:
                raise StoreError(f"{path}: not a chatd store (another program's SQLite file)")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path}: written by a newer chatd (schema {version}; this "
                                 f"one reads up to {SCHEMA_VERSION}); not touched")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        if not fresh:
            _complete_schema(conn)
        if fresh:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("epoch", secrets.token_hex(8)), ("id_floor", "0"), ("clean_shutdown", "1")])
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"{path}: {exc}") from None
    except StoreError:
        conn.close()
        raise
    return conn


def open_file(path: str) -> Opening:
    """Create or validate the store at `path`, mark it in use; raise StoreError if refused.

    Runs on the main thread, before the loop.
    """
    lock = _lock(path)
    try:
        conn = prepare(path)
    except StoreError:
        os.close(lock)
        raise
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        crashed = meta["clean_shutdown"] != "1"
        floor = int(meta["id_floor"])
        if crashed:
            highest = max(conn.execute("SELECT max(last_id) FROM rooms").fetchone()[0] or 0,
                          conn.execute("SELECT max(id) FROM private_messages").fetchone()[0]
                          or 0)
            floor = max(floor, highest) + CRASH_ID_JUMP
            conn.execute("UPDATE meta SET value = ? WHERE key = 'id_floor'", (str(floor),))
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'clean_shutdown'")
        conn.execute("COMMIT")
        return Opening(meta["epoch"], floor, crashed, lock)
    except sqlite3.Error as exc:
        os.close(lock)
        raise StoreError(f"{path}: {exc}") from None
    finally:
        conn.close()
