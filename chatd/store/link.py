"""The loop's side of the durable store: one batch per loop turn, completions back to the core.

Store effects (`StoreMessage`, `LoadRoom`, `LoadHistory`) are gathered as
the core produces them; at the end of the turn (a ready callback, so after
every read of the turn) they go to the store's worker thread as one job:
commit the messages in one transaction, then answer the loads.  While a job
is with the worker, what comes meanwhile waits and goes as the next job
once it completes (group commit: commits per second are bounded by the
disk, and a batch grows with the load).  The job's result comes back
through the loop and turns into completions for the core.  The loop never
waits on the disk.

While the disk fails (full, read-only, I/O error) the link says so once per
episode, tells the core to accept no messages (`StoreWritable(False)`:
`say` and `dm` get `unavailable`), retries every RETRY_SECONDS, and tells
the core again once a commit succeeds.

Every ACCOUNTS_POLL_SECONDS a job also asks the file whether another
process (the operator's `chatd account`) committed to it; if so it reads
the accounts table again, after that job's own commits, and the core gets
`AccountsLoaded` with it (the account changes still gathered here laid
over it: they are newer), so an account added, changed or deleted while
the server runs takes effect within about a second.  It does the same while more than
MAX_UNCOMMITTED messages wait for their commit, which bounds what a crash
can lose and so the id jump after one (sqlite.CRASH_ID_JUMP).  Long before
that, a disk slower than the load makes the link `congested`: the chat
protocol then stops reading from whoever sends, until the commits catch up.
"""

import logging
import sqlite3

from ..core import (Account, AccountsLoaded, HistoryLoaded, LoadHistory, LoadPrivate,
                    LoadRoom, RoomLoaded, StoreAccount, StoreWritable)
from ..worker import Worker
from .file import CRASH_ID_JUMP
from .sqlite import Writer

log = logging.getLogger("chatd")

# Messages acknowledged but not yet committed, at most; half the crash jump.
# Far above where senders are paused: each may still add one read's worth
# (up to about 3,000 small messages) before it is paused.
MAX_UNCOMMITTED = CRASH_ID_JUMP // 2
# Above either mark the senders are paused (their sockets not read) until
# the commits catch up to below the low marks: the disk's pace reaches the
# clients as TCP backpressure, and memory stays bounded.
HIGH_ROWS, LOW_ROWS = 1_250, 300
HIGH_BYTES, LOW_BYTES = 4 << 20, 1 << 20
# Bytes a row costs beyond its text, for that account.
ROW_OVERHEAD = 200
# A batch that waits longer than this for its commit is logged and counted.
SLOW_SECONDS = 2.0
# Seconds between retries while the disk fails.
RETRY_SECONDS = 0.5
# Seconds between looks at whether `chatd account` changed the file (one
# PRAGMA when it did not).
ACCOUNTS_POLL_SECONDS = 1.0


class StoreLink:
    """Batches a turn's store effects to the worker; hands its answers to `complete`.

    `complete(completion)` is the chat service's: it runs the core on it and
    carries out the effects.  Counters for the operator: `batches`,
    `rows_committed`, `largest_batch`, `slow_batches`, `longest_lag` (s).
    """

    def __init__(self, loop, writer: Writer, complete):
        self.loop = loop
        self.writer = writer
        self.complete = complete
        self.worker = Worker(loop, "chatd-store")
        self._rows: list = []
        self._loads: list = []
        self._accounts: list = []  # StoreAccount effects: committed with the next batch
        self._queued = False      # a submit is waiting for the end of the turn
        self._busy = False        # a batch is with the worker
        self.in_flight = 0        # rows gathered or with the worker, not yet committed
        self.in_flight_bytes = 0  # their texts, plus ROW_OVERHEAD each
        self.congested = False
        self._paused: list = []   # transports not read until the commits catch up
        self.failing = False
        self._retrying = False
        self._writable = True
        self.batches = 0
        self.rows_committed = 0
        self.largest_batch = 0
        self.slow_batches = 0
        self.longest_lag = 0.0
        self._poll_accounts = False  # the next job looks for the operator's changes
        self._poll_timer = loop.call_later(ACCOUNTS_POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        self._poll_timer = self.loop.call_later(ACCOUNTS_POLL_SECONDS, self._poll)
        self._poll_accounts = True
        if not self._queued:
            self._queued = True
            self.loop.call_soon(self._submit)

    def take(self, effect) -> None:
        """Gather one store effect for this turn's batch."""
        if type(effect) is LoadHistory or type(effect) is LoadRoom \
                or type(effect) is LoadPrivate:
            self._loads.append(effect)
        elif type(effect) is StoreAccount:
            self._accounts.append(effect)
        else:
            self._rows.append(effect)
            self.in_flight += 1
            self.in_flight_bytes += len(effect.text) + ROW_OVERHEAD
            if not self.congested and (self.in_flight > HIGH_ROWS
                                       or self.in_flight_bytes > HIGH_BYTES):
                self.congested = True
        if not self._queued:
            self._queued = True
            self.loop.call_soon(self._submit)

    def _submit(self) -> None:
        self._queued = False
        if self._busy:
            # Group commit: what comes while a commit is on the disk waits
            # for it and then goes as one transaction, so the number of
            # commits per second is bounded by the disk, not by the load.
            return
        self._busy = True
        rows, self._rows = self._rows, []
        loads, self._loads = self._loads, []
        accounts, self._accounts = self._accounts, []
        poll, self._poll_accounts = self._poll_accounts, False
        self._update_writable()
        began = self.loop.time()
        writer = self.writer

        def job():
            """On the worker: commit `rows`, then answer `loads` (and the poll)."""
            committed, committed_bytes, error = writer.write(rows, accounts)
            on_file = None
            if poll and error is None:
                try:
                    on_file = writer.accounts_if_changed()
                except sqlite3.Error as exc:
                    error = f"{type(exc).__name__}: {exc}"
            answers, unanswered = [], []
            for load in loads:
                try:
                    if type(load) is LoadHistory:
                        answers.append(HistoryLoaded(load.session, writer.load_history(
                            load.key, load.since, load.limit)))
                    elif type(load) is LoadPrivate:
                        answers.append(HistoryLoaded(load.session, writer.load_private(
                            load.low, load.high, load.since, load.limit)))
                    else:
                        answers.append(RoomLoaded(load.room, *writer.load_room(load.key)))
                except sqlite3.Error as exc:
                    error = error or f"{type(exc).__name__}: {exc}"
                    unanswered.append(load)
            return committed, committed_bytes, error, answers, unanswered, on_file

        wrote = bool(rows or accounts)
        self.worker.submit(job, lambda result: self._done(began, wrote, *result))

    def _done(self, began: float, wrote: bool, count: int, size: int, error: str | None,
              answers: list, unanswered: list, on_file: dict | None) -> None:
        """On the loop: `count` rows of `size` text bytes committed (earlier failed
        ones included), or `error`; `answers` to the loads; `on_file`, the
        accounts on file if the operator changed them."""
        self._busy = False
        self.in_flight -= count
        self.in_flight_bytes -= size + ROW_OVERHEAD * count
        lag = self.loop.time() - began
        self.longest_lag = max(self.longest_lag, lag)
        if lag > SLOW_SECONDS:
            self.slow_batches += 1
            log.warning("store: a batch of %d messages waited %.1f s for its commit", count, lag)
        if error is None:
            self.batches += bool(wrote or count)
            self.rows_committed += count
            self.largest_batch = max(self.largest_batch, count)
            if self.failing:
                self.failing = False
                log.warning("store: writing again; nothing acknowledged was lost")
        else:
            if not self.failing:
                self.failing = True
                log.error("store: cannot write (%s); refusing new messages until it can", error)
            self._loads[:0] = unanswered
            if not self._retrying:
                self._retrying = True
                self.loop.call_later(RETRY_SECONDS, self._retry)
        if self.congested and self.in_flight < LOW_ROWS and self.in_flight_bytes < LOW_BYTES:
            self.congested = False
            paused, self._paused = self._paused, []
            for transport in paused:
                transport.resume_reading()
        self._update_writable()
        if (self._rows or self._loads or self._accounts) and not self.failing and not self._queued:
            self._queued = True
            self.loop.call_soon(self._submit)
        for answer in answers:
            self.complete(answer)
        if on_file is not None:
            for effect in self._accounts:  # the core's changes since the job left
                on_file[effect.key] = Account(effect.name, effect.credential, effect.created)
            self.complete(AccountsLoaded(on_file))

    def set_retention(self, retention: int) -> None:
        """Messages kept per room on file from the next commit on (a reload)."""
        writer = self.writer
        self.worker.submit(lambda: setattr(writer, "retention", retention))

    def pause(self, transport) -> None:
        """Read nothing more from `transport` until the commits catch up."""
        transport.pause_reading()
        self._paused.append(transport)

    def _retry(self) -> None:
        self._retrying = False
        if self.failing and not self._queued:
            self._queued = True
            self._submit()

    def _update_writable(self) -> None:
        writable = not self.failing and self.in_flight < MAX_UNCOMMITTED
        if writable != self._writable:
            self._writable = writable
            self.complete(StoreWritable(writable))

    def close(self, timeout: float) -> bool:
        """After the loop stopped: commit what is left, checkpoint, mark a clean
        shutdown.  True if everything acknowledged is on file."""
        self._poll_timer.cancel()
        rows, self._rows = self._rows, []
        accounts, self._accounts = self._accounts, []
        writer, outcome = self.writer, []
        # After any batch still with the worker (FIFO), whatever its result.
        self.worker.submit(lambda: outcome.append(writer.write(rows, accounts)[2] is None
                                                  and writer.close()))
        stopped = self.worker.stop(timeout)
        return stopped and outcome == [True]
