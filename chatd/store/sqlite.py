"""The durable store's writer: one SQLite file, written by one worker thread with
group commit.

The file, its schema and its opening are file.py's.  After the opening only
the worker thread touches the file, through its own connection (WAL,
synchronous=FULL): `write_batch` commits one loop turn's messages in one
transaction, then answers the loads queued with them, so a load sees every
message handed over before it.  A failed commit keeps its rows and is
retried with the next batch: nothing acknowledged is dropped while the
process lives.
"""

import logging
import os
import sqlite3

from framing import encode_payload

from ..core import Account, Credential, StorePrivate
from .file import connect

log = logging.getLogger("chatd")

# Rows a batch deletes per room for retention at most: no huge statement.
DELETE_CHUNK = 1_000


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
            self._conn = connect(self.path)
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
