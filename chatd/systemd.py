"""systemd's two service protocols, without libsystemd: sd_notify and socket activation.

**sd_notify** (sd_notify(3)): one datagram of `KEY=VALUE` lines to the
AF_UNIX socket named by `NOTIFY_SOCKET`, a path, or an abstract name when it
starts with '@' (the '@' stands for the leading NUL). chatd sends `READY=1`
once it listens and the store is open, `STOPPING=1` when shutdown begins,
and `WATCHDOG=1` every half `WATCHDOG_USEC` from a timer of the loop itself,
so a loop that is stuck stops the pings and systemd restarts the service.
The socket is non-blocking: a notification the manager cannot take at once
is dropped (and logged), never waited for on the loop.

**Socket activation** (sd_listen_fds(3)): `LISTEN_FDS` sockets from fd 3,
valid only when `LISTEN_PID` is this process, named by the colon-separated
`LISTEN_FDNAMES` (`FileDescriptorName=` in the .socket unit).
"""

import logging
import os
import socket
import time

log = logging.getLogger("chatd")

SD_LISTEN_FDS_START = 3
# The activated socket chatd serves chat/1 on: named "chat", or not named at
# all (no LISTEN_FDNAMES, or an empty name; sd_listen_fds_with_names(3)
# calls those "unknown").
CHAT_NAMES = frozenset(("chat", "", "unknown"))
# What a passed socket may be for (LISTEN_FDNAMES, after CHAT_NAMES -> "chat"):
# chat/1, GET /metrics, chat/1 inside TLS, the web client and its WebSocket.
SERVED = frozenset(("chat", "metrics", "tls", "web"))


class Notifier:
    """Sends sd_notify datagrams to `address`, or nothing when `address` is None."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_interval = (watchdog_usec / 2 / 1e6) if watchdog_usec else None
        self.sent = 0
        self._sock = None
        self._watchdog_timer = None
        self._stopping = False
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, environ) -> "Notifier":
        """From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the watchdog is
        this process's only when WATCHDOG_PID is absent or our pid)."""
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog_usec = None
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        if usec and (not pid or pid == str(os.getpid())):
            try:
                watchdog_usec = int(usec)
            except ValueError:
                log.warning("systemd: WATCHDOG_USEC=%r is not a number; no watchdog pings",
                            usec)
            else:
                if watchdog_usec <= 0:
                    watchdog_usec = None
        if address is None and watchdog_usec is not None:
            log.warning("systemd: WATCHDOG_USEC without NOTIFY_SOCKET; no watchdog pings")
            watchdog_usec = None
        return cls(address, watchdog_usec)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send `fields` as one datagram; True if it went out."""
        if self._sock is None:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            self._sock.sendto("\n".join(fields).encode() + b"\n", target)
        except OSError as exc:
            log.warning("systemd: cannot notify %s (%s): %s", self.address,
                        exc.strerror or exc, " ".join(fields))
            return False
        self.sent += 1
        return True

    def ready(self, loop, status: str) -> None:
        """READY=1 (with STATUS=`status`), then the watchdog pings on `loop`."""
        if self._sock is None:
            return
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        if self.watchdog_interval is not None and self._watchdog_timer is None:
            log.info("systemd: watchdog ping every %.3f s", self.watchdog_interval)
            self._ping(loop)

    def _ping(self, loop) -> None:
        # A loop timer, not a thread: if the loop stops turning, the pings stop.
        self.notify("WATCHDOG=1")
        self._watchdog_timer = loop.call_later(self.watchdog_interval, self._ping, loop)

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC (systemd 253's Type=notify-reload);
        `ready` says it is over."""
        if self._sock is not None:
            self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """STOPPING=1, once."""
        if self._sock is None or self._stopping:
            return
        self._stopping = True
        self.notify("STOPPING=1", "STATUS=shutting down")

    def close(self) -> None:
        if self._watchdog_timer is not None:
            self._watchdog_timer.cancel()
            self._watchdog_timer = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def listen_fds(environ, unset: bool = True) -> list[tuple[int, str]]:
    """The sockets systemd passed this process: [(fd, name)], [] if none.

    Valid only when LISTEN_PID is our pid (the variables may have been
    inherited by a process they were not meant for). With `unset` the
    variables are removed from `environ`, so nothing started later
    mistakes them for its own (sd_listen_fds' unset_environment).
    """
    count, pid = environ.get("LISTEN_FDS"), environ.get("LISTEN_PID")
    names = environ.get("LISTEN_FDNAMES")
    if unset:
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            environ.pop(name, None)
    if not count or not pid:
        return []
    try:
        count, pid = int(count), int(pid)
    except ValueError:
        log.warning("systemd: LISTEN_FDS=%r LISTEN_PID=%r are not numbers; ignored",
                    count, pid)
        return []
    if pid != os.getpid() or count <= 0:
        return []
    labels = names.split(":") if names else []
    labels += [""] * (count - len(labels))
    return [(SD_LISTEN_FDS_START + index, labels[index]) for index in range(count)]


def adopt_listeners(passed: list[tuple[int, str]]) -> dict[str, socket.socket]:
    """The listeners among the sockets systemd passed, by what they serve:
    {"chat": ..., "metrics": ..., "tls": ..., "web": ...}, each ready for a
    Listener (non-blocking, close-on-exec).

    A socket named "chat" (or unnamed) is the chat/1 listener, one named
    "metrics" the metrics endpoint's, one named "tls" chat/1 inside TLS (the
    certificate still comes from the tls_cert and tls_key settings), one
    named "web" the web client's page and WebSocket (over TLS too when
    tls_cert is set, as its ws_port would be).  Any
    other name is logged and closed, as is a second socket for the same
    thing or one that is not a listening TCP socket.
    """
    chosen: dict[str, socket.socket] = {}
    for fd, name in passed:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.warning("systemd: passed fd %d (%r) is not a socket (%s); closed", fd, name,
                        exc.strerror)
            try:
                os.close(fd)
            except OSError:
                pass
            continue
        os.set_inheritable(fd, False)
        usable = (sock.type == socket.SOCK_STREAM
                  and sock.family in (socket.AF_INET, socket.AF_INET6)
                  and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        role = "chat" if name in CHAT_NAMES else name
        if role not in SERVED:
            log.warning("systemd: passed socket %r (fd %d) is not one chatd serves "
                        "(chat, metrics, tls, web); closed", name, fd)
            sock.close()
        elif not usable:
            log.warning("systemd: passed socket %r (fd %d) is not a listening TCP socket; "
                        "closed", name, fd)
            sock.close()
        elif role in chosen:
            log.warning("systemd: a second %s socket (fd %d); closed, chatd serves one",
                        role, fd)
            sock.close()
        else:
            sock.setblocking(False)
            chosen[role] = sock
    return chosen
