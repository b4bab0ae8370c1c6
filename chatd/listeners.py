"""Listening sockets, each bound to a protocol factory, and the open-files limit they need.

A listener accepts at most `accepts_per_turn` connections per loop turn (a
connect storm cannot starve chat), wraps each in a `Transport` with a new
protocol, and refuses (politely, through the protocol) one beyond
`max_connections`.  On EMFILE/ENFILE it stops accepting for a moment
instead of spinning on a listener that stays readable (asyncio's
`_accept_connection` does the same).
"""

import errno
import logging
import resource
import socket

from . import logs
from .transport import Connections, Transport

log = logging.getLogger("chatd")

# Seconds to stop accepting after EMFILE/ENFILE, instead of spinning on it.
ACCEPT_BACKOFF_SECONDS = 0.1
# Listen backlog; the kernel caps it at somaxconn.
BACKLOG = 1024
# File descriptors kept for listeners, the loop's wake socket, logging and such.
RESERVED_FDS = 32
# Peer host strings a listener shares among its connections before it starts
# its table afresh (a bound on memory whatever the number of addresses).
SHARED_HOSTS = 4096
# accept() errors that mean "out of resources, try again later".
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# accept() errors that mean "that peer gave up before we got to it".
_GONE = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)


def bind(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on (host, port); port 0 picks one.

    Raises OSError (address in use, unknown host, ...).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def raise_fd_limit(max_clients: int) -> int:
    """Raise RLIMIT_NOFILE to fit `max_clients` connections; return the count that fits.

    Within the hard limit only; where the kernel refuses (Linux caps the
    soft limit at fs.nr_open even under an infinite hard one), the number
    of connections is lowered to what the present limit allows, and logged.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_clients + RESERVED_FDS
    if hard != resource.RLIM_INFINITY and wanted > hard:
        wanted = hard
        max_clients = max(1, hard - RESERVED_FDS)
        log.warning("RLIMIT_NOFILE hard limit is %d: max_clients lowered to %d",
                    hard, max_clients)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            max_clients = max(1, soft - RESERVED_FDS)
            log.warning("cannot raise RLIMIT_NOFILE to %d (%s): max_clients lowered to %d",
                        wanted, exc, max_clients)
    return max_clients


class Listener:
    """Accepts on `sock` into new transports, each with `protocol_factory()`.

    `max_connections` bounds `connections.open` (every listener's, closing
    ones included); the protocol of one beyond it, or of one its client's
    address may not open now (`address_limits`, an AddressLimits shared by
    the chat listeners, or None), gets `over_capacity(why)` instead of
    service.  `open_log_level` is the level of the "open HOST:PORT" line (a
    scraper's connections log at debug: one a scrape is noise).
    `transport_factory(connections, sock, peer)` makes each connection's
    transport (`TLSTransport` on the TLS port).
    """

    def __init__(self, loop, connections: Connections, sock: socket.socket,
                 protocol_factory, accepts_per_turn: int, max_connections: int,
                 open_log_level: int = logging.INFO, transport_factory=Transport,
                 address_limits=None):
        self.loop = loop
        self.connections = connections
        self.sock = sock
        self.address = sock.getsockname()[:2]
        self.protocol_factory = protocol_factory
        self.accepts_per_turn = accepts_per_turn
        self.max_connections = max_connections
        self.open_log_level = open_log_level
        self.transport_factory = transport_factory
        self.address_limits = address_limits
        self._closed = False
        self._resume_timer = None
        self._hosts: dict[str, str] = {}   # a peer host string -> the one kept for all
        # Totals for metrics: connections accepted, and of those refused
        # (over capacity, or by the per-address limits); accept() failing for
        # want of resources.
        self.accepted = 0
        self.refused = 0
        self.refused_by_address = 0
        self.accept_failures = 0

    def start(self) -> None:
        """Begin (or resume) accepting."""
        self.loop.add_reader(self.sock, self._on_readable)

    def close(self) -> None:
        """Stop accepting for good and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._resume_timer is not None:
            self._resume_timer.cancel()
        self.loop.remove_file(self.sock)
        self.sock.close()

    def _pause(self) -> None:
        self.loop.remove_reader(self.sock)
        self._resume_timer = self.loop.call_later(ACCEPT_BACKOFF_SECONDS, self._resume)

    def _resume(self) -> None:
        self._resume_timer = None
        if not self._closed:
            self.start()

    def _on_readable(self) -> None:
        connections = self.connections
        for _ in range(self.accepts_per_turn):
            try:
                sock, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self.accept_failures += 1
                    log.warning("accept failed (%s); pausing accepts for %.1fs",
                                exc.strerror, ACCEPT_BACKOFF_SECONDS)
                    self._pause()
                    return
                if exc.errno in _GONE:
                    continue
                raise
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if type(peer) is tuple:
                # (host, port): many connections share a host (NAT, a proxy), so
                # they share one string, 58 bytes less each.  A bounded table of
                # our own, not sys.intern: interned strings are immortal on
                # CPython 3.12.0-3.12.4 (gh-113993), and a /64 has 2^64 hosts.
                hosts = self._hosts
                host = hosts.get(peer[0])
                if host is None:
                    if len(hosts) >= SHARED_HOSTS:
                        hosts.clear()
                    host = hosts[peer[0]] = peer[0]
                peer = (host, peer[1])
            transport = self.transport_factory(connections, sock, peer)
            protocol = self.protocol_factory()
            transport.start(protocol)
            log.log(self.open_log_level, "open %s:%d", *transport.peer,
                    extra=logs.connection(transport.peer))
            self.accepted += 1
            if len(connections.open) > self.max_connections:
                self.refused += 1
                protocol.over_capacity(f"{self.max_connections} connections already; "
                                       "try later")
            elif self.address_limits is not None:
                why = self.address_limits.admit(transport, self.loop.time())
                if why is not None:
                    self.refused_by_address += 1
                    protocol.over_capacity(why)
