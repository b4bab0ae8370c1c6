"""One HTTP/1.1 request and its answer through h11, shared by the metrics and the web listeners.

Both serve one request per connection and close after the answer
(`Connection: close`), so a response is built whole here and queued with
`transport.write`; the sockets stay the transports' business.
`OneRequestHTTP` is the protocol half they share: bytes into h11, the
request to the subclass's `serve`, a parse error or an oversized head
answered here, and a timer that closes a connection silent too long.
"""

import http
import logging

import h11

from .transport import State

log = logging.getLogger("chatd")

# Bytes a request's head may take (request line and headers); more is 431.
MAX_HEAD = 8192


def head_size(request: h11.Request) -> int:
    """The bytes of `request`'s head as sent: request line, headers, CRLFs.

    h11 bounds only a head that is still incomplete (max_incomplete_event_size);
    one that came whole in a single read is measured with this.
    """
    return (len(request.method) + len(request.target) + 13
            + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2)


def response(connection: h11.Connection, status: int, body: bytes, headers=(),
             head_only: bool = False) -> bytes | None:
    """The bytes of one whole response closing the connection, or None when h11
    cannot answer in its state (then the caller just closes).

    `headers` are (name, value) pairs; Content-Length and Connection: close are
    added, and Content-Type text/plain unless one is given.  `head_only`
    (a HEAD request) leaves the body out, its length still announced.
    """
    headers = [*headers, ("Content-Length", str(len(body))), ("Connection", "close")]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    try:
        data = connection.send(h11.Response(status_code=status, headers=headers,
                                            reason=http.HTTPStatus(status).phrase.encode()))
        if not head_only and body:
            data += connection.send(h11.Data(data=body))
        return data + connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return None


def error_status(error: h11.RemoteProtocolError) -> tuple[int, bytes]:
    """The status and plain-text body answering a request h11 could not parse."""
    status = error.error_status_hint
    return status, f"{http.HTTPStatus(status).phrase}\n".encode()


class OneRequestHTTP:
    """A transport protocol's HTTP/1.1 side (see the top of chatd/transport.py):
    one request, one answer, then close.

    A subclass implements `serve(request)` (an `h11.Request` whose head is
    whole and at most MAX_HEAD bytes) and calls `answer` once; `log_name`
    prefixes its debug lines.  `http` is None once answered (or handed over,
    e.g. to a WebSocket).  `arm_timer(loop, seconds)` closes the connection
    if no answer has gone by then (a silent or slow client, slowloris).
    """

    __slots__ = ("transport", "http", "timer")
    log_name = "http"

    def __init__(self):
        self.transport = None
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.timer = None

    def serve(self, request: h11.Request) -> None:
        """Answer `request` (the subclass's business)."""
        raise NotImplementedError

    def receive(self, data) -> None:
        """Feed request bytes (b"" at end of input) to h11; serve a whole request."""
        self.http.receive_data(bytes(data))
        try:
            event = self.http.next_event()
        except h11.RemoteProtocolError as exc:
            self.answer(*error_status(exc))
            return
        if type(event) is h11.Request:
            if head_size(event) > MAX_HEAD:
                self.answer(431, b"request head over 8192 bytes\n")
            else:
                self.serve(event)
        elif type(event) is h11.ConnectionClosed:
            self.transport.close()
        # NEED_DATA: wait for more of the head

    def answer(self, status: int, body: bytes, headers=(), head_only: bool = False) -> None:
        """Queue one response (`response`'s arguments) and close after it; only the
        first answer counts."""
        if self.http is None or self.transport.state is not State.OPEN:
            return
        data = response(self.http, status, body, headers, head_only)
        self.http = None
        if data is not None:  # else h11 cannot answer in its state: just close
            self.transport.write(data)
        if status >= 400:
            log.debug("%s: %d to %s:%d", self.log_name, status, *self.transport.peer)
        self.transport.close()

    def arm_timer(self, loop, seconds: float) -> None:
        """Close the connection in `seconds` unless answered by then (replaces the
        previous timer)."""
        self.cancel_timer()
        self.timer = loop.call_later(seconds, self._expired, seconds)

    def cancel_timer(self) -> None:
        """No more timer (answered, upgraded or closed)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, seconds: float) -> None:
        self.timer = None
        if self.http is not None:
            log.debug("%s: no whole request from %s:%d within %gs; closing",
                      self.log_name, *self.transport.peer, seconds)
        self.transport.close()  # a no-op once closing
