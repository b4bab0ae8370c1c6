"""TLS without I/O: a `TLSPipe` turns socket bytes into plaintext and plaintext into socket bytes.

Built on `ssl.MemoryBIO` + `ssl.SSLObject`, as asyncio's sslproto and trio
do: nothing here touches a socket or the loop, so the transport decides
when to read and when to send (one send per connection per turn, as on the
plaintext path) and the tests run two pipes against each other without
sockets.

    pipe = TLSPipe(context, server_side=True)
    pipe.receive(ciphertext)        # bytes the socket gave
    pipe.handshake()                # True once established (raises ssl.SSLError)
    n = pipe.read_into(buffer)      # plaintext for the decoder (0: none yet)
    pipe.encrypt(plaintext)         # one SSLObject.write for a turn's output
    pipe.close_notify()             # our side of the TLS close
    data = pipe.take_output()       # ciphertext owed to the peer
"""

import ssl

# Python's default ciphers otherwise; anything older than this is refused.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TLSSetupError(ValueError):
    """The certificate or key cannot be loaded (chatd refuses to start with it)."""


class TLSClosed(Exception):
    """The peer sent close_notify: the TLS stream has ended cleanly."""


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context from PEM files: TLS 1.2 at least, Python's default ciphers.

    With `client_ca`, client certificates signed by it are asked for but
    optional (CERT_OPTIONAL): they never replace a password.  Raises OSError
    (ssl.SSLError is one) when a file is missing or does not fit.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(client_ca)
    return context


def load_server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """`server_context`, its failures as one TLSSetupError naming the files."""
    try:
        return server_context(cert, key, client_ca)
    except OSError as exc:
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        files = f"cert {cert}, key {key}" + (f", client CA {client_ca}" if client_ca else "")
        raise TLSSetupError(f"cannot load TLS files ({files}): {reason}") from None


def client_context(cafile: str | None = None, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext:
    """A client context verifying the server's certificate and host name:
    against `cafile` if given, else the system's CAs.  TLS 1.2 at least.
    With `cert` and `key` (PEM files) it shows that client certificate.
    Raises OSError (ssl.SSLError is one) when a file is missing or does not fit."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = MINIMUM_VERSION
    if cert:
        context.load_cert_chain(cert, key)
    return context


class TLSPipe:
    """One TLS connection's state: ciphertext in and out through memory BIOs.

    `established` turns True when the handshake completes; `peer_closed`
    when the peer's close_notify arrived.  Errors are `ssl.SSLError`
    (a failed handshake, garbage, a bad record); a want-read is never
    raised: it means "give me more bytes" and is answered with 0/False.
    """

    __slots__ = ("incoming", "outgoing", "sslobj", "established", "peer_closed",
                 "notify_sent")

    def __init__(self, context: ssl.SSLContext, server_side: bool = True,
                 server_hostname: str | None = None):
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                       server_hostname=server_hostname)
        self.established = False
        self.peer_closed = False
        self.notify_sent = False

    def receive(self, data) -> None:
        """Bytes the socket gave (any bytes-like object; copied)."""
        self.incoming.write(data)

    def receive_eof(self) -> None:
        """The socket reached end of input: nothing more will be received."""
        self.incoming.write_eof()

    def handshake(self) -> bool:
        """Advance the handshake with what was received; True once it is complete.

        What it wants sent is left in the output (`take_output`).
        Raises ssl.SSLError when the peer's bytes are not an acceptable
        handshake (plaintext, garbage, a certificate that fails to verify).
        """
        if self.established:
            return True
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.established = True
        return True

    def read_into(self, buffer) -> int:
        """Decrypt what was received into `buffer` (a writable memoryview); the
        bytes written, 0 when no whole record is in yet.

        Call again while it fills the buffer.  Raises TLSClosed once the
        peer's close_notify is read, ssl.SSLError on a bad record.
        """
        total, size = 0, len(buffer)
        read = self.sslobj.read
        try:
            while total < size:
                count = read(size - total, buffer[total:])
                if not count:  # close_notify (SSLObject answers it with 0)
                    self.peer_closed = True
                    break
                total += count
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.peer_closed = True
        if self.peer_closed and not total:
            raise TLSClosed()
        return total

    def read(self, size: int = 65_536) -> bytes:
        """All the plaintext that has come in, as bytes (b"" when none yet);
        TLSClosed as `read_into`."""
        parts = []
        buffer = memoryview(bytearray(size))
        while True:
            count = self.read_into(buffer) if not (parts and self.peer_closed) else 0
            if not count:
                return b"".join(parts)
            parts.append(bytes(buffer[:count]))

    def encrypt(self, data) -> None:
        """Encrypt `data` (plaintext, any bytes-like) into the output in one write."""
        view = memoryview(data)
        write = self.sslobj.write
        while view:
            view = view[write(view):]

    def close_notify(self) -> None:
        """Put our close_notify in the output (once); the peer's is not awaited."""
        if self.notify_sent:
            return
        self.notify_sent = True
        try:
            self.sslobj.unwrap()
        except ssl.SSLError:
            pass  # want-read: the peer's close_notify is not here, and need not be

    @property
    def pending(self) -> int:
        """Ciphertext bytes waiting to be sent."""
        return self.outgoing.pending

    def take_output(self) -> bytes:
        """The ciphertext owed to the peer, taken out (b"" when none)."""
        return self.outgoing.read()

    def peer_certificate(self):
        """The peer's certificate as a dict (None when it sent none)."""
        return self.sslobj.getpeercert()

    @property
    def version(self) -> str | None:
        """The TLS version agreed, e.g. "TLSv1.3" (None before the handshake)."""
        return self.sslobj.version()
