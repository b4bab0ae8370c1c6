"""`GET /metrics` over HTTP/1.1 on a transport: h11 parses, the loop serves.

One `MetricsHTTP` per scraper connection (the metrics listener's factory is
`MetricsService.protocol`).  It is a transport protocol like chat/1's (see
the top of chatd/transport.py): bytes come in through `data_received` and
are fed to an `h11.Connection` (sans-IO: h11 never touches the socket), so a
request split across reads is answered once its head is complete.  One
request per connection: the answer says `Connection: close`, is queued with
`transport.write` (never `sendall`: a scraper that does not read is a slow
reader like any other) and the transport closes once it is flushed
(half-close, then close on the peer's FIN or after the linger).

GET and HEAD of /metrics get 200; another path 404, another method 405; a
head over MAX_HEAD bytes 431, one h11 cannot parse 400; a connection that
has not sent a whole head within TIMEOUT seconds is closed, and one beyond
the listener's capacity gets 503.
"""

import logging

import h11

from . import http_answer
from .http_answer import MAX_HEAD
from .transport import State

log = logging.getLogger("chatd")

# Seconds a scraper has to send its request's head.
TIMEOUT = 5.0
PATH = b"/metrics"


class MetricsService:
    """What every scraper connection shares: the loop and the metrics to render."""

    def __init__(self, loop, metrics):
        self.loop = loop
        self.metrics = metrics
        self.scrapes = 0

    def protocol(self) -> "MetricsHTTP":
        return MetricsHTTP(self)


class MetricsHTTP:
    """One scraper connection: one request, one answer, then close."""

    __slots__ = ("service", "transport", "http", "timer", "answered")

    def __init__(self, service: MetricsService):
        self.service = service
        self.transport = None
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.timer = None
        self.answered = False

    # ------------------------------------------------------ transport events

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.timer = self.service.loop.call_later(TIMEOUT, self._timeout)

    def data_received(self, data) -> None:
        if self.answered:
            return
        self.http.receive_data(bytes(data))
        self._next_request()

    def eof_received(self) -> None:
        if not self.answered:
            self.http.receive_data(b"")
            self._next_request()
        if not self.answered:
            self._close()

    def slow_consumer(self, why: str) -> None:
        self._close()

    def over_capacity(self, why: str) -> None:
        self._answer(503, b"too many metrics connections; try later\n")

    def shutdown(self) -> None:
        self._close()

    def connection_lost(self, reason) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # ------------------------------------------------------------- serving

    def _next_request(self) -> None:
        try:
            event = self.http.next_event()
        except h11.RemoteProtocolError as exc:
            self._answer(*http_answer.error_status(exc))
            return
        kind = type(event)
        if kind is h11.Request:
            self._serve(event)
        elif kind is h11.ConnectionClosed:
            self._close()
        # NEED_DATA: wait for more of the head

    def _serve(self, request: h11.Request) -> None:
        if http_answer.head_size(request) > MAX_HEAD:
            self._answer(431, b"request head over 8192 bytes\n")
            return
        if request.target.split(b"?", 1)[0] != PATH:
            self._answer(404, b"only /metrics here\n")
            return
        if request.method not in (b"GET", b"HEAD"):
            self._answer(405, b"GET or HEAD only\n", [("Allow", "GET, HEAD")])
            return
        service = self.service
        service.scrapes += 1
        body = service.metrics.render()
        self._answer(200, body, [("Content-Type", service.metrics.content_type)],
                     head_only=request.method == b"HEAD")

    def _answer(self, status: int, body: bytes, headers=(), head_only: bool = False) -> None:
        """Queue one response and close after it; only the first answer counts."""
        if self.answered or self.transport.state is not State.OPEN:
            return
        self.answered = True
        data = http_answer.response(self.http, status, body, headers, head_only)
        if data is None:  # h11 cannot answer in its state: just close
            self._close()
            return
        self.transport.write(data)
        if status != 200:
            log.debug("metrics: %d to %s:%d", status, *self.transport.peer)
        self._close()

    def _timeout(self) -> None:
        self.timer = None
        if not self.answered:
            log.debug("metrics: no request from %s:%d within %gs; closing",
                     *self.transport.peer, TIMEOUT)
        self._close()

    def _close(self) -> None:
        self.transport.close()  # a no-op once closing
