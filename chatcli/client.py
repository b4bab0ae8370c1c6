"""The client's one thread: a selectors loop over the input and the socket.

Each turn: (re)connect when due, send what the session lets go, wait for the
socket, the input or the next deadline, and move bytes between them and the
sans-IO pieces (`framing.Decoder`, `Session`, the keys and the editor).
Connecting tries every address the host name resolves to (`connect.Dialer`).
A dropped connection is retried after a random delay under a capped
exponential bound (full jitter); the session then says hello again and
catches up.

Two front ends share the loop: `TerminalUI` (raw mode, an editable input line,
chat printed above it) and `PipeUI` (stdin lines in, one line per message out,
status and errors on stderr).
"""

import os
import random
import selectors
import signal
import socket
import ssl
import sys
import time

import framing

from . import display
from .commands import NAME_RULE, Say
from .connect import Dialer, address_text, resolve
from .editor import LineEditor
from .keys import Key, KeyDecoder
from .session import Session
from .terminal import Terminal

# Reconnect delays: each a random draw below a bound that starts here and
# doubles per failure up to the cap (seconds).  The same fixed delays in
# every client would bring all of them back at the same instant after a
# server restart, every round: a thundering herd.
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 30.0
# Without a terminal nobody is there to wait forever: the client gives up
# with exit status 1 when no connection has worked for this many seconds
# (a time, not a count of attempts: with random delays a count would mean
# anything from no time at all to minutes).
PIPE_PATIENCE = 10.0
# Pipe mode stops reading stdin while this many lines wait to be sent, so a
# big input is paced by the server's rate limit instead of held in memory.
PIPE_BACKLOG = 64
RECV_SIZE = 65_536
# Seconds to wait for the server's bye after our quit before leaving anyway.
QUIT_WAIT = 2.0
# Exit statuses.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Seconds to wait before reconnecting after `failures` (>= 1) failed
    connections in a row: "full jitter", a uniform draw from 0 to
    min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1))."""
    # The exponent stops growing long after the cap is reached: 2 ** 1100
    # does not fit a float (an OverflowError after ~1,000 failures, hours
    # of a server down).
    bound = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(failures - 1, 32))
    return rng.uniform(0.0, bound)


# "Not now" from a socket: a plain one's, or TLS wanting the other direction first.
_AGAIN = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Client:
    """The loop: owns the selector, the socket and the reconnect schedule."""

    def __init__(self, host: str, port: int, session: Session, ui, interactive: bool,
                 rng: random.Random | None = None, tls: ssl.SSLContext | None = None,
                 seen=None):
        """`rng` draws the reconnect delays (default: seeded from the OS, so
        no two clients draw alike); `tls`, a client context: speak TLS,
        verifying the server's certificate for `host`; `seen`, a
        seen.SeenFile: where what was shown of private conversations is
        kept for the next run (at each disconnect and at exit)."""
        self.host, self.port = host, port
        self.seen = seen
        self.tls = tls
        self.session = session
        self.ui = ui
        self.interactive = interactive
        self.rng = rng or random.Random()
        self.selector = selectors.DefaultSelector()
        self.sock: socket.socket | None = None
        self.dialer: Dialer | None = None
        self.decoder: framing.Decoder | None = None
        self.output = bytearray()
        self.failures = 0              # connections failed in a row
        self.down_since = 0.0          # when the first of them failed
        self.last_try = False          # pipe mode: the next failure gives up
        self.retry_at = 0.0
        self.exit_status: int | None = None
        self.quit_deadline: float | None = None

    # -------------------------------------------------------------- the loop

    def run(self) -> int:
        try:
            self.ui.start(self)
            while self.exit_status is None:
                self._turn()
        finally:
            if self.dialer is not None:
                self.dialer.cancel()
            self._close_socket()
            self._keep_seen()
            self.ui.stop()
            self.selector.close()
        return self.exit_status

    def _turn(self) -> None:
        now = time.monotonic()
        session = self.session
        self.ui.prepare_turn()
        if (self.sock is None and self.dialer is None and self._wants_connection()
                and now >= self.retry_at):
            self._connect(now)
        if self.dialer is not None:
            self.dialer.poll(now)
        if self.sock is not None:
            if session.is_dead(now):
                self._lost(f"connection lost: no answer from the server in "
                           f"{session.answer_timeout:g} s")
            else:
                for message in session.take_requests(now):
                    self._send(framing.encode(message))
                    if self.sock is None:  # the send found the connection gone
                        break
        self._check_finished(now)
        if self.exit_status is not None:
            return
        for key, mask in self.selector.select(self._timeout(now)):
            key.data(mask)
        for ready in self.ui.always_ready():
            ready()

    def _timeout(self, now: float) -> float | None:
        deadlines = [self.session.next_deadline(now), self.quit_deadline]
        if self.dialer is not None:
            deadlines.append(self.dialer.next_deadline())
        elif self.sock is None and self._wants_connection():
            deadlines.append(self.retry_at)
        deadlines = [d for d in deadlines if d is not None]
        if self.ui.always_ready():
            return 0
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _wants_connection(self) -> bool:
        session = self.session
        return (session.name is not None and not session.finished
                and session.fatal is None and not session.quitting)

    def _check_finished(self, now: float) -> None:
        session = self.session
        if session.quitting and self.quit_deadline is None:
            self.quit_deadline = now + QUIT_WAIT
        if session.fatal is not None:
            self.show([display.error(session.fatal)])
            self.exit_status = EXIT_FAILED
        elif session.finished:
            self.exit_status = self.ui.exit_status()
        elif session.name_rejected and not self.interactive:
            self.exit_status = EXIT_FAILED
        elif session.quitting and (self.sock is None or now >= self.quit_deadline):
            self.exit_status = self.ui.exit_status()

    def show(self, lines: list) -> None:
        if lines:
            self.ui.show(lines)

    # ------------------------------------------------------------ the socket

    def _connect(self, now: float) -> None:
        """Resolve the host and start dialing every address it has."""
        target = address_text((self.host, self.port))
        try:
            addresses = resolve(self.host, self.port)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self._failed(f"cannot connect to {target}: cannot resolve {self.host} ({reason})")
            return
        self.dialer = Dialer(addresses, self.selector, now, self._dialled, host=self.host)
        self.dialer.poll(now)

    def _dialled(self, sock: socket.socket | None) -> None:
        dialer, self.dialer = self.dialer, None
        if sock is None:
            self._failed(f"cannot connect to {address_text((self.host, self.port))}: "
                         f"{dialer.error}")
            return
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host,
                                            do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                sock.close()
                self._failed(f"cannot connect to {address_text((self.host, self.port))}: "
                             f"TLS: {exc}")
                return
            self.sock = sock
            self.selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                   self._on_handshake)
            return
        self.sock = sock
        self.selector.register(sock, selectors.EVENT_READ, self._on_socket)
        self._connected()

    def _connected(self) -> None:
        self.decoder = framing.Decoder(self.session.max_frame, schema=framing.EVENTS)
        self.output.clear()
        self.session.connection_made(time.monotonic())

    def _on_handshake(self, mask) -> None:
        """One step of the TLS handshake; chat/1 begins once it is done.

        A certificate that fails verification ends the client (exit 1, one
        line): retrying would meet the same certificate.
        """
        target = address_text((self.host, self.port))
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.selector.modify(self.sock, selectors.EVENT_READ, self._on_handshake)
            return
        except ssl.SSLWantWriteError:
            self.selector.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                 self._on_handshake)
            return
        except ssl.SSLCertVerificationError as exc:
            self._close_socket()
            self.show([display.error(f"cannot connect to {target}: TLS certificate not "
                                     f"trusted: {exc.verify_message or exc.reason}")])
            self.exit_status = EXIT_FAILED
            return
        except (ssl.SSLError, OSError) as exc:
            self._close_socket()
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc) or "closed"
            self._failed(f"cannot connect to {target}: TLS handshake failed ({reason})")
            return
        self.selector.modify(self.sock, selectors.EVENT_READ, self._on_socket)
        self._connected()

    def _failed(self, why: str) -> None:
        # Never welcomed: most likely a wrong host or port, or no server;
        # a script should hear so at once rather than after retries.
        self._retry_later(why, give_up=not self.session.ever_welcomed)

    def _retry_later(self, why: str, give_up: bool = False) -> None:
        """Count a failure and plan the next attempt; without a terminal,
        give up at once when asked, or once down for PIPE_PATIENCE."""
        now = time.monotonic()
        self.failures += 1
        if self.failures == 1:
            self.down_since, self.last_try = now, False
        patience_left = self.down_since + PIPE_PATIENCE - now
        if not self.interactive and (give_up or self.last_try or patience_left <= 0):
            self.show([display.error(f"{why}; giving up")])
            self.exit_status = EXIT_FAILED
            return
        delay = backoff_delay(self.failures, self.rng)
        if not self.interactive and delay >= patience_left:
            # One last try before the patience runs out, at a random moment
            # still: the same moment for every client would be a herd again.
            delay, self.last_try = self.rng.uniform(0.0, patience_left), True
        self.retry_at = now + delay
        self.show([display.status(f"{why}; retrying in {delay:.2f} s "
                                  f"(retry {self.failures})")])

    def _send(self, data: bytes) -> None:
        if not self.output:
            try:
                sent = self.sock.send(data)
            except _AGAIN:
                sent = 0
            except OSError as exc:
                self._lost(f"connection lost: {exc.strerror or exc}")
                return
            data = data[sent:]
            if not data:
                return
            self.selector.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                 self._on_socket)
        self.output += data

    def _on_socket(self, mask) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush()
        if mask & selectors.EVENT_READ and self.sock is not None:
            self._read()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.output)
        except _AGAIN:
            return
        except OSError as exc:
            self._lost(f"connection lost: {exc.strerror or exc}")
            return
        del self.output[:sent]
        if not self.output:
            self.selector.modify(self.sock, selectors.EVENT_READ, self._on_socket)

    def _read(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
            # TLS: records already decrypted wait inside the SSL object,
            # where select cannot see them.
            while data and self.tls is not None and self.sock.pending():
                data += self.sock.recv(RECV_SIZE)
        except _AGAIN:
            return
        except OSError as exc:
            self._lost(f"connection lost: {exc.strerror or exc}")
            return
        if not data:
            self._lost()
            return
        for item in self.decoder.feed(data):
            if isinstance(item, framing.FrameError):
                self._lost(f"server sent a bad frame: {item.message}")
                return
            if isinstance(item, framing.MessageError):
                # A new event type or member from a newer server: skip it.
                continue
            was_welcomed = self.session.welcomed
            self.show(self.session.receive(item, time.monotonic()))
            if self.session.welcomed and not was_welcomed:
                self.failures = 0
                # A welcome may announce a max_frame above chat/1's default:
                # history pages come that long.
                self.decoder.max_frame = self.session.max_frame
            if item["type"] == "bye" or self.session.redial is not None:
                self._lost(self.session.redial or "connection lost")
                return

    def _lost(self, why: str = "connection lost") -> None:
        """The connection is gone: tell the session, plan a retry if wanted."""
        self._close_socket()
        self._keep_seen()
        self.session.connection_lost()
        if self._wants_connection():
            self._retry_later(why)

    def _keep_seen(self) -> None:
        """Record what was shown of the account's private conversations (seen.py)."""
        positions = self.session.private_positions()
        if self.seen is not None and positions is not None:
            self.seen.keep(*positions)

    def _close_socket(self) -> None:
        if self.sock is None:
            return
        self.selector.unregister(self.sock)
        if self.tls is not None and self.decoder is not None:  # a TLS session was set up
            self._send_close_notify()
        self.sock.close()
        self.sock, self.decoder = None, None
        self.output.clear()


    def _send_close_notify(self) -> None:
        """Our TLS close_notify, so the server can tell a close from a cut
        (RFC 8446 section 6.1: send it before closing; the peer's need not be
        awaited).  The socket is non-blocking, so this never waits: a peer
        that has gone away, or a full send buffer, just goes without."""
        try:
            self.sock.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass  # want-read for the peer's close_notify, or the peer is gone


class TerminalUI:
    """Raw-mode terminal: an editable input line, chat printed above it."""

    def __init__(self, color: bool):
        self.color = color
        self.terminal = Terminal()
        self.keys = KeyDecoder()
        self.editor = LineEditor()
        self.client: Client | None = None
        self._wakeup_reader = self._wakeup_writer = None

    def start(self, client: Client) -> None:
        self.client = client
        self.terminal.__enter__()
        # SIGWINCH only sets a flag; this socket wakes select so it is seen.
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        for end in (self._wakeup_reader, self._wakeup_writer):
            end.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        client.selector.register(self._wakeup_reader, selectors.EVENT_READ, self._on_wakeup)
        client.selector.register(self.terminal.fd_in, selectors.EVENT_READ, self._on_input)
        if client.session.name is None:
            self.show([display.status("choose a username: " + NAME_RULE)])
        self._update_prompt()
        self.terminal.redraw(self.editor)

    def stop(self) -> None:
        signal.set_wakeup_fd(-1)
        self.terminal.__exit__(None, None, None)
        for end in (self._wakeup_reader, self._wakeup_writer):
            if end is not None:
                end.close()

    def exit_status(self) -> int:
        return EXIT_OK

    def always_ready(self) -> list:
        return []

    def show(self, lines: list) -> None:
        self._update_prompt()
        self.terminal.show([line.render(self.color) for line in lines], self.editor)

    def prepare_turn(self) -> None:
        if self._update_prompt() or self.terminal.resized:
            self.terminal.redraw(self.editor)

    def _update_prompt(self) -> bool:
        """Set the prompt (and whether typing shows) from the session; True
        if it changed."""
        session = self.client.session
        question = session.question
        hidden = question is not None
        changed = hidden != self.editor.hidden
        self.editor.hide(hidden)
        if hidden:
            prompt = question
        elif session.name is None:
            prompt = "username: "
        else:
            room = session.current_name
            prompt = (f"#{room}> " if room else "> ")
            if not session.welcomed:
                prompt = "(offline) " + prompt
        changed = changed or prompt != self.editor.prompt
        self.editor.prompt = prompt
        return changed

    def _on_wakeup(self, mask) -> None:
        try:
            while self._wakeup_reader.recv(64):
                pass
        except BlockingIOError:
            pass

    def _on_input(self, mask) -> None:
        data = os.read(self.terminal.fd_in, 4096)
        if not data:  # the terminal went away
            self.client.session.quit()
            return
        for key in self.keys.feed(data):
            self._press(key)
        self.terminal.redraw(self.editor)

    def _press(self, key) -> None:
        client, session = self.client, self.client.session
        if key is Key.ENTER:
            line = self.editor.submit()
            if session.question is not None:
                client.show(session.submit(line))  # a secret: never recalled
            elif session.name is None:
                client.show(session.set_name(line))
            else:
                self.editor.remember(line)
                client.show(session.submit(line))
        elif (session.question is not None
              and (key is Key.INTERRUPT or (key is Key.EOF and not self.editor.chars))):
            self.editor.submit()  # the half-typed secret goes too
            client.show(session.cancel_question())
        elif key is Key.INTERRUPT or (key is Key.EOF and not self.editor.chars):
            session.quit()
        elif key is Key.REDRAW:
            self.terminal.redraw(self.editor, clear_screen=True)
        elif key is Key.SUSPEND:
            self.terminal.suspend(self.editor)
        else:
            self.editor.press(key)


class PipeUI:
    """stdin lines in (commands too), one line per event out."""

    def __init__(self, color: bool, lines_to_send: list[str] | None = None):
        self.color = color
        self.client: Client | None = None
        self._partial = b""
        self._eof = False
        self._registered = False
        self._always_ready = False
        # --send: the text is the whole input, sent as it is, never a command.
        self._fixed = lines_to_send

    def start(self, client: Client) -> None:
        self.client = client
        if self._fixed is not None:
            for text in self._fixed:
                client.show(client.session.command(Say(text)))
            self._eof = True
        else:
            self._watch_stdin(True)

    def stop(self) -> None:
        sys.stdout.flush()

    def exit_status(self) -> int:
        return EXIT_FAILED if self.client.session.refused else EXIT_OK

    def show(self, lines: list) -> None:
        for line in lines:
            stream = sys.stdout if line.kind in (display.CHAT, display.NOTICE) else sys.stderr
            stream.write(line.render(self.color) + "\n")
        sys.stdout.flush()
        sys.stderr.flush()

    def always_ready(self) -> list:
        return [self._on_input] if self._always_ready and self._watching() else []

    def prepare_turn(self) -> None:
        session = self.client.session
        if self._eof:
            if session.question is not None:
                # The input ended in the middle of /register's or /passwd's answers.
                self.client.show(session.cancel_question())
            if session.name is None and not session.name_rejected:
                self.client.show([display.error("no name: give --name or a first line")])
                self.client.exit_status = EXIT_USAGE
            elif session.settled and not session.quitting:
                session.quit()
        elif self._fixed is None:
            self._watch_stdin(self._watching())

    def _watching(self) -> bool:
        return not self._eof and self.client.session.backlog < PIPE_BACKLOG

    def _watch_stdin(self, wanted: bool) -> None:
        if self._always_ready or wanted == self._registered:
            return
        selector = self.client.selector
        if not wanted:
            if self._registered:
                selector.unregister(0)
            self._registered = False
            return
        try:
            selector.register(0, selectors.EVENT_READ, lambda mask: self._on_input())
            self._registered = True
        except PermissionError:
            # A regular file or /dev/null: epoll refuses it, and it is
            # always readable anyway.
            self._always_ready = True

    def _on_input(self) -> None:
        data = os.read(0, RECV_SIZE)
        if not data:
            self._watch_stdin(False)
            self._eof = True
            if self._partial:
                self._line(self._partial)
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        session = self.client.session
        if session.name is None:
            self.client.show(session.set_name(text))
            if session.name is None:
                self.client.exit_status = EXIT_USAGE
        else:
            self.client.show(session.submit(text))
