"""The durable store: one SQLite file, written by one worker thread with group commit.

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

`open_file` validates and prepares the file on the main thread before the
loop runs.  After that only the worker thread touches it, through its own
connection (WAL, synchronous=FULL): `write_batch` commits one loop turn's
messages in one transaction, then answers the loads queued with them, so a
load sees every message handed over before it.  A failed commit keeps its
rows and is retried with the next batch: nothing acknowledged is dropped
while the process lives.

Crash safety of ids (chat/1, Epoch: ids never go back within an epoch):
messages are acknowledged before they are committed, so a crash can lose
the last uncommitted ones after clients saw their ids.  A start that finds
`clean_shutdown` unset raises `id_floor` to CRASH_ID_JUMP above the highest
id on file; every room then numbers above the floor.  The jump is safe
because the loop never lets more than CRASH_ID_JUMP messages wait
uncommitted (store/link.py, MAX_UNCOMMITTED).
"""

import fcntl
import logging
import os
import secrets
import sqlite3

from framing import encode_payload

from ..core import Account, Credential, StorePrivate

log = logging.getLogger("chatd")

SCHEMA_VERSION = 1
APPLICATION_ID = 0x63686174  # "chat"
# How far every room's numbering jumps after a crash: more than the
# messages that may have been delivered but not committed.  Generous, since
# a jump costs nothing (ids are 64-bit: 9 * 10**12 crashes to go).
CRASH_ID_JUMP = 1_000_000
# Rows a batch deletes per room for retention at most: no huge statement.
DELETE_CHUNK = 1_000

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
    """Hold `path`-lock (flock, exclusive): one chatd serves a store file.  A
    second would number the same rooms on its own and mark a clean shutdown
    under the first's feet.  `chatd account` does not take it (it changes
    accounts beside a running server by design).  StoreError if another
    chatd holds it; the lock goes with the process, whatever its end."""
    try:
        descriptor = os.open(path + "-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"{path}-lock: cannot open: {exc.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreError(f"{path}: another chatd serves this store file (it holds "
                         f"{path}-lock); one file serves one chatd") from None
    return descriptor


def _connect(path: str) -> sqlite3.Connection:
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
        conn = _connect(path)
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


def _payload(room: str, msg_id: int, ts: float, sender: str, text: str) -> bytes:
    """The `msg` payload as the core encoded it when it was said (same member order)."""
    return encode_payload({"type": "msg", "room": room, "from": sender, "text": text,
                           "id": msg_id, "ts": ts})


class Writer:
    """The worker thread's side of the store: its connection and what is not yet committed.

    Every method runs on the worker thread only.  `unstored` holds the rows
    of failed commits (StoreMessage effects), retried first by the next batch.
    """

    def __init__(self, path: str, id_floor: int, retention: int, history_size: int,
                 lock: int | None = None):
        self.path = path
        self.lock = lock  # the file's lock (open_file), released by close()
        self.id_floor = id_floor
        self.retention = retention
        self.history_size = history_size
        self.unstored: list = []
        self.unstored_accounts: list = []  # StoreAccount effects not yet committed
        self._conn: sqlite3.Connection | None = None
        self._data_version = None  # the file's as of the last load_accounts

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self.path)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
        return self._conn

    def write(self, rows: list, accounts: list = ()) -> tuple[int, int, str | None]:
        """Commit `rows` and `accounts` (StoreAccount effects), and any earlier
        unstored ones, in one transaction.

        Returns (rows committed, their text's bytes, None), or (0, 0, the
        error) with every row and account kept for the next try.
        """
        rows = self.unstored + rows if self.unstored else rows
        accounts = self.unstored_accounts + list(accounts)
        if not rows and not accounts:
            return 0, 0, None
        last: dict[str, tuple[str, int]] = {}
        added: dict[str, int] = {}
        privates = [row for row in rows if type(row) is StorePrivate]
        for row in rows:
            if type(row) is StorePrivate:
                continue
            last[row.room_key] = (row.room, row.id)
            added[row.room_key] = added.get(row.room_key, 0) + 1
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(a.key, a.name, a.credential.n, a.credential.r, a.credential.p,
                  a.credential.salt, a.credential.hash, a.created) for a in accounts])
            conn.executemany(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                [(r.room_key, r.id, r.room, r.ts, r.sender, r.text) for r in rows
                 if type(r) is not StorePrivate])
            conn.executemany(
                "INSERT OR IGNORE INTO private_messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.low, r.high, r.id, r.ts, r.sender, r.recipient, r.text)
                 for r in privates])
            conn.executemany(
                "INSERT INTO rooms VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "last_id = max(last_id, excluded.last_id), kept = kept + excluded.kept",
                [(key, name, msg_id, added[key]) for key, (name, msg_id) in last.items()])
            self._trim(conn, list(last))
            self._trim_pairs(conn, {(row.low, row.high) for row in privates})
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self.unstored = rows
            self.unstored_accounts = accounts
            return 0, 0, f"{type(exc).__name__}: {exc}"
        self.unstored = []
        self.unstored_accounts = []
        return len(rows), sum(len(row.text) for row in rows), None

    def _trim(self, conn: sqlite3.Connection, keys: list[str]) -> None:
        """Delete the oldest messages of rooms `keys` beyond `retention`, by count.

        By count, not by id: after a crash's jump, ids say nothing about how
        many messages a room has (a quiet room would lose all of its own).
        At most DELETE_CHUNK rows per room per batch; a backlog shrinks over
        the following batches.
        """
        for key in keys:
            kept = conn.execute("SELECT kept FROM rooms WHERE key = ?", (key,)).fetchone()[0]
            excess = min(kept - self.retention, DELETE_CHUNK)
            if excess > 0:
                deleted = conn.execute(
                    "DELETE FROM messages WHERE room_key = ? AND id IN (SELECT id FROM messages "
                    "WHERE room_key = ? ORDER BY id LIMIT ?)", (key, key, excess)).rowcount
                conn.execute("UPDATE rooms SET kept = kept - ? WHERE key = ?", (deleted, key))

    def _trim_pairs(self, conn: sqlite3.Connection, pairs: set) -> None:
        """As `_trim`, for private conversations: beyond `retention` messages per pair
        of accounts the oldest go, at most DELETE_CHUNK per batch.

        Counted, not inferred from ids (a crash's jump leaves a span of ids
        far wider than the messages kept); the count is skipped while the
        pair's span of ids fits the retention, which it does until then.
        """
        for low, high in pairs:
            oldest = conn.execute("SELECT min(id) FROM private_messages WHERE low = ? AND "
                                  "high = ?", (low, high)).fetchone()[0]
            newest = conn.execute("SELECT max(id) FROM private_messages WHERE low = ? AND "
                                  "high = ?", (low, high)).fetchone()[0]
            if newest - oldest < self.retention:
                continue
            cut = conn.execute("SELECT id FROM private_messages WHERE low = ? AND high = ? "
                               "ORDER BY id DESC LIMIT 1 OFFSET ?",
                               (low, high, self.retention)).fetchone()
            if cut is not None:
                conn.execute("DELETE FROM private_messages WHERE low = ? AND high = ? AND id "
                             "IN (SELECT id FROM private_messages WHERE low = ? AND high = ? "
                             "AND id <= ? ORDER BY id LIMIT ?)",
                             (low, high, low, high, cut[0], DELETE_CHUNK))

    def _rollback(self) -> None:
        try:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._conn.close()
            self._conn = None  # a fresh connection next time
            self._data_version = None  # its data_version is another count: read again

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        return self._connection().execute(sql, args).fetchall()

    def _unstored_of(self, key: str) -> list[tuple]:
        return [(r.id, r.room, r.ts, r.sender, r.text) for r in self.unstored
                if type(r) is not StorePrivate and r.room_key == key]

    def load_room(self, key: str) -> tuple[int, list[bytes]]:
        """Room `key`'s next id and its newest payloads with consecutive ids up to it."""
        found = self._rows("SELECT last_id FROM rooms WHERE key = ?", (key,))
        newest = self._rows("SELECT id, room, ts, sender, text FROM messages WHERE room_key = ? "
                            "ORDER BY id DESC LIMIT ?", (key, self.history_size))
        newest.reverse()
        rows = sorted(set(newest) | set(self._unstored_of(key)))[-self.history_size:]
        last_id = max([found[0][0] if found else 0] + [row[0] for row in rows])
        next_id = max(last_id, self.id_floor) + 1
        run = []
        for row in reversed(rows):  # the consecutive run that ends at next_id - 1
            if row[0] != next_id - 1 - len(run):
                break
            run.append(row)
        return next_id, [_payload(room, msg_id, ts, sender, text)
                         for msg_id, room, ts, sender, text in reversed(run)]

    def load_accounts(self) -> dict:
        """Every account on file: casefolded name -> Account (at start, and again
        when `chatd account` changed the file)."""
        # Before the rows: a commit in between is read now and again later.
        self._data_version = self._rows("PRAGMA data_version", ())[0][0]
        return {key: Account(name, Credential(n, r, p, bytes(salt), bytes(hashed)), created)
                for key, name, n, r, p, salt, hashed, created
                in self._rows("SELECT key, name, n, r, p, salt, hash, created FROM accounts",
                              ())}

    def accounts_if_changed(self) -> dict | None:
        """`load_accounts()` if another connection (the operator's `chatd account`)
        committed to the file since the last read, else None: SQLite's
        `PRAGMA data_version` changes only for other connections' commits."""
        if self._rows("PRAGMA data_version", ())[0][0] == self._data_version:
            return None
        return self.load_accounts()

    def load_pairs(self) -> list[tuple[str, str, int]]:
        """Every pair of accounts with private messages on file: (low, high, last id),
        least recently written first (read once, at start)."""
        return self._rows("SELECT low, high, max(id) FROM private_messages "
                          "GROUP BY low, high ORDER BY max(ts)", ())

    def load_private(self, low: str, high: str, since: int | None,
                     limit: int) -> list[bytes]:
        """`history` {with} of the pair of accounts (low, high), as `load_history`."""
        if since is None:
            rows = self._rows("SELECT id, ts, sender, recipient, text FROM private_messages "
                              "WHERE low = ? AND high = ? ORDER BY id DESC LIMIT ?",
                              (low, high, limit))
        else:
            rows = self._rows("SELECT id, ts, sender, recipient, text FROM private_messages "
                              "WHERE low = ? AND high = ? AND id > ? ORDER BY id LIMIT ?",
                              (low, high, since, limit))
        rows = sorted(set(rows) | {(r.id, r.ts, r.sender, r.recipient, r.text)
                                   for r in self.unstored if type(r) is StorePrivate
                                   and (r.low, r.high) == (low, high)
                                   and (since is None or r.id > since)})
        rows = rows[-limit:] if since is None else rows[:limit]
        # Member order as the core encodes a dm's msg.
        return [encode_payload({"type": "msg", "to": recipient, "from": sender, "text": text,
                                "id": msg_id, "ts": ts})
                for msg_id, ts, sender, recipient, text in rows]

    def load_history(self, key: str, since: int | None, limit: int) -> list[bytes]:
        """`history` of room `key` from the file: the first `limit` after `since`,
        or the newest `limit`, oldest first."""
        if since is None:
            rows = self._rows("SELECT id, room, ts, sender, text FROM messages "
                              "WHERE room_key = ? ORDER BY id DESC LIMIT ?", (key, limit))
        else:
            rows = self._rows("SELECT id, room, ts, sender, text FROM messages "
                              "WHERE room_key = ? AND id > ? ORDER BY id LIMIT ?",
                              (key, since, limit))
        rows = sorted(set(rows) | {row for row in self._unstored_of(key)
                                   if since is None or row[0] > since})
        rows = rows[-limit:] if since is None else rows[:limit]
        return [_payload(room, msg_id, ts, sender, text)
                for msg_id, room, ts, sender, text in rows]

    def close(self) -> bool:
        """Commit what is left, checkpoint the WAL into the file, mark a clean shutdown.

        False (and the flag left unset, so the next start jumps ids) if the
        last rows cannot be committed.
        """
        try:
            if self.write([])[2] is not None:
                return False
            try:
                conn = self._connection()
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("UPDATE meta SET value = '1' WHERE key = 'clean_shutdown'")
                conn.close()
            except sqlite3.Error as exc:
                log.error("store: clean shutdown failed: %s", exc)
                return False
            self._conn = None
            return True
        finally:
            if self.lock is not None:
                os.close(self.lock)
                self.lock = None
