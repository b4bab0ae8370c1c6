"""The cluster link: one RESP3 connection to Redis, a protocol on chatd's own loop.

Non-blocking socket, `hiredis.Reader` as the parser (sans-IO: `feed`/`gets`),
`HELLO 3` so that pub/sub pushes and command replies share the one
connection in Redis' execution order (CLUSTER.md, "One RESP3 connection per
node").  Commands queued during a loop turn leave in one `send` at the end
of the turn.  Scripts are loaded with SCRIPT LOAD at every connect and
re-loaded when an EVALSHA answers NOSCRIPT (a SCRIPT FLUSH, a failover).

A Redis that stops answering (stopped, overloaded, a network black hole)
counts as down once a reply has been owed for `down_wait` seconds: the
connection is dropped and made again.  While the link is down, commands
wait up to `down_wait` seconds for it to come back, then their callback
gets `NOT_SENT` (they did not run); a command in flight when the link broke
gets `LINK_DOWN` (it may or may not have run: the caller settles that).  Reconnects back off from 100 ms,
doubling to 2 s, with jitter (so nodes do not reconnect in step).
"""

import errno
import logging
import random
import socket
import ssl
from collections import deque

import hiredis

from ..tls import TLSClosed, TLSPipe
from .resp import encode_command, parse_address

log = logging.getLogger("chatd")

# What a callback gets when its command's reply will never come: LINK_DOWN if
# it was sent before the link broke (it may have run), NOT_SENT if it waited
# `down_wait` for a link that did not come back (it did not run).
LINK_DOWN = object()
NOT_SENT = object()
# hiredis' "no whole reply buffered yet" marker: ours, since RESP3 has `false`.
_MORE = object()

RECV_SIZE = 1 << 16
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0


class RedisLink:
    """One Redis connection on `loop`: `call(args, callback)`, `evalsha(script, args,
    callback)`, pushes to `on_push(push)`; `on_up()` after each (re)connect's
    HELLO (before any waiting command is sent), `on_down()` when it breaks.

    `url` is `redis://HOST:PORT` or `unix:///path` (ValueError otherwise).
    Replies are hiredis' values; an error reply is a `hiredis.ReplyError`
    given to the callback, not raised.
    """

    def __init__(self, loop, url: str, scripts, on_push, on_up, on_down,
                 down_wait: float = 1.0, tls_context: ssl.SSLContext | None = None):
        self.loop = loop
        where = parse_address(url)
        self.family, self.address = where.family, where.address
        self.url = where.shown  # no password in a log line
        # rediss://: TLS through a sans-IO pipe (chatd/tls.py), as chatd's own
        # TLS listeners do; its certificate checked for the URL's host.
        self.tls_context = tls_context if where.tls else None
        if where.tls and tls_context is None:
            raise ValueError(f"cluster {self.url!r}: rediss:// needs a TLS context")
        self._pipe: TLSPipe | None = None
        # HELLO's AUTH (Redis 6+: https://redis.io/commands/hello/), if any.
        self._login = () if where.password is None else \
            ("AUTH", where.username, where.password)
        self.scripts = scripts
        self.on_push = on_push
        self.on_up = on_up
        self.on_down = on_down
        self.down_wait = down_wait
        self.up = False
        self.sock = None
        self._reader = None
        self._out: list[bytes] = []
        self._unsent = b""
        self._flush_queued = False
        self._pending: deque = deque()   # callbacks (or None) of commands sent, in order
        self._waiting: deque = deque()   # (deadline, args, callback) while down
        self._expiry = None
        self._attempts = 0
        self._retry = None
        self.closed = False
        # When a reply last came, or the first of those owed was sent.
        self._progress_at = 0.0
        self._watchdog = None
        # For metrics and the log: times the link came up, and went down.
        self.connects = 0
        self.disconnects = 0

    @property
    def in_flight(self) -> int:
        """Commands sent and not answered yet."""
        return len(self._pending)

    # ------------------------------------------------------------- commands

    def call(self, args, callback=None) -> None:
        """Send one command (a sequence of str/bytes/int) now or when the link is up."""
        if self.up:
            self._send(args, callback)
            return
        self._waiting.append((self.loop.time() + self.down_wait, args, callback))
        if self._expiry is None:
            self._expiry = self.loop.call_later(self.down_wait, self._expire)

    def evalsha(self, script, args, callback=None) -> None:
        """Run a loaded script (`script.sha`) with no KEYS and `args` as ARGV."""
        def answered(reply):
            if type(reply) is hiredis.ReplyError and str(reply).startswith("NOSCRIPT"):
                self.call(("SCRIPT", "LOAD", script.source))
                self.call(("EVALSHA", script.sha, 0, *args), callback)
            elif callback is not None:
                callback(reply)
        self.call(("EVALSHA", script.sha, 0, *args), answered)

    def send_unanswered(self, args) -> None:
        """Send a command whose answer is a push, not a reply (RESP3 SUBSCRIBE,
        UNSUBSCRIBE); dropped while down (subscriptions are made again at `on_up`)."""
        if self.up:
            self._out.append(encode_command(args))
            if not self._flush_queued:
                self._flush_queued = True
                self.loop.call_soon(self._flush)

    def _send(self, args, callback) -> None:
        self._out.append(encode_command(args))
        if not self._pending:
            self._progress_at = self.loop.time()
        self._pending.append(callback)
        if not self._flush_queued:
            self._flush_queued = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """The turn's commands in one send; what the kernel refuses waits for writability.
        Over TLS they wait for the handshake, then leave encrypted."""
        self._flush_queued = False
        if self.sock is None:
            return
        pipe = self._pipe
        if pipe is None:
            data = self._unsent + b"".join(self._out)
            self._out.clear()
        else:
            if pipe.established and self._out:
                try:
                    pipe.encrypt(b"".join(self._out))
                except ssl.SSLError as exc:
                    self._tls_failed(exc)
                    return
                self._out.clear()
            data = self._unsent + pipe.take_output()
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._broken(f"send: {exc.strerror}")
            return
        self._unsent = data[sent:]
        if self._unsent:
            self.loop.add_writer(self.sock, self._on_writable)

    def _on_writable(self) -> None:
        self.loop.remove_writer(self.sock)
        self._flush()

    def _expire(self) -> None:
        """Commands that waited `down_wait` for a link that did not come back: LINK_DOWN."""
        self._expiry = None
        now = self.loop.time()
        while self._waiting and self._waiting[0][0] <= now:
            callback = self._waiting.popleft()[2]
            if callback is not None:
                callback(NOT_SENT)
        if self._waiting:
            self._expiry = self.loop.call_at(self._waiting[0][0], self._expire)

    # ----------------------------------------------------------- connection

    def start(self) -> None:
        """Begin connecting (non-blocking); `on_up` is called once HELLO is answered."""
        self._retry = None
        family = socket.AF_UNIX if self.family == "unix" else socket.AF_INET
        if self.family == "tcp" and ":" in self.address[0]:
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._broken(f"connect: {errno.errorcode.get(code, code)}")
            return
        self.loop.add_writer(sock, self._on_connected)

    def _on_connected(self) -> None:
        sock = self.sock
        self.loop.remove_writer(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._broken(f"connect: {errno.errorcode.get(code, code)}")
            return
        self._reader = hiredis.Reader(notEnoughData=_MORE)
        if self.tls_context is not None:
            self._pipe = TLSPipe(self.tls_context, server_side=False,
                                 server_hostname=self.address[0])
            self._pipe.handshake()  # the ClientHello, sent by the flush below
        self.loop.add_reader(sock, self._on_readable)
        self._progress_at = self.loop.time()
        self._watchdog = self.loop.call_later(self.down_wait / 4, self._watch)
        # Sent straight away (not through call): they precede everything.
        self._out.append(encode_command(("HELLO", 3, *self._login, "SETNAME", "chatd")))
        self._pending.append(self._hello_answered)
        for script in self.scripts:
            self._out.append(encode_command(("SCRIPT", "LOAD", script.source)))
            self._pending.append(self._script_loaded)
        self._flush()

    def _hello_answered(self, reply) -> None:
        if reply is LINK_DOWN:
            return
        if type(reply) is hiredis.ReplyError:
            if str(reply).startswith(("WRONGPASS", "NOAUTH", "NOPERM")):
                log.error("cluster: Redis refused the login (the user and password of "
                          "the cluster URL): %s", reply)
            else:
                log.error("cluster: Redis refused HELLO 3 (RESP3 needs Redis 6 or "
                          "later): %s", reply)
            self._broken("HELLO refused")
            return
        self.up = True
        self._attempts = 0
        self.connects += 1
        log.warning("cluster: connected to %s (Redis %s)", self.url,
                    reply.get(b"version", b"?").decode())
        self.on_up()
        waiting, self._waiting = self._waiting, deque()
        for _, args, callback in waiting:
            self._send(args, callback)

    def _watch(self) -> None:
        """Every quarter of `down_wait`: a reply owed that long means Redis is stuck."""
        if self._pending and self.loop.time() - self._progress_at >= self.down_wait:
            self._watchdog = None
            self._broken(f"no answer for {self.down_wait:g}s")
            return
        self._watchdog = self.loop.call_later(self.down_wait / 4, self._watch)

    @staticmethod
    def _script_loaded(reply) -> None:
        if type(reply) is hiredis.ReplyError:
            log.error("cluster: a script did not load: %s", reply)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._broken(f"recv: {exc.strerror}")
            return
        if not data:
            self._broken("Redis closed the connection")
            return
        if self._pipe is not None:
            data = self._decrypt(data)
            if not data or self.sock is None:
                return
        reader = self._reader
        reader.feed(data)
        push_type = hiredis.PushNotification
        pending = self._pending
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._broken(f"unparsable reply: {exc}")
                return
            if reply is _MORE:
                return
            if type(reply) is push_type:
                self.on_push(reply)
            else:
                self._progress_at = self.loop.time()
                callback = pending.popleft()
                if callback is not None:
                    callback(reply)
            if self.sock is None:  # a callback closed or broke the link
                return

    def _decrypt(self, data: bytes) -> bytes:
        """Ciphertext from the socket -> the plaintext it completes (b"" when none,
        or when the link broke: a failed handshake, a bad record, Redis' close)."""
        pipe = self._pipe
        pipe.receive(data)
        try:
            if not pipe.established:
                if not pipe.handshake():
                    self._flush()
                    return b""
                self._flush()  # what waited for the handshake: HELLO first
            plain = pipe.read()
        except ssl.SSLError as exc:
            self._tls_failed(exc)
            return b""
        except TLSClosed:
            self._broken("Redis closed the TLS connection")
            return b""
        if pipe.pending:  # a TLS 1.3 key update or ticket answer
            self._flush()
        return plain

    def _tls_failed(self, exc: ssl.SSLError) -> None:
        """A failed handshake or a bad record: said once per run of failures (a
        wrong CA would otherwise log at every retry), then as any break."""
        if self.up or self._attempts == 0:
            log.error("cluster: TLS with %s failed: %s", self.url, exc)
        self._broken("TLS failed")

    def _broken(self, why: str) -> None:
        """Close the socket, fail what was in flight, tell the owner, retry later."""
        was_up = self.up
        self._teardown()
        if was_up:
            self.disconnects += 1
            log.error("cluster: link to %s lost (%s); reconnecting", self.url, why)
        elif self._attempts == 0:
            log.error("cluster: cannot reach %s (%s); retrying", self.url, why)
        pending, self._pending = self._pending, deque()
        for callback in pending:
            if callback is not None:
                callback(LINK_DOWN)
        if was_up:
            self.on_down()
        if not self.closed:
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** self._attempts)
            self._attempts += 1
            self._retry = self.loop.call_later(delay * random.uniform(0.5, 1.0), self.start)

    def _teardown(self) -> None:
        self.up = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove_file(sock)
            sock.close()
        self._out.clear()
        self._unsent = b""
        self._pipe = None

    def close(self) -> None:
        """Stop for good: no reconnect; commands still waiting get LINK_DOWN."""
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        self._teardown()
        for _, _, callback in self._waiting:
            if callback is not None:
                callback(NOT_SENT)
        self._waiting.clear()
