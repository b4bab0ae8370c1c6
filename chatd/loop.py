"""The event loop: one thread, callbacks on readiness, timers, other threads and signals.

Like Redis' ae.c or asyncio's base loop, it knows nothing of chat: files
carry a reader and a writer callback, timers a callback and a handle that
cancels them.  One turn:

1. poll (`selectors`, epoll on Linux) until a file is ready, the next timer
   is due, or at once if callbacks are ready;
2. call the reader, then the writer, of each ready file;
3. call every due timer;
4. call the callbacks that were ready before this step (`call_soon`,
   `call_soon_threadsafe`); what they make ready runs next turn, after a
   poll that does not wait.

`Connections` puts its flush and the reap of a closed connection in step 4,
so a connection's output of a whole turn leaves in one send, and nothing is
freed in the middle of a call chain (Redis' `beforeSleep` and
`CLOSE_ASAP`).

Other threads and signals wake the loop through one socket pair: a thread
queues its callback and writes a zero byte; the interpreter writes a
signal's number there (`signal.set_wakeup_fd`), and signal numbers start at
1, so a wake byte is never taken for a signal (asyncio does the same).
"""

import bisect
import collections
import functools
import heapq
import itertools
import selectors
import signal
import socket
import time

# Cancelled timers the heap may hold before it is rebuilt without them,
# whatever its size (below this a rebuild costs more than it frees).
TIMERS_PURGE_FLOOR = 1024
# Upper bounds, in seconds, of the loop-turn histogram's buckets (metrics).
TURN_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5)
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Timer:
    """A callback due at a time on the loop's clock (the heap holds the time); `cancel()` drops it."""

    __slots__ = ("callback", "args", "cancelled", "_loop")

    def __init__(self, loop, callback, args: tuple):
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._loop = loop

    def cancel(self) -> None:
        """Do not call it; idempotent, and harmless once it has run."""
        if not self.cancelled:
            self.cancelled = True
            self.callback = self.args = None  # what it would have kept alive
            self._loop._timer_cancelled()


class _FileCallbacks:
    """What one registered file's readiness calls."""

    __slots__ = ("reader", "writer")

    def __init__(self):
        self.reader = None
        self.writer = None


class EventLoop:
    """The loop: `add_reader`/`add_writer`, `call_at`/`call_later`, `call_soon`,
    `call_soon_threadsafe`, `add_signal_handler`, then `run_forever` until `stop`.

    Everything but `call_soon_threadsafe` is for the loop's own thread.
    `longest_turn` is the longest turn so far in seconds (wake-up to the
    end of its ready callbacks): how long one client could wait behind others.
    `turn_counts[i]` counts the turns that took at most `TURN_BUCKETS[i]`
    seconds (not cumulative; the last slot is the rest) and `turn_seconds`
    their total: the metrics' turn-duration histogram, one bisect per turn.
    """

    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._timers: list = []  # heap of (when, sequence, Timer)
        self._sequence = itertools.count()
        self._cancelled = 0      # cancelled timers still in the heap
        self._ready: collections.deque = collections.deque()
        self._signal_handlers: dict[int, object] = {}
        self._running = False
        self.longest_turn = 0.0
        self.turn_counts = [0] * (len(TURN_BUCKETS) + 1)
        self.turn_seconds = 0.0
        self.turns = 0           # turns begun: tells one turn from the next
        self._wake_reader, self._wake_writer = socket.socketpair()
        for end in (self._wake_reader, self._wake_writer):
            end.setblocking(False)
        self.add_reader(self._wake_reader, self._on_wake)

    @staticmethod
    def time() -> float:
        """The loop's clock: `time.monotonic()`, in seconds."""
        return time.monotonic()

    # --------------------------------------------------------------- files

    def add_reader(self, fileobj, callback) -> None:
        """Call `callback()` whenever `fileobj` (a socket) is readable."""
        self._update(fileobj, "reader", callback)

    def remove_reader(self, fileobj) -> None:
        """Stop calling `fileobj`'s reader; a no-op if there is none."""
        self._update(fileobj, "reader", None)

    def add_writer(self, fileobj, callback) -> None:
        """Call `callback()` whenever `fileobj` is writable; remove it once
        nothing is pending, or the loop spins."""
        self._update(fileobj, "writer", callback)

    def remove_writer(self, fileobj) -> None:
        """Stop calling `fileobj`'s writer; a no-op if there is none."""
        self._update(fileobj, "writer", None)

    def remove_file(self, fileobj) -> None:
        """Forget `fileobj` entirely (before closing it: epoll needs an open fd)."""
        try:
            key = self._selector.unregister(fileobj)
        except KeyError:
            return
        # A ready event already returned for it this turn must call nothing.
        key.data.reader = key.data.writer = None

    def _update(self, fileobj, role: str, callback) -> None:
        selector = self._selector
        try:
            key = selector.get_key(fileobj)
        except KeyError:
            if callback is None:
                return
            callbacks = _FileCallbacks()
            setattr(callbacks, role, callback)
            selector.register(fileobj, _READ if role == "reader" else _WRITE, callbacks)
            return
        callbacks = key.data
        setattr(callbacks, role, callback)
        events = (_READ if callbacks.reader else 0) | (_WRITE if callbacks.writer else 0)
        if not events:
            selector.unregister(fileobj)
        elif events != key.events:
            selector.modify(fileobj, events, callbacks)

    # -------------------------------------------------------------- timers

    def call_at(self, when: float, callback, *args) -> Timer:
        """Call `callback(*args)` once `time()` >= `when`; return its cancellable handle."""
        timer = Timer(self, callback, args)
        heapq.heappush(self._timers, (when, next(self._sequence), timer))
        return timer

    def call_later(self, delay: float, callback, *args) -> Timer:
        """`call_at(time() + delay, ...)`; `delay` in seconds."""
        return self.call_at(time.monotonic() + delay, callback, *args)

    def _timer_cancelled(self) -> None:
        """Drop cancelled timers in bulk once they are half the heap.

        Connections cancel their timers when they close; without the purge
        a closed connection's idle timer would keep its memory until
        `idle_timeout` (20,000 quick visitors: +53 MiB).  Rebuilding only
        when half the heap is dead keeps the cost amortised O(1) per timer.
        """
        self._cancelled += 1
        if self._cancelled > TIMERS_PURGE_FLOOR and 2 * self._cancelled > len(self._timers):
            self._timers[:] = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled = 0

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if timer.cancelled:
                self._cancelled -= 1
                continue
            callback, args = timer.callback, timer.args
            # Out of the heap: a late cancel() must neither count it nor fail.
            timer.cancelled = True
            timer.callback = timer.args = None
            callback(*args)

    # ------------------------------------------------------ ready callbacks

    def call_soon(self, callback, *args) -> None:
        """Call `callback(*args)` at the end of this turn (or the next, if
        called from a ready callback), before the loop waits again."""
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback, *args) -> None:
        """`call_soon` from any thread: the loop wakes to run it.

        deque.append is atomic in CPython; a full wake socket means a wake
        is pending already, so the byte may be dropped.
        """
        self._ready.append((callback, args))
        try:
            self._wake_writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # ------------------------------------------------------------- signals

    def add_signal_handler(self, signum: int, callback) -> None:
        """Call `callback(signum)` in the loop when the process gets `signum`.

        Main thread only (Python's rule for `signal.signal`).  The Python
        handler does nothing: the interpreter writes the number to the wake
        socket, and the loop reads it like any other input.
        """
        signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        self._signal_handlers[signum] = callback
        signal.signal(signum, _ignore)

    def _on_wake(self) -> None:
        try:
            data = self._wake_reader.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for byte in data:
            handler = self._signal_handlers.get(byte) if byte else None
            if handler is not None:
                handler(byte)

    # --------------------------------------------------------------- running

    def run_forever(self) -> None:
        """Run turns until `stop()`; then close the loop's own sockets."""
        self._running = True
        select, now_of = self._selector.select, time.monotonic
        ready, timers = self._ready, self._timers
        turn_counts, bucket_of = self.turn_counts, functools.partial(bisect.bisect_left,
                                                                     TURN_BUCKETS)
        try:
            while self._running:
                if ready:
                    timeout = 0
                elif timers:
                    timeout = max(0.0, timers[0][0] - now_of())
                else:
                    timeout = None
                events = select(timeout)
                turn_began = now_of()
                self.turns += 1
                for key, mask in events:
                    callbacks = key.data
                    if mask & _READ and callbacks.reader is not None:
                        callbacks.reader()
                    if mask & _WRITE and callbacks.writer is not None:
                        callbacks.writer()
                if timers:
                    now = now_of()
                    if timers[0][0] <= now:
                        self._run_timers(now)
                self.run_ready()
                turn = now_of() - turn_began
                turn_counts[bucket_of(turn)] += 1
                self.turn_seconds += turn
                if turn > self.longest_turn:
                    self.longest_turn = turn
        finally:
            self._running = False

    def run_ready(self) -> None:
        """Call the callbacks ready now, not those they make ready (step 4 of a
        turn; also what finishes the last reaps after the loop stopped)."""
        ready = self._ready
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            callback(*args)

    def stop(self) -> None:
        """Leave `run_forever` at the end of the current turn."""
        self._running = False

    def close(self) -> None:
        """Release the selector and the wake socket; the loop cannot run again."""
        if self._signal_handlers:
            signal.set_wakeup_fd(-1)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()


def _ignore(signum, frame) -> None:
    """The Python-level signal handler: the wake socket carries the signal."""
