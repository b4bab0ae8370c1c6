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

import h11

from .http_answer import OneRequestHTTP

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


class MetricsHTTP(OneRequestHTTP):
    """One scraper connection: one request, one answer, then close."""

    __slots__ = ("service",)
    log_name = "metrics"

    def __init__(self, service: MetricsService):
        super().__init__()
        self.service = service

    # ------------------------------------------------------ transport events

    def connection_made(self, transport) -> None:
        """Arm the timeout: the whole head within TIMEOUT seconds."""
        self.transport = transport
        self.arm_timer(self.service.loop, TIMEOUT)

    def data_received(self, data) -> None:
        """Request bytes to h11 (ignored once answered)."""
        if self.http is not None:
            self.receive(data)

    def eof_received(self) -> None:
        """End of input: a head left incomplete is answered 400, else just close."""
        if self.http is not None:
            self.receive(b"")
        self.transport.close()

    def slow_consumer(self, why: str) -> None:
        """The scraper does not read its answer: close."""
        self.transport.close()

    def over_capacity(self, why: str) -> None:
        """Beyond the listener's capacity: 503 at once."""
        self.answer(503, b"too many metrics connections; try later\n")

    def shutdown(self) -> None:
        """The server stops: close."""
        self.transport.close()

    def connection_lost(self, reason) -> None:
        """The socket closed: the timer goes."""
        self.cancel_timer()

    # ------------------------------------------------------------- serving

    def serve(self, request: h11.Request) -> None:
        """GET/HEAD /metrics is 200 with a scrape; another path 404, method 405."""
        if request.target.split(b"?", 1)[0] != PATH:
            self.answer(404, b"only /metrics here\n")
            return
        if request.method not in (b"GET", b"HEAD"):
            self.answer(405, b"GET or HEAD only\n", [("Allow", "GET, HEAD")])
            return
        service = self.service
        service.scrapes += 1
        body = service.metrics.render()
        self.answer(200, body, [("Content-Type", service.metrics.content_type)],
                    head_only=request.method == b"HEAD")
