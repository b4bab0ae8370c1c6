"""The event-loop shell: sockets in, bytes through framing and the core, sockets out.

One thread, one `selectors` loop.  Each turn: wait for readiness or the
next timer; accept a bounded number of connections; read each readable
socket once and hand its complete frames to the core; run due timers;
then flush every connection that is owed output, with one sendmsg each.
Connections are never torn down in the middle of a call chain: they are
marked closing, flushed, half-closed, and reaped once (Redis' CLOSE_ASAP,
asyncio's close() versus _force_close()).
"""

import errno
import heapq
import itertools
import logging
import resource
import selectors
import signal
import socket
import time
from collections import Counter

import framing
from framing import REQUESTS

from .config import Config
from .core import ChatCore, Client
from .output import OutputQueue

log = logging.getLogger("chatd")

# One recv per readable socket per turn; a full frame needs at most two.
RECV_SIZE = 65_536
# Seconds a closing connection may take to read its last frames and hang up
# before it is closed anyway (a lingering close: no RST over unread data).
LINGER_SECONDS = 2.0
# Seconds to stop accepting after EMFILE/ENFILE, instead of spinning on it.
ACCEPT_BACKOFF_SECONDS = 0.1
# Listen backlog; the kernel caps it at somaxconn.
BACKLOG = 1024
# Timers the heap may hold before closed connections' timers are purged.
TIMERS_PURGE_FLOOR = 1024
# File descriptors kept for the listener, the wakeup pair, logging and such.
RESERVED_FDS = 32

_OPEN, _CLOSING, _DRAINING, _CLOSED = range(4)
_RESET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)


def error_frame(code: str, text: str) -> bytes:
    return framing.encode({"type": "error", "code": code, "message": text})


def bye_frame(reason: str, ref=None) -> bytes:
    bye = {"type": "bye", "reason": reason}
    if ref is not None:
        bye["ref"] = ref
    return framing.encode(bye)


class Connection:
    """A socket with its decoder, output queue, state and timers' inputs."""

    __slots__ = ("sock", "peer", "decoder", "output", "client", "state", "dirty",
                 "events", "peer_closed", "last_frame_at", "soft_since")

    def __init__(self, sock: socket.socket, peer, decoder, client: Client, now: float):
        self.sock = sock
        self.peer = peer
        self.decoder = decoder
        self.output = OutputQueue()
        self.client = client
        self.state = _OPEN
        self.dirty = False        # in the server's flush list for this turn
        self.events = selectors.EVENT_READ
        self.peer_closed = False  # end of input seen: nothing more to read
        self.last_frame_at = now
        self.soft_since: float | None = None  # when output went over the soft limit


class Server:
    def __init__(self, config: Config):
        self.config = config
        self.core = ChatCore(config)
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.disconnects: Counter[str] = Counter()
        self.listener: socket.socket | None = None
        self.address = None
        self.max_clients = config.max_clients
        self._dirty: list[Connection] = []
        self._timers: list = []
        self._timers_purge_at = TIMERS_PURGE_FLOOR
        self._timer_order = itertools.count()
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._shutdown_deadline: float | None = None
        self._accepting = False   # the listener is registered with the selector
        self._running = False
        # Seconds of the longest loop turn (wake-up to the end of its flush):
        # how long one client could have waited behind the others.
        self.longest_turn = 0.0
        # One receive buffer for every connection (one thread): a read does
        # not allocate 64 KiB; the decoder copies only the bytes that came.
        self._received = memoryview(bytearray(RECV_SIZE))

    # ------------------------------------------------------------ life cycle

    def start(self) -> tuple:
        """Bind and listen; return the address actually bound (real port)."""
        self._raise_fd_limit()
        family, kind, proto, _, address = socket.getaddrinfo(
            self.config.host, self.config.port, type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        self.listener = listener
        self.address = listener.getsockname()[:2]
        self._pause_accepting(False)
        for end in (self._wakeup_reader, self._wakeup_writer):
            end.setblocking(False)
        self.selector.register(self._wakeup_reader, selectors.EVENT_READ, "wakeup")
        log.info("listening on %s:%d", *self.address)
        return self.address

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT wake the loop through the wakeup socket (main thread only)."""
        signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)

    def request_shutdown(self) -> None:
        """What SIGTERM does, callable from any thread."""
        try:
            self._wakeup_writer.send(bytes([signal.SIGTERM]))
        except (BlockingIOError, OSError):
            pass

    def serve_forever(self) -> None:
        self._running = True
        select, now_of = self.selector.select, time.monotonic
        try:
            while self._running:
                ready = select(self._poll_timeout())
                turn_began = now_of()
                for key, mask in ready:
                    target = key.data
                    if type(target) is Connection:
                        if mask & selectors.EVENT_READ:
                            self._read(target)
                        if mask & selectors.EVENT_WRITE and not target.dirty:
                            target.dirty = True
                            self._dirty.append(target)
                    elif target == "accept":
                        self._accept()
                    else:
                        self._take_signals()
                self._run_timers(now_of())
                self._flush()
                turn = now_of() - turn_began
                if turn > self.longest_turn:
                    self.longest_turn = turn
                if self._shutdown_deadline is not None and not self.connections:
                    self._running = False
        finally:
            self._close_everything()

    def _raise_fd_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.max_clients + RESERVED_FDS
        if hard != resource.RLIM_INFINITY and wanted > hard:
            wanted = hard
            self.max_clients = max(1, hard - RESERVED_FDS)
            log.warning("RLIMIT_NOFILE hard limit is %d: max_clients lowered to %d",
                        hard, self.max_clients)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            except (ValueError, OSError) as exc:
                # Linux refuses a soft limit above fs.nr_open even under an infinite hard one.
                self.max_clients = max(1, soft - RESERVED_FDS)
                log.warning("cannot raise RLIMIT_NOFILE to %d (%s): max_clients lowered to %d",
                            wanted, exc, self.max_clients)
        self.core.limits["max_clients"] = self.max_clients

    def _pause_accepting(self, paused: bool) -> None:
        if paused and self._accepting:
            self.selector.unregister(self.listener)
        elif not paused and not self._accepting:
            self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._accepting = not paused

    # --------------------------------------------------------------- events

    def _accept(self) -> None:
        if not self._accepting:
            return  # shut down or backing off earlier in this same turn
        now = time.monotonic()
        for _ in range(self.config.accepts_per_turn):
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed (%s); pausing accepts for %.1fs",
                                exc.strerror, ACCEPT_BACKOFF_SECONDS)
                    self._pause_accepting(True)
                    self._add_timer(now + ACCEPT_BACKOFF_SECONDS, "resume_accept", None)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # the peer gave up before we got to it
                raise
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, peer[:2], framing.Decoder(self.config.max_frame, REQUESTS),
                              self.core.connect(), now)
            conn.client.conn = conn
            self.connections[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            log.info("open %s:%d", *conn.peer)
            if len(self.connections) > self.max_clients:
                self._begin_close(conn, "server_full",
                                  error=("server_full", f"{self.max_clients} connections "
                                                        f"already; try later"))
                continue
            self._add_timer(now + self.config.handshake_timeout, "handshake", conn)
            self._add_timer(now + self.config.idle_timeout, "idle", conn)

    def _read(self, conn: Connection) -> None:
        try:
            size = conn.sock.recv_into(self._received)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._force_close(conn, "reset")
            return
        if not size:
            conn.peer_closed = True
            if conn.state == _OPEN:
                self._begin_close(conn, "quit", counted_as="disconnect")
            elif conn.state == _DRAINING:
                self._force_close(conn, None)  # the peer hung up after our bye
            else:
                self._want_write(conn, True)  # stop polling a finished input
            return
        if conn.state != _OPEN:
            return  # closing: what the peer still sends is read and dropped
        items = conn.decoder.feed(self._received[:size])
        if not items:
            return
        conn.last_frame_at = time.monotonic()
        core, client = self.core, conn.client
        outbox = core.outbox
        # Consecutive broadcasts to one room from this read are queued as one
        # joined chunk: each member then costs one append per read, not one
        # per message.  Only a `say` may join a run, because it cannot change
        # who is in the room; anything else delivers the run first.  A say
        # that became one broadcast to the room's member set (a dict; chosen
        # recipients come as a tuple: a ref'd echo, an error) joins the run.
        run_members, run_frames = None, []
        for item in items:
            is_say = type(item) is dict and item["type"] == "say"
            if run_frames and not is_say:
                self._queue_run(run_members, run_frames)
            core.receive(client, item)
            if is_say and len(outbox) == 1 and type(outbox[0][0]) is dict \
                    and not core.closing:
                members, data = outbox.pop()
                if run_frames and members is not run_members:
                    self._queue_run(run_members, run_frames)
                run_members = members
                run_frames.append(data)
                continue
            if run_frames:
                self._queue_run(run_members, run_frames)
            self._deliver()
            if client.ended:
                break
        if run_frames:
            self._queue_run(run_members, run_frames)

    def _queue_run(self, members, frames: list) -> None:
        """Queue a run of broadcasts to one room as one chunk, and empty it."""
        self._queue(members, b"".join(frames))
        frames.clear()

    def _deliver(self) -> None:
        """Queue what the core produced."""
        core = self.core
        for recipients, data in core.outbox:
            self._queue(recipients, data)
        core.outbox.clear()
        if core.closing:
            closing = core.closing[:]
            core.closing.clear()
            for client, reason in closing:
                self._begin_close(client.conn, reason)

    def _queue(self, recipients, data: bytes) -> None:
        """Give `data` to every recipient's output; the hot path of every broadcast.

        OutputQueue.append is inlined here: a call per recipient would be a
        large share of a fan-out's cost.
        """
        size = len(data)
        dirty = self._dirty
        for client in recipients:
            conn = client.conn
            output = conn.output
            output.chunks.append(data)
            output.size += size
            if not conn.dirty:
                conn.dirty = True
                dirty.append(conn)

    def _take_signals(self) -> None:
        try:
            signums = self._wakeup_reader.recv(64)
        except BlockingIOError:
            return
        for signum in signums:
            if self._shutdown_deadline is None:
                log.info("longest loop turn so far: %.1f ms", self.longest_turn * 1000)
                log.info("%s: closing %d connections", signal.Signals(signum).name,
                         len(self.connections))
                self._begin_shutdown()
            else:
                log.warning("second signal: exiting now")
                self._running = False

    def _begin_shutdown(self) -> None:
        self._shutdown_deadline = time.monotonic() + self.config.shutdown_timeout
        self._add_timer(self._shutdown_deadline, "shutdown", None)
        self._pause_accepting(True)
        self.listener.close()
        for conn in list(self.connections.values()):
            self._begin_close(conn, "shutdown")

    # --------------------------------------------------------------- output

    def _flush(self) -> None:
        """One send per connection owed output; enforce the output limits."""
        config = self.config
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.dirty = False
            if conn.state == _CLOSED:
                continue
            output = conn.output
            if output.size:
                # Past the soft limit the per-turn cap would be what keeps the
                # backlog growing (many senders, one reader): offer the kernel
                # all of it, so only a peer that does not read stays behind.
                budget = (config.write_per_turn if output.size <= config.output_soft_limit
                          else output.size)
                try:
                    output.send(conn.sock, budget)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._force_close(conn, "reset")
                    continue
            if output.size > config.output_hard_limit and conn.state == _OPEN:
                self._cut_slow(conn, f"over {config.output_hard_limit} bytes queued")
            if output.size > config.output_soft_limit:
                if conn.soft_since is None:
                    conn.soft_since = time.monotonic()
                    self._add_timer(conn.soft_since + config.output_soft_seconds,
                                    "soft_limit", conn)
            else:
                conn.soft_since = None
            if output.size:
                self._want_write(conn, True)
            elif conn.state == _CLOSING:
                self._drain(conn)
            if conn.state in (_OPEN, _DRAINING) and not output.size:
                self._want_write(conn, False)

    def _want_write(self, conn: Connection, wanted: bool) -> None:
        events = (0 if conn.peer_closed else selectors.EVENT_READ) | \
            (selectors.EVENT_WRITE if wanted else 0)
        if events != conn.events:
            conn.events = events
            self.selector.modify(conn.sock, events, conn)

    def _cut_slow(self, conn: Connection, why: str) -> None:
        dropped = conn.output.drop_unsent()
        log.warning("too slow %s:%d (%s); %d bytes dropped", *conn.peer, why, dropped)
        self._begin_close(conn, "too_slow", error=("too_slow", f"{why}; disconnecting"))

    # -------------------------------------------------------------- closing

    def _begin_close(self, conn: Connection, reason: str, error=None,
                     counted_as: str | None = None) -> None:
        """Stop serving `conn`: queue [error,] bye and close once it is flushed."""
        if conn.state != _OPEN:
            return
        conn.state = _CLOSING
        self.disconnects[counted_as or reason] += 1
        if self._shutdown_deadline is None:
            self.core.end(conn.client, counted_as or reason)
            self._deliver()
            self._add_timer(time.monotonic() + LINGER_SECONDS, "linger", conn)
        # At shutdown nobody stays to be told who left, so the core is not
        # told (nothing is delivered any more), and the flush deadline, not
        # the linger, bounds how long a slow reader is flushed.
        if error is not None:
            conn.output.append(error_frame(*error))
        conn.output.append(bye_frame(reason, conn.client.bye_ref))
        if not conn.dirty:
            conn.dirty = True
            self._dirty.append(conn)
        log.info("closing %s:%d (%s)", *conn.peer, counted_as or reason)

    def _drain(self, conn: Connection) -> None:
        """Everything is sent: half-close and wait for the peer to hang up."""
        if conn.peer_closed:
            self._force_close(conn, None)
            return
        conn.state = _DRAINING
        if self._shutdown_deadline is not None:
            # Flushed in time: the peer gets the usual while to hang up.
            self._add_timer(time.monotonic() + LINGER_SECONDS, "linger", conn)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._force_close(conn, None)

    def _force_close(self, conn: Connection, reason: str | None) -> None:
        """Close now, exactly once; `reason` is counted when not already closing."""
        if conn.state == _CLOSED:
            return
        if conn.state == _OPEN:
            self.disconnects[reason] += 1
            self.core.end(conn.client, reason)
            self._deliver()
            log.info("closing %s:%d (%s)", *conn.peer, reason)
        conn.state = _CLOSED
        self.selector.unregister(conn.sock)
        del self.connections[conn.sock.fileno()]
        conn.sock.close()
        conn.client.conn = None
        # Its timers keep the connection until they fall due or are purged:
        # its unsent output (up to the hard limit) is freed now instead.
        conn.output.clear()

    def _close_everything(self) -> None:
        for conn in list(self.connections.values()):
            self._force_close(conn, "shutdown")
        self.selector.close()
        if self.listener is not None and self.listener.fileno() != -1:
            self.listener.close()
        self._wakeup_reader.close()
        self._wakeup_writer.close()
        log.info("disconnects by reason: %s",
                 ", ".join(f"{reason}={count}" for reason, count
                           in sorted(self.disconnects.items())) or "none")

    # --------------------------------------------------------------- timers

    def _add_timer(self, deadline: float, kind: str, conn: Connection | None) -> None:
        heapq.heappush(self._timers, (deadline, next(self._timer_order), kind, conn))
        if len(self._timers) > self._timers_purge_at:
            self._purge_timers()

    def _purge_timers(self) -> None:
        """Drop the timers of closed connections, in place.

        A closed connection's idle timer would otherwise keep it (socket,
        decoder, queue: about 2.6 KiB) in memory for idle_timeout, so memory
        grew with the connection rate (20,000 quick visitors: +53 MiB).
        Purging when the heap has doubled since the last purge keeps the
        cost amortised O(1) per timer.
        """
        self._timers[:] = [timer for timer in self._timers
                           if timer[3] is None or timer[3].state != _CLOSED]
        heapq.heapify(self._timers)
        self._timers_purge_at = 2 * len(self._timers) + TIMERS_PURGE_FLOOR

    def _poll_timeout(self) -> float | None:
        if self._dirty:
            return 0
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, conn = heapq.heappop(timers)
            if conn is not None and conn.state == _CLOSED:
                continue
            if kind == "idle":
                if conn.state != _OPEN:
                    continue
                deadline = conn.last_frame_at + self.config.idle_timeout
                if deadline > now:
                    self._add_timer(deadline, "idle", conn)
                else:
                    self._begin_close(conn, "timeout", error=(
                        "timeout", f"no frame for {self.config.idle_timeout:g}s"))
            elif kind == "handshake":
                if conn.state == _OPEN and conn.client.name is None:
                    self._begin_close(conn, "timeout", error=(
                        "timeout", f"no hello within {self.config.handshake_timeout:g}s"))
            elif kind == "soft_limit":
                if (conn.state == _OPEN and conn.soft_since is not None
                        and now - conn.soft_since >= self.config.output_soft_seconds):
                    self._cut_slow(conn, f"over {self.config.output_soft_limit} bytes "
                                         f"queued for {self.config.output_soft_seconds:g}s")
            elif kind == "linger":
                self._force_close(conn, None)
            elif kind == "resume_accept":
                if self._shutdown_deadline is None:
                    self._pause_accepting(False)
            elif kind == "shutdown":
                self._running = False
