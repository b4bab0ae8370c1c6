"""Transports: a connected socket's bytes in and out, its output limits and its close.

A transport owns one non-blocking socket and its `OutputQueue`; its
protocol (chat/1 today) sees only bytes: `data_received` going up and
`write` coming down, as asyncio's transports and protocols do, so that TLS
can later stack between the two without the protocol noticing.

The protocol a transport calls (duck-typed):
    connection_made(transport)   once, before anything else
    data_received(data)          a memoryview, valid only during the call
    eof_received()               the peer closed or half-closed its side
    slow_consumer(why)           unsent output was dropped (over an output
                                 limit): say goodbye and close
    connection_lost(reason)      once, when the socket has closed; `reason`
                                 is the transport's (e.g. "reset") when the
                                 protocol had not begun to close, else None
and, from the listener and the daemon:
    over_capacity(why)           one connection too many (`why` says which
                                 limit): refuse and close
    shutdown()                   the server stops: say goodbye and close

Writing: `write` queues and the connection goes on `Connections`' flush
list; the flush runs once at the end of the loop turn, so what a connection
is owed in one turn leaves in one `sendmsg` (a broadcast's flush may linger
a little longer while the server is busy: `Connections.arrange_flush`).
EVENT_WRITE is asked for only while output is left over (asyncio's
selector transports do the same).  The chat protocol's fan-out appends to
`output` and the flush list itself (`ChatService.queue`: a call per
recipient would cost 15% of the server's CPU); the queue holds what the
protocol wrote, so a TLS transport encrypts a turn's output in its flush,
in one piece.
"""

import enum
import logging
import socket
from dataclasses import dataclass

from . import logs
from .output import OutputQueue

log = logging.getLogger("chatd")

# Seconds a closing connection may take to read its last frames and hang up
# before it is closed anyway (a lingering close: no RST over unread data).
LINGER_SECONDS = 2.0
# One recv per readable socket per turn; a full frame needs at most two.
RECV_SIZE = 65_536
# TLS handshake steps per loop turn (a server's first step costs about a
# millisecond of CPU): a connect storm over TLS waits its turn, chat goes on.
HANDSHAKES_PER_TURN = 16
# Connections a flush must be owed to before it may linger (a broadcast, not
# a reply): see `Connections.arrange_flush`.
FLUSH_LINGER_MIN_CONNECTIONS = 8


class State(enum.Enum):
    """Where a transport is in its life; it only moves down this list."""

    OPEN = "open"          # reading and writing; the protocol hears everything
    CLOSING = "closing"    # the protocol said its last: flushing it, input dropped
    DRAINING = "draining"  # all written and the write side shut: waiting for FIN
    CLOSED = "closed"      # unregistered and closed


_OPEN, _CLOSING, _DRAINING, _CLOSED = State.OPEN, State.CLOSING, State.DRAINING, State.CLOSED


@dataclass(frozen=True)
class OutputLimits:
    """Bytes and seconds that bound one connection's output (see chatd/config.py).

    Over `soft` for `soft_seconds`, or over `hard` after a send: the peer
    is a slow consumer and is cut (Redis' client-output-buffer-limit).
    """

    write_per_turn: int
    soft: int
    soft_seconds: float
    hard: int


class Connections:
    """Every open transport, the flush list and the receive buffer they share.

    `open` maps each transport to None (an insertion-ordered set); its size
    is what `max_clients` counts, closing connections included.
    """

    def __init__(self, loop, limits: OutputLimits, flush_linger: float = 0.0):
        self.loop = loop
        self.limits = limits
        self.open: dict = {}
        self.pending: list = []   # transports owed a flush this turn
        # Seconds a flush to many connections may wait after the previous
        # flush began (`arrange_flush`); 0 flushes at the end of every turn.
        self.flush_linger = flush_linger
        self.flushed_at = 0.0
        self.shutting_down = False
        self._when_empty = None
        # The listeners' AddressLimits (address_limits.py), told of each close.
        self.address_limits = None
        # Totals for metrics, each one addition per read, per send or per cut.
        self.bytes_received = 0
        self.bytes_sent = 0
        self.sends = 0   # system calls that wrote: deliveries per send is the batching
        self.slow_consumers = 0
        # TLS handshakes: steps allowed per turn, taken this turn (`handshake_turn`),
        # and steps put off to a later turn because the turn's were taken.
        self.handshakes_per_turn = HANDSHAKES_PER_TURN
        self.handshakes = 0
        self.handshake_turn = -1
        self.handshakes_deferred = 0
        # One receive buffer for every connection (one thread): a read does
        # not allocate 64 KiB; the protocol copies only the bytes that came.
        self.received = memoryview(bytearray(RECV_SIZE))

    def schedule(self, transport) -> None:
        """Put `transport` on the flush list (once per turn)."""
        transport.scheduled = True
        self.pending.append(transport)
        if len(self.pending) == 1:
            self.arrange_flush()

    def arrange_flush(self) -> None:
        """Arrange the flush of the list that has just stopped being empty.

        Sends, not Python, are most of a fan-out's cost at a steady rate
        (docs/performance.md), so while flushes follow each other closely a
        flush owed to `FLUSH_LINGER_MIN_CONNECTIONS` or more connections waits
        until `flush_linger` seconds after the previous one began, and each send
        carries what arrived meanwhile (Kafka's linger.ms, NATS' flusher).
        After a quiet spell, and when the list begins with output to one or a
        few connections (a pong, a welcome), the flush runs at the end of this
        turn as before: an idle server adds no latency and a client that
        waits for each answer is not slowed.  Output queued while a lingering
        flush is armed joins it, a reply too: nothing waits longer than
        `flush_linger`.  The timer fires on the first turn after it is due;
        while idle, the poll's millisecond resolution (epoll) rounds it up.
        """
        if len(self.pending) >= FLUSH_LINGER_MIN_CONNECTIONS and self.flush_linger:
            due = self.flushed_at + self.flush_linger
            if due > self.loop.time():
                self.loop.call_at(due, self.flush)
                return
        self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """One send per transport owed output; enforce the output limits."""
        self.flushed_at = self.loop.time()
        limits = self.limits
        pending, self.pending = self.pending, []
        for transport in pending:
            transport.scheduled = False
            if transport.state is not _CLOSED:
                transport.flush(limits)

    def begin_shutdown(self, when_empty) -> None:
        """From now on a closing connection is bounded by the caller's flush
        deadline, not the linger; call `when_empty()` once none is left."""
        self.shutting_down = True
        self._when_empty = when_empty
        if not self.open:
            self.loop.call_soon(when_empty)

    def forget(self, transport) -> None:
        """`transport` has closed: it no longer counts (here, nor per address)."""
        del self.open[transport]
        if self.address_limits is not None:
            self.address_limits.release(transport)
        if self._when_empty is not None and not self.open:
            self.loop.call_soon(self._when_empty)

    def close_all(self) -> None:
        """Close every socket now (the loop has stopped)."""
        for transport in list(self.open):
            transport.abort("shutdown")


class Transport:
    """One connected socket: reads to its protocol, queued writes, the close states.

    Closing is deferred and ordered: `close()` lets queued output drain,
    half-closes (`shutdown(SHUT_WR)`) and waits up to LINGER_SECONDS for
    the peer's FIN, because closing over unread input makes the kernel send
    a reset that can destroy the last frames in flight; `abort()` closes at
    once.  Either way the protocol hears `connection_lost` exactly once.
    """

    __slots__ = ("connections", "loop", "sock", "peer", "protocol", "output", "state",
                 "scheduled", "writing", "peer_closed", "reading_paused", "_soft_timer",
                 "_linger")

    def __init__(self, connections: Connections, sock: socket.socket, peer: tuple):
        self.connections = connections
        self.loop = connections.loop
        self.sock = sock
        self.peer = peer              # (host, port), for the log
        self.protocol = None
        self.output = OutputQueue()
        self.state = _OPEN
        self.scheduled = False        # on the flush list this turn
        self.writing = False          # EVENT_WRITE asked for
        self.peer_closed = False      # end of input seen: nothing more to read
        self.reading_paused = False   # the protocol asked for no input for a while
        self._soft_timer = None       # armed while output is over the soft limit
        self._linger = None

    def start(self, protocol) -> None:
        """Begin reading into `protocol` (connection_made first)."""
        self.protocol = protocol
        self.connections.open[self] = None
        self.loop.add_reader(self.sock, self._on_readable)
        protocol.connection_made(self)

    # ------------------------------------------------------------- reading

    def _receive(self) -> int | None:
        """One recv_into the shared buffer: the bytes read (0 at end of input), or
        None when nothing was there or the socket failed (then aborted)."""
        try:
            return self.sock.recv_into(self.connections.received)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self.abort(self._failure_reason())
            return None

    def _failure_reason(self) -> str:
        """The disconnect reason of a socket error."""
        return "reset"

    def _on_readable(self) -> None:
        size = self._receive()
        if size is None:
            return
        connections = self.connections
        if not size:
            self.peer_closed = True
            self.loop.remove_reader(self.sock)
            if self.state is _OPEN:
                self._eof_while_open()
            elif self.state is _DRAINING:
                self.abort(None)  # the peer hung up after our last words
            return
        connections.bytes_received += size
        if self.state is _OPEN:
            self._bytes_in(connections.received[:size])
        # closing: what the peer still sends is read and dropped

    def _bytes_in(self, data: memoryview) -> None:
        """What the socket gave while open (a view of the shared buffer)."""
        self.protocol.data_received(data)

    def _eof_while_open(self) -> None:
        """The peer ended its side while the connection was open."""
        self.protocol.eof_received()

    def pause_reading(self) -> None:
        """Read nothing until `resume_reading` (the peer feels it as TCP backpressure)."""
        if not self.reading_paused and not self.peer_closed and self.state is not _CLOSED:
            self.reading_paused = True
            self.loop.remove_reader(self.sock)

    def resume_reading(self) -> None:
        """Read again after `pause_reading` (a no-op once closed or at end of input)."""
        if self.reading_paused:
            self.reading_paused = False
            if not self.peer_closed and self.state is not _CLOSED:
                self.loop.add_reader(self.sock, self._on_readable)

    # ------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        """Queue `data` (whole frames) for this turn's flush."""
        self.output.append(data)
        if not self.scheduled:
            self.connections.schedule(self)

    def _on_writable(self) -> None:
        if not self.scheduled:
            self.connections.schedule(self)

    def flush(self, limits: OutputLimits) -> None:
        """This turn's one send, then the slow-consumer checks and the close steps."""
        output = self.output
        if output.size:
            # Past the soft limit the per-turn cap would be what keeps the
            # backlog growing (many senders, one reader): offer the kernel
            # all of it, so only a peer that does not read stays behind.
            budget = limits.write_per_turn if output.size <= limits.soft else output.size
            connections = self.connections
            connections.sends += 1
            try:
                connections.bytes_sent += output.send(self.sock, budget)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.abort("reset")
                return
        if output.size > limits.hard and self.state is _OPEN:
            self._cut_slow(f"over {limits.hard} bytes queued")
        if output.size > limits.soft:
            if self._soft_timer is None:
                self._soft_timer = self.loop.call_later(limits.soft_seconds, self._soft_expired)
        elif self._soft_timer is not None:
            self._soft_timer.cancel()
            self._soft_timer = None
        if output.size:
            if not self.writing:
                self.writing = True
                self.loop.add_writer(self.sock, self._on_writable)
        else:
            if self.writing:
                self.writing = False
                self.loop.remove_writer(self.sock)
            if self.state is _CLOSING:
                self._drain()

    def _soft_expired(self) -> None:
        self._soft_timer = None
        limits = self.connections.limits
        if self.state is _OPEN:
            self._cut_slow(f"over {limits.soft} bytes queued for {limits.soft_seconds:g}s")

    def _cut_slow(self, why: str) -> None:
        dropped = self.output.drop_unsent()
        self.connections.slow_consumers += 1
        log.warning("too slow %s:%d (%s); %d bytes dropped", *self.peer, why, dropped,
                    extra=logs.connection(self.peer, "too_slow"))
        self.protocol.slow_consumer(why)

    # ------------------------------------------------------------- closing

    def close(self) -> None:
        """Flush what is queued, half-close, then close once the peer hangs up."""
        if self.state is not _OPEN:
            return
        self.state = _CLOSING
        if not self.connections.shutting_down:
            self._linger = self.loop.call_later(LINGER_SECONDS, self.abort, None)
        if not self.scheduled:
            self.connections.schedule(self)

    def _drain(self) -> None:
        """Everything is sent: half-close and wait for the peer to hang up."""
        if self.peer_closed:
            self.abort(None)
            return
        self.state = _DRAINING
        if self._linger is None:
            # At shutdown: flushed before the deadline, the peer gets the usual while.
            self._linger = self.loop.call_later(LINGER_SECONDS, self.abort, None)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort(None)

    def abort(self, reason: str | None) -> None:
        """Close now, exactly once; the protocol hears `reason` if it was still open.

        The socket is closed, its unsent output freed and the protocol told
        at once (so nobody else is served as if the peer were still there);
        the transport is reaped before the next poll.
        """
        if self.state is _CLOSED:
            return
        told = reason if self.state is _OPEN else None
        self.state = _CLOSED
        loop = self.loop
        loop.remove_file(self.sock)
        self.sock.close()
        self.output.clear()
        for timer in (self._soft_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self.connections.forget(self)
        self.protocol.connection_lost(told)
        loop.call_soon(self._reap)

    def _reap(self) -> None:
        """Free what is left once the call chain that closed it is over.

        The transport-protocol cycle is broken so that refcounting frees
        both now instead of the cyclic GC much later (20,000 quick visitors
        kept +3.7 MiB).
        """
        self.output.clear()
        self.protocol = None
