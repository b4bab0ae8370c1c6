"""The TLS transport: a Transport whose socket speaks TLS through chatd/tls.py's pipe.

The protocol above it still sees plaintext only; the plaintext path
(transport.py) is untouched by TLS.
"""

import logging
import socket
import ssl

from . import logs
from .output import OutputQueue
from .tls import TLSClosed as _TLSClosed, TLSPipe
from .transport import Connections, OutputLimits, State, Transport

log = logging.getLogger("chatd")

_OPEN, _CLOSING, _CLOSED = State.OPEN, State.CLOSING, State.CLOSED


class TLSTransport(Transport):
    """A transport whose socket speaks TLS (chatd/tls.py's `TLSPipe`); the protocol
    still sees plaintext bytes only.

    `output` holds the plaintext the protocol wrote (the fan-out appends to
    it directly); the flush encrypts up to a turn's budget of it in one
    `SSLObject.write` into `cipher`, and sends `cipher` with one `sendmsg`.
    Plaintext is encrypted only when `cipher` is empty, so a backlog stays
    plaintext, whole frames that `drop_unsent` can still forget; the output
    limits count both: plaintext not yet encrypted plus ciphertext not yet
    sent (TLS adds about 22 bytes a 16 KiB record, so it is the plaintext
    figure to within a fraction of a percent).

    Nothing reaches the protocol before the handshake completes; the
    protocol's watchdog (armed by `connection_made` at accept) bounds it.
    A failed handshake (plaintext or garbage on the TLS port, a refused
    certificate) closes with `tls_error`, an end of input or a reset before
    it completes with `tls_dropped`.  After `bye` the close sends
    close_notify, half-closes and does not wait for the peer's; an end of
    input without close_notify is an ordinary disconnect.
    """

    __slots__ = ("tls", "cipher", "handshake_waiting")

    def __init__(self, connections: Connections, sock: socket.socket, peer: tuple, context):
        super().__init__(connections, sock, peer)
        self.tls = TLSPipe(context, server_side=True)
        self.cipher = OutputQueue()
        self.handshake_waiting = False  # put off to a later turn (HANDSHAKES_PER_TURN)

    def _failure_reason(self) -> str:
        return "reset" if self.tls.established else "tls_dropped"

    def _bytes_in(self, data: memoryview) -> None:
        """Ciphertext in: the handshake, or plaintext for the protocol (`_advance`)."""
        self.tls.receive(data)
        if not self.handshake_waiting:
            self._advance()

    def _eof_while_open(self) -> None:
        """End of input before the handshake completed is a dropped handshake."""
        if self.tls.established:
            self.protocol.eof_received()
        else:
            self.abort("tls_dropped")

    def _advance(self) -> None:
        """Handshake (within the turn's budget), then plaintext to the protocol."""
        tls, connections, received = self.tls, self.connections, self.connections.received
        try:
            if not tls.established:
                turn = self.loop.turns
                if connections.handshake_turn != turn:
                    connections.handshake_turn, connections.handshakes = turn, 0
                if connections.handshakes >= connections.handshakes_per_turn:
                    connections.handshakes_deferred += 1
                    self.handshake_waiting = True
                    self.loop.call_soon(self._resume_handshake)
                    return
                connections.handshakes += 1
                if not tls.handshake():
                    self._owe_ciphertext()
                    return
            while self.state is _OPEN:
                count = tls.read_into(received)
                if not count:
                    break
                self.protocol.data_received(received[:count])
        except _TLSClosed:
            self._owe_ciphertext()
            self.protocol.eof_received()  # close_notify: the peer has said all
            return
        except ssl.SSLError as exc:
            log.info("TLS failed %s:%d: %s", *self.peer, exc.reason or exc,
                     extra=logs.connection(self.peer, "tls_error"))
            self._send_alert()
            self.abort("tls_error")
            return
        self._owe_ciphertext()

    def _resume_handshake(self) -> None:
        """A handshake put off for want of budget: try again (a later turn if
        this one's budget is still spent)."""
        self.handshake_waiting = False
        if self.state is _OPEN:
            self._advance()

    def _owe_ciphertext(self) -> None:
        """What the TLS layer wants sent (handshake, tickets) goes out this turn."""
        if self.tls.pending and self.state is not _CLOSED:
            self.cipher.append(self.tls.take_output())
            if not self.scheduled:
                self.connections.schedule(self)

    def _send_alert(self) -> None:
        """Best effort: tell the peer why (a TLS alert), without waiting."""
        alert = self.tls.take_output()
        if alert:
            try:
                self.sock.send(alert)
            except OSError:
                pass

    def flush(self, limits: OutputLimits) -> None:
        """Encrypt (when the ciphertext queue is empty), send, then the limits and close steps."""
        tls, output, cipher = self.tls, self.output, self.cipher
        if not tls.established:
            if self.state is not _OPEN:
                # Closed before the handshake completed (timeout, server_full,
                # shutdown): there is no channel to say goodbye on.
                self.abort(None)
                return
        else:
            queued = output.size + cipher.size
            budget = limits.write_per_turn if queued <= limits.soft else queued
            if output.size and not cipher.size:
                tls.encrypt(b"".join(output.take(budget)))
            if self.state is _CLOSING and not output.size:
                tls.close_notify()
            if tls.pending:
                cipher.append(tls.take_output())
        if cipher.size:
            connections = self.connections
            connections.sends += 1
            try:
                connections.bytes_sent += cipher.send(self.sock, cipher.size)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.abort("reset")
                return
        queued = output.size + cipher.size
        if queued > limits.hard and self.state is _OPEN:
            self._cut_slow(f"over {limits.hard} bytes queued")
        if queued > limits.soft:
            if self._soft_timer is None:
                self._soft_timer = self.loop.call_later(limits.soft_seconds, self._soft_expired)
        elif self._soft_timer is not None:
            self._soft_timer.cancel()
            self._soft_timer = None
        if cipher.size or (output.size and tls.established):
            # (only plaintext left, over this turn's budget: the socket is
            # writable at once, so the next turn encrypts more)
            if not self.writing:
                self.writing = True
                self.loop.add_writer(self.sock, self._on_writable)
        else:
            if self.writing:
                self.writing = False
                self.loop.remove_writer(self.sock)
            if self.state is _CLOSING and not output.size:
                self._drain()

    def abort(self, reason: str | None) -> None:
        """As `Transport.abort`; the ciphertext queue is freed too."""
        super().abort(reason)
        self.cipher.clear()
