"""Connecting the way network clients are expected to: every address, both families.

`socket.create_connection` tries each address `getaddrinfo` returns, in
turn, and reports every error when none works.  RFC 8305 (Happy Eyeballs
v2) does better when an address is slow rather than refused: IPv6 and IPv4
addresses interleaved, the next attempt started 250 ms after the previous
one unless that one has finished (at once when it fails), the first
connection to complete wins and the others are closed.  `Dialer` does that
on the client's selector, so the loop (and the terminal) keeps running
while it connects.  Resolving the name is the one blocking step, as in
create_connection.
"""

import errno
import itertools
import os
import selectors
import socket

# RFC 8305 section 5, "Connection Attempt Delay": 250 ms is its recommended value.
ATTEMPT_DELAY = 0.25
# Seconds a whole connect (every address) may take: an address that drops
# SYNs would otherwise hold it for the kernel's two minutes of retries.
CONNECT_TIMEOUT = 10.0


def address_text(sockaddr) -> str:
    """`host:port`, with an IPv6 host in brackets (`[::1]:7878`)."""
    host, port = sockaddr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve(host: str, port: int) -> list[tuple]:
    """The addresses to try for `host` and `port`, in RFC 8305 order: a list
    of getaddrinfo entries (family, type, proto, canonname, sockaddr).

    Raises socket.gaierror (or UnicodeError for a name IDNA cannot encode).
    """
    return interleave(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def interleave(infos: list[tuple]) -> list[tuple]:
    """getaddrinfo entries without repeats, alternating address families
    from the family of the first (RFC 8305 section 4, "First Address Family
    Count" 1); within a family the resolver's order (RFC 6724) is kept."""
    unique = list({(info[0], info[4]): info for info in infos}.values())
    if not unique:
        return []
    first_family = unique[0][0]
    firsts = [info for info in unique if info[0] == first_family]
    others = [info for info in unique if info[0] != first_family]
    return [info for pair in itertools.zip_longest(firsts, others)
            for info in pair if info is not None]


def _reason(code: int) -> str:
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


class Dialer:
    """One connect to `addresses` (getaddrinfo entries, in the order to try).

    The owner calls `poll(now)` each loop turn and waits no longer than
    `next_deadline()`; the dialer registers its sockets with `selector`
    itself.  When it has finished it calls `on_done(sock)` once: a connected
    non-blocking socket, no longer registered and now the owner's, or None,
    and then `error` says in one line what was tried and why each failed
    (only why, when the one address tried is the host itself, a literal).
    `cancel()` closes whatever is still in progress.  Times are seconds on
    one monotonic clock.
    """

    def __init__(self, addresses: list[tuple], selector: selectors.BaseSelector,
                 now: float, on_done, timeout: float = CONNECT_TIMEOUT, host: str = ""):
        self._host = host
        self._waiting = list(addresses)
        self._selector = selector
        self._on_done = on_done
        self._attempts: dict[socket.socket, tuple] = {}  # in progress -> its entry
        self._failures: list[tuple[tuple, str]] = []     # (sockaddr, reason)
        self._next_at = now           # when the next address may be started
        self._give_up_at = now + timeout
        self.done = False
        self.error: str | None = None

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        if self._waiting:
            return min(self._next_at, self._give_up_at)
        return self._give_up_at

    def poll(self, now: float) -> None:
        """Start the next attempt if one is due; give up when time is out."""
        if self.done:
            return
        if now >= self._give_up_at:
            for info in self._attempts.values():
                self._failures.append((info[4], "timed out"))
            for info in self._waiting:
                self._failures.append((info[4], "not tried: out of time"))
            self._finish(None)
            return
        # One attempt at a time, the next after ATTEMPT_DELAY or as soon as
        # none is left in progress (the last one failed).
        while self._waiting and (now >= self._next_at or not self._attempts):
            self._start(self._waiting.pop(0), now)
        if not self._attempts and not self._waiting:
            self._finish(None)

    def cancel(self) -> None:
        for sock in list(self._attempts):
            self._drop(sock)
        self.done = True

    def _start(self, info: tuple, now: float) -> None:
        family, kind, proto, _, sockaddr = info
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:  # a family this host does not have
            self._failures.append((sockaddr, exc.strerror or str(exc)))
            return
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._failures.append((sockaddr, _reason(code)))
            return
        self._attempts[sock] = info
        self._next_at = now + ATTEMPT_DELAY
        self._selector.register(sock, selectors.EVENT_WRITE,
                                lambda mask, sock=sock: self._ready(sock))

    def _ready(self, sock: socket.socket) -> None:
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            self._selector.unregister(sock)
            del self._attempts[sock]
            self._finish(sock)
            return
        info = self._attempts[sock]
        self._drop(sock)
        self._failures.append((info[4], _reason(code)))
        if self._waiting:
            # The next address need not wait out the delay: start it on the next poll.
            self._next_at = float("-inf")
        elif not self._attempts:
            self._finish(None)

    def _drop(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        del self._attempts[sock]
        sock.close()

    def _finish(self, sock: socket.socket | None) -> None:
        for other in list(self._attempts):
            self._drop(other)
        self.done = True
        if sock is None:
            failures = self._failures
            if not failures:
                self.error = "the name has no address"
            elif len(failures) == 1 and failures[0][0][0] == self._host:
                self.error = failures[0][1]
            else:
                self.error = "tried " + ", ".join(f"{address_text(address)} ({reason})"
                                                  for address, reason in failures)
        self._on_done(sock)
